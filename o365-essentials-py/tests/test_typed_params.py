"""The parameters are typed from the engine's table: ``mypy --strict`` rejects the calls
that fail at run time (each at its line), passes the right ones, and every operation has
a typed method and a ``TypedDict`` of its parameters."""

import inspect
import os
import re
import subprocess
import sys
import typing

import pytest

import o365_essentials as o365
from o365_essentials import aio, params

from conftest import config

HEAD = """\
import o365_essentials as o365
from o365_essentials import aio


def wrong(i: o365.Integration) -> None:
"""

#: Calls a script author writes that the engine refuses at run time, with the error mypy
#: gives each: a number for text, a SKU name for a licence, misspelt choices, text for a
#: list, a missing key of a nested object, a missing required parameter.
WRONG = [
    ('i.plan_bulk_create(usage_location=42)', "arg-type"),
    ('i.plan_bulk_create(licences=["SPE_E3"])', "list-item"),
    ('i.wipe_device(device_id="APPLEA1", kind="acount_only", confirm="APPLEA1")', "arg-type"),
    ('i.plan_bulk_create(users="ava.adams")', "arg-type"),
    ('i.create_user_with_account(user={"sam_account_name": "nora.nash", "display_name": "Nora Nash"}, password="Pa55-word-long")', "typeddict-item"),
    ('i.create_distribution_group(name="Sales", alias="sales", members=["alex@contoso.onmicrosoft.com"])', "call-arg"),
    ('i.grant_site_access(user_principal_name="alex@contoso.onmicrosoft.com", role="members")', "arg-type"),
    ('i.link_domain(domain="contoso.com", services=["email"])', "list-item"),
]

RIGHT = """\
import o365_essentials as o365
from o365_essentials import aio
from o365_essentials.params import LicenceAssignment, NewLocalUser, PlanBulkCreateParams


def right(i: o365.Integration) -> None:
    skus = [s.sku_id for s in i.licences()]
    licences: list[LicenceAssignment] = [{"sku_id": skus[0]}]
    plan = i.plan_bulk_create(usage_location="GB", licences=licences, users=["5d2bd1b6-7b5e-4d6f-9c8e-3c1f1f0b2a11"])
    results = i.apply_plan(plan=plan, lease_wait=5.0)
    print(results.run_id)
    i.wipe_device(device_id="APPLEA1", kind="account_only", confirm="APPLEA1")
    i.wipe_device(device_id="APPLEA1", kind=o365.WipeKind.FULL, confirm="APPLEA1")
    user: NewLocalUser = {"sam_account_name": "nora.nash", "user_principal_name": "nora.nash@contoso.com", "display_name": "Nora Nash"}
    created = i.create_user_with_account(user=user, password="Pa55-word-long")
    print(created.online.assigned_skus)
    i.create_distribution_group(name="Sales", alias="sales", primary_smtp_address="sales@contoso.com")
    i.grant_site_access(user_principal_name="alex@contoso.onmicrosoft.com", role="member")
    i.link_domain(domain="contoso.com", services=["Email", "Intune"])
    i.set_default_access_level(level="quarantine")
    request: PlanBulkCreateParams = {"usage_location": "GB", "allow_soft_match": True}
    i.plan_bulk_create(**request)


async def right_async(i: aio.Integration) -> None:
    plan = await i.plan_bulk_create(usage_location="GB")
    await i.apply_plan(plan=plan)
    await i.wipe_device(device_id="APPLEA1", kind="full", confirm="APPLEA1")
"""


def mypy(folder, name, text):
    path = folder / name
    path.write_text(text)
    env = dict(os.environ, MYPY_CACHE_DIR=str(folder / ".mypy_cache"))
    try:
        import mypy  # noqa: F401
    except ImportError:
        pytest.fail("mypy is not installed in this Python: run scripts/setup")
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--show-error-codes", "--no-error-summary", str(path)],
        capture_output=True, text=True, env=env, cwd=folder,
    )
    return done


def test_mypy_strict_rejects_each_wrong_call_at_its_line(tmp_path):
    text = HEAD + "".join(f"    {call}\n" for call, _ in WRONG)
    text += "\n\nasync def wrong_async(i: aio.Integration) -> None:\n"
    text += '    await i.wipe_device(device_id="APPLEA1", kind="acount_only", confirm="APPLEA1")\n'
    done = mypy(tmp_path, "wrong.py", text)
    assert done.returncode == 1, done.stdout + done.stderr
    errors = {}
    for line in done.stdout.splitlines():
        m = re.match(r".*wrong\.py:(\d+): error: .*\[([\w-]+)\]$", line)
        if m:
            errors.setdefault(int(m.group(1)), set()).add(m.group(2))
    first = HEAD.count("\n") + 1
    expected = {first + n: code for n, (_, code) in enumerate(WRONG)}
    expected[text.count("\n")] = "arg-type"
    for line, code in expected.items():
        assert code in errors.get(line, set()), (line, text.splitlines()[line - 1], done.stdout)
    assert set(errors) == set(expected), done.stdout


def test_mypy_strict_passes_the_right_calls(tmp_path):
    done = mypy(tmp_path, "right.py", RIGHT)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_wrong_calls_do_fail_at_run_time_naming_the_field(seeded_emulator, tmp_path):
    # What mypy catches is what the engine refuses: each wrong call raises an input error
    # (a missing keyword is Python's TypeError before anything runs).
    with o365.Integration(config(seeded_emulator, tmp_path)) as i:
        i.integrate()
        for call, code in WRONG:
            expected = TypeError if code == "call-arg" else o365.O365InputError
            with pytest.raises(expected) as raised:
                eval(call, {"i": i})
            if expected is not TypeError:
                assert raised.value.code_name in ("invalid_input", "unknown_field"), (call, raised.value)


def test_every_operation_has_a_typed_method_and_a_params_typed_dict():
    for op in o365.OPERATIONS:
        name = "".join(w.capitalize() for w in op["name"].split("_")) + "Params"
        typed_dict = getattr(params, name, None)
        assert typed_dict is not None, f"o365_essentials.params has no {name} for {op['name']}"
        assert set(typed_dict.__annotations__) == set(op["fields"]), (name, op["fields"])
        for cls in (o365.Integration, aio.Integration):
            method = getattr(cls, op["name"], None)
            assert method is not None, f"{cls.__module__}.Integration lacks {op['name']}"
            signature = inspect.signature(method)
            hints = typing.get_type_hints(method)
            for field in op["fields"]:
                assert field in signature.parameters, (op["name"], field)
                assert hints[field] is not typing.Any, f"{op['name']}({field}=...) is typed Any"
            assert "return" in hints
            assert method.__doc__ and "::" not in method.__doc__, f"{op['name']}'s docstring names a Rust type"


def test_required_parameters_are_required_and_documented():
    signature = inspect.signature(o365.Integration.wipe_device)
    for field in ("device_id", "kind", "confirm"):
        assert signature.parameters[field].default is inspect.Parameter.empty
    doc = o365.Integration.plan_bulk_create.__doc__ or ""
    assert "users (optional):" in doc and "usage_location (optional):" in doc
    assert "users" in params.PlanBulkCreateParams.__optional_keys__
    assert params.NewLocalUser.__required_keys__ >= {"sam_account_name", "user_principal_name", "display_name"}
