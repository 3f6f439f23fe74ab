"""How results become typed objects: the runtime behind the generated ``_types`` module.

Every result type is a frozen dataclass deriving from :class:`Result`; it keeps the JSON it
was made from, so handing it back to an operation (``apply_plan(plan=plan)``) sends
exactly what the engine returned. Enums derive from ``str`` (``outcome == "failed"``
holds); a value the package does not know yet (a newer engine) stays a plain string.
Times are timezone-aware :class:`datetime.datetime`.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import re
import sys
import typing
from typing import Any, Dict, Tuple, Union

__all__ = ["Choice", "Result", "convert", "to_json"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Result:
    """A result object: its fields, and the JSON it was read from (``to_json()``).

    An object built by hand, or changed with :func:`dataclasses.replace`, has no JSON
    of its own and is written from its fields."""

    _json: Any = dataclasses.field(default=None, init=False, repr=False, compare=False)

    def to_json(self) -> Any:
        """The result as JSON values (what the engine returned, when read from it)."""
        if self._json is not None:
            return self._json
        return to_json(self)


class Choice(str, enum.Enum):
    """A choice of stable names (outcomes, reasons, states): equal to its name as a
    string, and printed as it."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


#: Tagged unions: base class -> (tag property, {tag value: variant class}).
TAGGED: Dict[type, Tuple[str, Dict[str, type]]] = {}

_HINTS: Dict[type, Dict[str, Any]] = {}


def _hints(cls: type) -> Dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        module = sys.modules[cls.__module__]
        hints = typing.get_type_hints(cls, vars(module))
        _HINTS[cls] = hints
    return hints


_TIME = re.compile(r"^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", re.IGNORECASE)


def parse_time(text: str) -> datetime.datetime:
    """An RFC 3339 time (``2026-12-01T12:00:00.123456789Z``) as an aware datetime."""
    m = _TIME.match(text)
    if m is None:
        return datetime.datetime.fromisoformat(text)
    head, fraction, zone = m.groups()
    micros = (fraction or "")[:6].ljust(6, "0")
    zone = "+00:00" if zone.upper() == "Z" else zone
    return datetime.datetime.fromisoformat(f"{head}.{micros}{zone}")


def convert(tp: Any, value: Any) -> Any:
    """``value`` (JSON made Python) as the type ``tp`` of the generated module."""
    if value is None or tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin is Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        for arg in args:
            if _fits(arg, value):
                return convert(arg, value)
        return value
    if origin is typing.Literal:
        return value
    if origin is list:
        (item,) = typing.get_args(tp) or (Any,)
        return [convert(item, v) for v in value] if isinstance(value, list) else value
    if origin is dict:
        _, item = typing.get_args(tp) or (Any, Any)
        return {k: convert(item, v) for k, v in value.items()} if isinstance(value, dict) else value
    if isinstance(tp, type):
        if issubclass(tp, Result):
            return _object(tp, value)
        if issubclass(tp, enum.Enum):
            try:
                return tp(value)
            except ValueError:
                return value
        if tp is datetime.datetime and isinstance(value, str):
            try:
                return parse_time(value)
            except ValueError:
                return value
        if tp is float and isinstance(value, int):
            return float(value)
    return value


def _fits(tp: Any, value: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return value in typing.get_args(tp)
    if origin is list:
        return isinstance(value, list)
    if origin is dict:
        return isinstance(value, dict)
    if isinstance(tp, type):
        if issubclass(tp, Result):
            return isinstance(value, dict)
        if issubclass(tp, (str, enum.Enum)) or tp is datetime.datetime:
            return isinstance(value, str)
        if tp is bool:
            return isinstance(value, bool)
        if tp in (int, float):
            return isinstance(value, (int, float)) and not isinstance(value, bool)
    return True


def _object(cls: type, value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    tagged = TAGGED.get(cls)
    if tagged is not None:
        tag, variants = tagged
        cls = variants.get(str(value.get(tag)), cls)
    hints = _hints(cls)
    kwargs: Dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        key = f.metadata.get("json", f.name)
        kwargs[f.name] = convert(hints[f.name], value.get(key))
    made = cls(**kwargs)
    object.__setattr__(made, "_json", value)
    return made


def to_json(value: Any) -> Any:
    """A result object (or anything holding them) as JSON values."""
    if isinstance(value, Result):
        if value._json is not None:
            return value._json
        out: Dict[str, Any] = {}
        for f in dataclasses.fields(value):
            if not f.init:
                continue
            v = getattr(value, f.name)
            if v is not None:
                out[f.metadata.get("json", f.name)] = to_json(v)
        return out
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime.datetime):
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    return value
