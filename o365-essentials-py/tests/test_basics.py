"""The Python package as a script author meets it: version, errors, validation."""

import ast
import pathlib

import pytest

import o365_essentials as o365
from o365_essentials import _native

PKG = pathlib.Path(o365.__file__).parent


def test_version_matches_the_crate():
    cargo = (pathlib.Path(__file__).parents[2] / "Cargo.toml").read_text()
    line = next(l for l in cargo.splitlines() if l.startswith("version = "))
    assert o365.__version__ == line.split('"')[1]


def test_every_error_code_has_its_own_class_under_its_family():
    codes = o365.error_codes()
    assert len(codes) >= 30
    seen = set()
    for number, name, family, action in codes:
        cls = _native._CLASSES_BY_CODE[number]
        assert cls.CODE == number
        assert issubclass(cls, o365.O365Error)
        fam_cls = getattr(o365, "O365" + "".join(w.capitalize() for w in family.split("_")) + "Error")
        assert issubclass(cls, fam_cls), (name, family)
        assert cls.__name__ in o365.__all__
        assert action.endswith(".")
        seen.add(cls)
    assert len(seen) == len(codes), "one class per code"
    # The builtin TimeoutError is not shadowed.
    assert o365.RequestTimeoutError is not TimeoutError


def test_only_input_problems_are_in_the_fix_your_input_family():
    # A script catching O365InputError to ask the user for another value must not catch a
    # cancellation, a bug or an unsupported operation.
    for cls in (o365.InternalError, o365.OperationCancelledError, o365.NotSupportedError):
        assert issubclass(cls, o365.O365OperationError)
        assert not issubclass(cls, o365.O365InputError)
    assert issubclass(o365.PreconditionFailedError, o365.O365EngineError)
    assert issubclass(o365.InvalidConfigError, o365.O365InputError)


def test_stubs_list_exactly_the_runtime_names():
    tree = ast.parse((PKG / "_native.pyi").read_text())
    stub_names = {n.name for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))}
    runtime = {n for n in dir(_native) if not n.startswith("_")}
    assert stub_names == runtime - {"__version__"}, (stub_names ^ runtime)


def test_validation_errors_carry_code_and_actionable_message():
    o365.validate_upn("jane.doe@contoso.com")
    with pytest.raises(o365.InvalidUpnError) as ei:
        o365.validate_upn("jane doe@contoso.com")
    e = ei.value
    assert isinstance(e, o365.O365InputError)
    assert e.code == 110 and e.code_name == "invalid_upn"
    assert "not allowed" in str(e)
    assert e.action and e.service_code is None and e.request_id is None
    with pytest.raises(o365.InvalidDomainNameError, match="trailing dot"):
        o365.validate_domain_name("contoso.com.")


def test_password_rules_are_listed_and_the_password_never_echoed():
    rules = o365.password_rules_broken("abc", {"min_length": 10, "complexity": True, "history_length": 24})
    kinds = {(r["rule"], r.get("source")) for r in rules}
    assert ("too_short", "directory") in kinds
    assert ("too_short", "microsoft365") in kinds
    assert "abc" not in repr(rules)
    assert o365.password_rules_broken("Winter-2026!") == []
    with pytest.raises(o365.InvalidInputError, match="policy"):
        o365.password_rules_broken("x", {"min_length": "ten"})
