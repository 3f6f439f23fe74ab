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
from typing import Any, Awaitable, Callable, Dict, List, Tuple, Union

__all__ = ["Choice", "Result", "convert", "to_json", "typed", "typed_async"]


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
    return converter(tp)(value)


def typed(tp: Any, run: Callable[[], Any]) -> Any:
    """``run()``'s JSON result as ``tp``; an error carrying what the operation did before it
    stopped (a cancelled run's ``partial``) gets that as ``tp`` too."""
    try:
        value = run()
    except BaseException as e:
        _typed_partial(tp, e)
        raise
    return convert(tp, value)


async def typed_async(tp: Any, work: Awaitable[Any]) -> Any:
    """:func:`typed` for a coroutine."""
    try:
        value = await work
    except BaseException as e:
        _typed_partial(tp, e)
        raise
    return convert(tp, value)


def _typed_partial(tp: Any, e: BaseException) -> None:
    partial = getattr(e, "partial", None)
    if partial is not None and not isinstance(partial, Result):
        try:
            setattr(e, "partial", convert(tp, partial))
        except Exception:  # the JSON stays as it came
            pass


Converter = Callable[[Any], Any]

_CONVERTERS: Dict[Any, Converter] = {}


def _same(value: Any) -> Any:
    return value


def converter(tp: Any) -> Converter:
    """The function that reads JSON values as ``tp``: made once per type, from its
    annotations, so reading a 1,000-item plan walks no type information."""
    made = _CONVERTERS.get(tp)
    if made is None:
        # A placeholder first, so a type that contains itself finds its converter.
        cell: List[Converter] = []
        _CONVERTERS[tp] = lambda v: cell[0](v)
        made = _build(tp)
        cell.append(made)
        _CONVERTERS[tp] = made
    return made


def _build(tp: Any) -> Converter:
    if tp is Any:
        return _same
    origin = typing.get_origin(tp)
    if origin is Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            inner = converter(args[0])
            return lambda v: None if v is None else inner(v)
        choices = [(_fits(a), converter(a)) for a in args]

        def choose(v: Any) -> Any:
            if v is None:
                return None
            for fits, conv in choices:
                if fits(v):
                    return conv(v)
            return v

        return choose
    if origin is typing.Literal:
        return _same
    if origin is list:
        (item,) = typing.get_args(tp) or (Any,)
        each = converter(item)
        if each is _same:
            return _same
        return lambda v: [each(x) for x in v] if isinstance(v, list) else v
    if origin is dict:
        _, item = typing.get_args(tp) or (Any, Any)
        each = converter(item)
        if each is _same:
            return _same
        return lambda v: {k: each(x) for k, x in v.items()} if isinstance(v, dict) else v
    if isinstance(tp, type):
        if issubclass(tp, Result):
            return _object_converter(tp)
        if issubclass(tp, enum.Enum):
            members = {m.value: m for m in tp}
            return lambda v: members.get(v, v) if isinstance(v, str) else v
        if tp is datetime.datetime:
            return _time
        if tp is float:
            return lambda v: float(v) if isinstance(v, int) and not isinstance(v, bool) else v
    return _same


def _time(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return parse_time(value)
    except ValueError:
        return value


def _fits(tp: Any) -> Callable[[Any], bool]:
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        return lambda v: v in allowed
    if origin is list:
        return lambda v: isinstance(v, list)
    if origin is dict:
        return lambda v: isinstance(v, dict)
    if isinstance(tp, type):
        if issubclass(tp, Result):
            return lambda v: isinstance(v, dict)
        if issubclass(tp, (str, enum.Enum)) or tp is datetime.datetime:
            return lambda v: isinstance(v, str)
        if tp is bool:
            return lambda v: isinstance(v, bool)
        if tp in (int, float):
            return lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
    return lambda v: True


def _fields_converter(cls: type) -> Converter:
    hints = _hints(cls)
    fields = [
        (
            f.name,
            f.metadata.get("json", f.name),
            converter(hints[f.name]),
            None if f.default_factory is dataclasses.MISSING else f.default_factory,
        )
        for f in dataclasses.fields(cls)
        if f.init
    ]
    new = object.__new__

    def read(value: Any) -> Any:
        made: Any = new(cls)
        attributes = made.__dict__
        for name, key, conv, empty in fields:
            raw = value.get(key)
            # A list the engine leaves out when empty is an empty list.
            attributes[name] = empty() if raw is None and empty is not None else conv(raw)
        attributes["_json"] = value
        return made

    return read


def _object_converter(cls: type) -> Converter:
    tagged = TAGGED.get(cls)
    plain = _fields_converter(cls)
    if tagged is None:
        return lambda v: plain(v) if isinstance(v, dict) else v
    tag, variants = tagged
    readers = {value: _fields_converter(variant) for value, variant in variants.items()}

    def read(value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        return readers.get(str(value.get(tag)), plain)(value)

    return read


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
