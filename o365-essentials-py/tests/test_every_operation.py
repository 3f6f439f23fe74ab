"""Every operation of the table from Python, against the emulator binary, once through
``Integration`` and once through ``aio.Integration`` (the same scenario), with the
results as typed objects; afterwards no operation of the table was left out."""

import asyncio
import dataclasses
import datetime
import inspect
import json
import pathlib
import subprocess
import sys
import threading

import pytest

import o365_essentials as o365
from o365_essentials import aio

from conftest import config


class Recorder:
    """Awaitable methods over either integration, remembering which operations ran."""

    def __init__(self, integration):
        self._integration = integration
        self.called = set()

    def __getattr__(self, name):
        method = getattr(self._integration, name)

        async def run(**kwargs):
            self.called.add(name)
            result = method(**kwargs)
            if inspect.isawaitable(result):
                result = await result
            return result

        return run

    async def fails(self, name, error, **kwargs):
        with pytest.raises(error) as caught:
            await getattr(self, name)(**kwargs)
        return caught.value


def aware(value):
    return isinstance(value, datetime.datetime) and value.tzinfo is not None


async def scenario(i, emulator, tmp_path):
    report = await i.requirements()
    assert isinstance(report, o365.RequirementsReport)
    assert all(isinstance(c.status, o365.CheckStatus) for c in report.checks)
    await i.fails("status", o365.NotIntegratedError)
    status = await i.integrate()
    assert isinstance(status, o365.IntegrationStatus) and status.enabled
    assert aware(status.integrated_at)
    assert (await i.status()).tenant_id == emulator["tenant_id"]
    preview = await i.match_preview()
    assert isinstance(preview, o365.MatchPreview)
    skus = await i.licences()
    assert skus and all(isinstance(s, o365.Sku) for s in skus)

    # Bulk create: the plan and its items are typed; the plan object goes back as it came.
    sku = max(skus, key=lambda s: s.enabled_units - s.consumed_units)
    assert sku.enabled_units - sku.consumed_units >= 22, skus
    plan = await i.plan_bulk_create(usage_location="GB", licences=[{"sku_id": sku.sku_id}])
    assert isinstance(plan, o365.Plan) and aware(plan.created_at)
    assert len(plan.items) == 22
    first = plan.items[0]
    assert isinstance(first, o365.PlanItemCreateAccount) and first.action == "create_account"
    assert first.reason is o365.PlanReason.NO_ONLINE_ACCOUNT and first.reason == "no_online_account"
    assert first.user_principal_name.endswith("@contoso.onmicrosoft.com")
    results = await i.apply_plan(plan=plan)
    assert isinstance(results, o365.RunResults) and results.kind is o365.RunKind.BULK_CREATE
    assert [r.outcome for r in results.items] == [o365.Outcome.SUCCEEDED] * 22, results.items[0]
    assert aware(results.started_at) and results.finished_at >= results.started_at
    results_file = tmp_path / f"bulk_create-{results.run_id.replace('-', '')}.json"
    assert results_file.exists()
    retry = await i.plan_retry(results_file=results_file)
    assert retry.items == [], "nothing failed, nothing to retry"
    assert (await i.plan_bulk_create()).items == []

    created = await i.create_user_with_account(
        user={
            "sam_account_name": "nora.nash",
            "user_principal_name": "nora.nash@essentials.test",
            "given_name": "Nora",
            "surname": "Nash",
            "display_name": "Nora Nash",
        },
        password="Winter-Harbour-2027!",
        domain="contoso.onmicrosoft.com",
    )
    assert isinstance(created, o365.CreatedUser) and created.online.account_enabled
    nora = created.local.guid
    assert await i.online_user_names(local_guids=[nora]) == ["nora.nash@contoso.onmicrosoft.com"]
    assert await i.password_changed(local_guid=nora, password="Autumn-Leaves-2027!") is True
    ldif = f"objectGUID: {nora}\nmsDS-KeyVersionNumber: 2\nvirtualClearTextUTF8:: U3ByaW5nLVJhaW4tMjAyOCE=\n"
    captured = await i.capture_password(ldif=ldif)
    assert captured.outcome is o365.CaptureOutcome.QUEUED and captured.key_version == 2
    assert (await i.capture_password(ldif=ldif)).outcome is o365.CaptureOutcome.REPEATED
    links = await i.list_links(local_user="ava.adams")
    assert len(links) == 1 and isinstance(links[0], o365.LinkedUser)
    assert links[0].state is o365.LinkState.ACTIVE and links[0].origin is o365.LinkOrigin.CREATED
    imported = await i.import_users()
    assert isinstance(imported, o365.ImportResult) and len(imported.imported) == 1
    alex = imported.imported[0]
    assert "initial_password" not in repr(alex) and alex.initial_password not in repr(imported)
    await i.fails("assign", o365.NotFoundError, local_guid=nora, online_id="nobody")
    unassigned = await i.unassign(local_guid=nora)
    assert isinstance(unassigned, o365.Link) and unassigned.state is o365.LinkState.UNASSIGNED
    await i.fails("assign", o365.O365Error, local_guid=nora, online_id=created.online.id)

    sync_plan = await i.plan_sync()
    assert isinstance(sync_plan, o365.SyncPlan)
    applied = await i.apply_sync_plan(plan=sync_plan)
    assert isinstance(applied, o365.SyncReport)
    report = await i.sync_once(allow_beyond_threshold=False)
    assert isinstance(report.passwords, o365.PasswordDelivery)
    delivery = await i.deliver_passwords()
    assert isinstance(delivery.state, o365.PasswordSyncState)
    assert isinstance(await i.password_problems(), list)

    group = await i.create_distribution_group(
        name="Sales",
        alias="sales",
        primary_smtp_address="sales@contoso.com",
        members=["ava.adams@contoso.onmicrosoft.com"],
    )
    assert isinstance(group, o365.DistributionGroup)
    await i.add_group_members(group="sales", members=["liam.lopez@contoso.onmicrosoft.com"])
    await i.remove_group_members(group="sales", members=["ava.adams@contoso.onmicrosoft.com"])
    await i.replace_group_members(group="sales", members=["kira.kowalski@contoso.onmicrosoft.com"])
    updated = await i.update_distribution_group(group="sales", update={"display_name": "Sales team"})
    assert updated.display_name == "Sales team"
    groups = await i.list_distribution_groups()
    assert [g.member_user_names for g in groups if g.alias == "sales"] == [
        ["kira.kowalski@contoso.onmicrosoft.com"]
    ]
    await i.delete_distribution_group(group="sales")

    await i.set_device_policy(
        password_enabled=True,
        min_password_length=6,
        max_password_failed_attempts={"value": 10},
        max_inactivity_lock_minutes="unlimited",
        alphanumeric_password_required=False,
    )
    policy = await i.get_device_policy()
    assert policy.min_password_length == 6 and policy.max_inactivity_lock_minutes == "unlimited"
    assert isinstance(policy.max_password_failed_attempts, o365.LimitValue)
    assert policy.max_password_failed_attempts.value == 10
    await i.set_default_access_level(level=o365.AccessLevel.QUARANTINE)
    assert await i.get_default_access_level() is o365.AccessLevel.QUARANTINE
    rule = await i.add_access_rule(
        access_level="block", characteristic="DeviceModel", query_string="Nokia 3310"
    )
    assert rule.characteristic is o365.DeviceCharacteristic.DEVICE_MODEL
    assert [r.id for r in await i.list_access_rules()] == [rule.id]
    await i.remove_access_rule(id=rule.id)
    devices = await i.list_devices(user_principal_name="alex@contoso.onmicrosoft.com")
    assert devices and isinstance(devices[0], o365.MobileDevice)
    device = devices[0].id
    assert await i.set_device_access(device_id=device, allow=True) is o365.DeviceAccessState.ALLOWED
    error = await i.fails("wipe_device", o365.InvalidInputError, device_id=device, kind="full", confirm="x")
    assert "confirm" in str(error)
    wipe = await i.wipe_device(device_id=device, kind="account_only", confirm=device)
    assert isinstance(wipe, o365.WipeStatus)
    assert await i.wipe_status(device_id=device) is wipe
    assert isinstance(await i.cancel_wipe(device_id=device), o365.WipeStatus)

    # No custom domain and no DNS server here (the Rust suite links one against BIND):
    # each domain operation asks for the domain, by name.
    for name in ("domain_stage", "link_domain", "zone_fragment", "write_records_file",
                 "check_records", "apply_records", "health_report"):
        error = await i.fails(name, o365.InvalidInputError)
        assert "domain" in str(error)

    library = await i.create_library(name="Contracts", description="Signed")
    assert isinstance(library, o365.Library)
    assert [l.name for l in await i.list_libraries() if l.id == library.id] == ["Contracts"]
    await i.delete_library(id=library.id)
    # SharePoint's REST API takes app-only calls from a certificate credential only.
    for name, kwargs in (
        ("grant_site_access", {"user_principal_name": "ava.adams@contoso.onmicrosoft.com", "role": "member"}),
        ("revoke_site_access", {"user_principal_name": "ava.adams@contoso.onmicrosoft.com", "role": "member"}),
        ("list_site_groups", {}),
    ):
        await i.fails(name, o365.CertificateRequiredError, **kwargs)
    pad = await i.launchpad()
    assert isinstance(pad, o365.Launchpad) and pad.team_site and pad.team_site.startswith("https://")

    # setup and teardown sign an administrator in with a device code; Alex holds no
    # directory role, so both stop with the role named.
    for name in ("setup", "teardown"):
        approver = threading.Thread(target=approve_device_code, args=(emulator, "alex@contoso.onmicrosoft.com"))
        approver.start()
        error = await i.fails(name, o365.AdminRoleMissingError, server_name="ops", dry_run=True)
        approver.join()
        assert "Privileged Role Administrator" in str(error)
    # Rolling the certificate needs a registration setup made.
    await i.fails("roll_credential", o365.NotSupportedError)

    error = await i.fails(
        "change_credentials", o365.AuthError, credential={"kind": "secret", "secret": "Wrong-Canary-7731"}
    )
    assert "Wrong-Canary-7731" not in str(error) and "Wrong-Canary-7731" not in repr(error)
    await i.change_credentials(credential={"kind": "secret", "secret": emulator["client_secret"]})
    await i.disable()
    await i.fails("integrate", o365.IntegrationDisabledError)
    drift = await i.enable()
    assert isinstance(drift, o365.DriftReport) and drift.missing == []


def approve_device_code(info, user):
    """Plays the person who enters the next device code and signs in as ``user``."""
    import time
    import urllib.request

    for _ in range(300):
        with urllib.request.urlopen(info["admin_url"] + "/devicecode") as r:
            pending = json.loads(r.read())["value"]
        if pending:
            body = json.dumps({"userCode": pending[0]["userCode"], "user": user}).encode()
            req = urllib.request.Request(
                info["admin_url"] + "/devicecode/approve", data=body, headers={"Content-Type": "application/json"}
            )
            urllib.request.urlopen(req).close()
            return
        time.sleep(0.1)
    raise AssertionError("no device code appeared")


def check_all_called(recorder):
    table = {op["name"] for op in o365.OPERATIONS}
    assert table - recorder.called == set(), "operations of the table the test did not call"


def test_every_operation_through_the_blocking_integration(seeded_emulator, tmp_path):
    recorder = Recorder(o365.Integration(config(seeded_emulator, tmp_path, people=10)))
    asyncio.run(scenario(recorder, seeded_emulator, tmp_path))
    check_all_called(recorder)


def test_every_operation_through_asyncio(seeded_emulator, tmp_path):
    recorder = Recorder(aio.Integration(config(seeded_emulator, tmp_path, people=10)))
    asyncio.run(scenario(recorder, seeded_emulator, tmp_path))
    check_all_called(recorder)


def test_results_are_frozen_dataclasses_that_go_back_as_they_came(emulator, tmp_path):
    integration = o365.Integration(config(emulator, tmp_path, people=3))
    integration.integrate()
    plan = integration.plan_bulk_create()
    assert dataclasses.is_dataclass(plan)
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.id = "other"  # type: ignore[misc]
    raw = integration.call("plan_bulk_create")
    assert plan.to_json()["items"] == raw["items"]
    # The JSON the object came from is what goes back: the plan applies.
    assert all(r.outcome == "succeeded" for r in integration.apply_plan(plan=plan).items)
    # A result type built by hand writes its fields under their JSON names.
    rule = o365.AccessRule(access_level=o365.AccessLevel.BLOCK, characteristic=o365.DeviceCharacteristic.DEVICE_OS,
                           id="r1", query_string="Symbian")
    assert rule.to_json() == {"access_level": "block", "characteristic": "DeviceOS", "id": "r1",
                              "query_string": "Symbian"}


def test_bad_input_raises_the_right_class_naming_the_problem(emulator, tmp_path):
    integration = o365.Integration(config(emulator, tmp_path, people=3))
    integration.integrate()
    with pytest.raises(TypeError, match="domian"):
        integration.plan_bulk_create(domian="x")  # type: ignore[call-arg]
    with pytest.raises(o365.InvalidInputError, match="domain") as wrong_type:
        integration.plan_bulk_create(domain=5)
    assert isinstance(wrong_type.value, ValueError)
    with pytest.raises(o365.InvalidUpnError) as upn:
        integration.list_devices(user_principal_name="not a upn")
    assert "not a upn" in str(upn.value) and isinstance(upn.value, ValueError)
    with pytest.raises(o365.InvalidUpnError):
        integration.grant_site_access(user_principal_name="two@@contoso.com", role="member")
    with pytest.raises(o365.InvalidInputError, match="role"):
        integration.grant_site_access(user_principal_name="ava@contoso.com", role="janitor")
    with pytest.raises(o365.UnknownFieldError, match="colour"):
        integration.call("plan_bulk_create", colour="blue")
    with pytest.raises(TypeError, match="JSON"):
        integration.plan_bulk_create(domain=object())


def test_the_generated_types_and_methods_are_current():
    root = pathlib.Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, str(root / "scripts/gen-python-types"), "--check"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    schemas = json.loads(o365._native.result_schemas_json())
    assert set(schemas["results"]) == {op["name"] for op in o365.OPERATIONS}


def test_secrets_never_in_repr_exceptions_or_output(emulator, tmp_path, capfd):
    canary = "Canary-Secret-5e1f9a"
    cfg = config(emulator, tmp_path, people=3)
    cfg["tenant"]["credential"] = {"kind": "secret", "secret": canary}
    integration = o365.Integration(cfg)
    seen = [repr(integration), str(integration)]
    with pytest.raises(o365.AuthError) as refused:
        integration.integrate()
    seen += [str(refused.value), repr(refused.value), repr(refused.value.args)]
    bad = dict(cfg, colour="blue")
    with pytest.raises(o365.InvalidConfigError) as wrong:
        o365.Integration(bad)
    seen += [str(wrong.value), repr(wrong.value)]
    cfg["tenant"]["credential"] = {"kind": "secret", "secret": emulator["client_secret"]}
    good = o365.Integration(cfg)
    good.integrate()
    with pytest.raises(o365.AuthError) as switch:
        good.change_credentials(credential={"kind": "secret", "secret": canary})
    seen += [str(switch.value), repr(switch.value)]
    password = "Canary-Password-77c3!"
    created = good.create_user_with_account(
        user={"sam_account_name": "pia.park", "user_principal_name": "pia.park@essentials.test",
              "display_name": "Pia Park"},
        password=password,
    )
    seen += [repr(created), str(created)]
    out, err = capfd.readouterr()
    seen += [out, err]
    for path in tmp_path.rglob("*"):
        if path.is_file():
            seen.append(path.read_bytes().decode("utf-8", "replace"))
    for text in seen:
        assert canary not in text and password not in text
