"""The integration: every operation of the engine's table as a method.

The methods are made from the table the native module reports (name, parameter fields),
so the package exposes exactly what the engine does; `Integration.call(name, **params)`
is the same by name.
"""

from __future__ import annotations

import atexit
import enum
import json
import logging
import os
import threading
import weakref
from typing import Any, Callable, Dict, List, Mapping, Optional, Union

from . import _native
from ._control import CancelToken, Progress
from ._operations import _UNSET, Operations
from ._results import Result, to_json

Config = Union[Mapping[str, Any], str, "os.PathLike[str]"]

#: Every operation of the table: name, params (type), fields, result (type),
#: long_running, summary.
OPERATIONS: List[Dict[str, Any]] = json.loads(_native.operations_json())

#: Where the package logs: the engine's warnings at WARNING, retries and throttled
#: answers at DEBUG (``o365_essentials.retry``, ``o365_essentials.throttling``), the
#: events of long calls at DEBUG (``o365_essentials.events``). Secrets are never logged.
LOGGER = logging.getLogger("o365_essentials")
LOGGER.addHandler(logging.NullHandler())
_EVENTS = logging.getLogger("o365_essentials.events")


def _log_record(level: int, name: str, message: str) -> None:
    """One record of the engine's (a retry, a throttled answer) to its logger."""
    logger = logging.getLogger(name) if name.startswith("o365_essentials") else LOGGER
    logger.log(level, "%s", message)


def _log_pending() -> None:
    for level, name, message in _native.take_log_records():
        _log_record(level, name, message)


def _log_event(event: Dict[str, Any]) -> None:
    """An engine event to ``logging``: warnings at WARNING, the rest at DEBUG. A sign-in
    event is logged without its code."""
    kind = event.get("event")
    if kind == "warning":
        LOGGER.warning("%s (%s)", event.get("message"), event.get("code"))
    elif kind == "password_refused":
        LOGGER.warning("the tenant refused the queued password of %s (%s)", event.get("local_guid"), event.get("error_code"))
    elif kind == "sign_in":
        LOGGER.info("waiting for the administrator to sign in at %s", event.get("verification_uri"))
    elif kind == "sync_round_finished" and event.get("error_code"):
        LOGGER.warning("a sync round failed: %s (%s)", event.get("error"), event.get("error_code"))
    elif kind == "item_finished":
        if _EVENTS.isEnabledFor(logging.DEBUG):
            item = event.get("item") or {}
            _EVENTS.debug("run %s item %s: %s", event.get("run_id"), event.get("seq"), item.get("outcome"))
    elif _EVENTS.isEnabledFor(logging.DEBUG):
        shown = {k: v for k, v in event.items() if k != "event"}
        _EVENTS.debug("%s %s", kind, shown)



class SyncLoop:
    """A running sync loop: a round every interval, each reported to ``progress``.

    ``stop()`` ends it after the current item and returns how many rounds ran; a loop
    still running when the interpreter exits is stopped first."""

    def __init__(self, native: Any) -> None:
        self._native = native
        _RUNNING.add(self)

    def stop(self) -> int:
        _RUNNING.discard(self)
        return int(self._native.stop())

    def __enter__(self) -> "SyncLoop":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


_RUNNING: "weakref.WeakSet[SyncLoop]" = weakref.WeakSet()


@atexit.register
def _stop_loops() -> None:
    for loop in list(_RUNNING):
        loop.stop()


def _config_text(config: Config) -> str:
    if isinstance(config, Mapping):
        return json.dumps(dict(config))
    if isinstance(config, os.PathLike):
        with open(os.fspath(config), encoding="utf-8") as f:
            return f.read()
    if isinstance(config, str):
        stripped = config.lstrip()
        if stripped.startswith("{"):
            return config
        with open(config, encoding="utf-8") as f:
            return f.read()
    raise TypeError("config is a dict, a JSON string or a path")


class Integration(Operations):
    """An open integration: one configuration, one store.

    ``config`` is a dict, a JSON string, or the path of a JSON file of the shape in
    ``docs/CONFIGURATION.md``. Every operation is a method taking its parameters as
    keyword arguments; long ones also take ``progress=`` (called on this thread with each
    event as a dict), ``cancel=`` (a :class:`CancelToken`) and ``lease_wait=`` (seconds to
    wait for work another process holds). Calls block, with the GIL released; Ctrl-C
    stops the engine at the next item boundary and raises ``KeyboardInterrupt``; a
    cancelled token raises :class:`OperationCancelledError` with ``partial`` (what was
    done, typed) and ``run_id``. Warnings, retries and throttled answers go to
    ``logging.getLogger("o365_essentials")``.

    ``with Integration(config) as integration:`` closes it on the way out (``close()``).
    """

    def __init__(self, config: Config) -> None:
        self._native: Any = _native.NativeIntegration(_config_text(config))
        self._loops: "weakref.WeakSet[SyncLoop]" = weakref.WeakSet()

    def close(self) -> None:
        """Stops this integration's sync loops and releases the store and the engine; a
        call after it raises :class:`InvalidHandleError`. Closing twice does nothing."""
        for loop in list(self._loops):
            loop.stop()
        self._native = None

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` ran."""
        return self._native is None

    def __enter__(self) -> "Integration":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _open(self) -> Any:
        if self._native is None:
            raise _error("invalid_handle", "the integration is closed; open a new Integration")
        return self._native

    def call(
        self,
        operation: str,
        *,
        progress: Optional[Progress] = None,
        cancel: Optional[CancelToken] = None,
        lease_wait: Optional[float] = None,
        **params: Any,
    ) -> Any:
        """Runs ``operation`` by name with ``params``; returns its result as JSON values
        (dicts, lists, strings). The named methods return typed objects instead."""
        callback = progress

        def on_event(text: str) -> None:
            event = json.loads(text)
            _log_event(event)
            if callback is not None:
                callback(event)

        native = self._open()
        text = native.call(
            operation,
            _params_text(operation, params),
            on_event,
            cancel._handle if cancel is not None else None,
            lease_wait,
            _log_record,
        )
        return json.loads(text)


    def start_sync_loop(
        self,
        *,
        interval: Optional[float] = None,
        allow_beyond_threshold: bool = False,
        progress: Optional[Progress] = None,
    ) -> SyncLoop:
        """Starts the sync loop: a round every ``interval`` seconds (the configuration's
        when None). ``progress`` gets each event as a dict, on a thread of the library's
        (an exception it raises is reported as unraisable; the loop goes on)."""
        params: Dict[str, Any] = {"allow_beyond_threshold": allow_beyond_threshold}
        if interval is not None:
            params["interval_secs"] = max(1, int(round(interval)))
        callback = progress

        def on_event(text: str) -> None:
            event = json.loads(text)
            _log_event(event)
            _log_pending()
            if callback is not None:
                callback(event)

        loop = SyncLoop(self._open().start_sync_loop(json.dumps(params), on_event))
        self._loops.add(loop)
        return loop

    def run_sync_loop(
        self,
        *,
        interval: Optional[float] = None,
        allow_beyond_threshold: bool = False,
        progress: Optional[Progress] = None,
        stop: Optional[threading.Event] = None,
    ) -> int:
        """Runs the sync loop until ``stop`` is set or Ctrl-C; returns the rounds run.
        ``KeyboardInterrupt`` is raised again once the loop stopped."""
        loop = self.start_sync_loop(
            interval=interval, allow_beyond_threshold=allow_beyond_threshold, progress=progress
        )
        done = stop if stop is not None else threading.Event()
        try:
            while not done.wait(0.2):
                pass
        finally:
            rounds = loop.stop()
        return rounds


def _error(code_name: str, message: str) -> Exception:
    """An error of the code ``code_name`` made here, with the attributes the engine's have."""
    number, action = next((n, a) for n, name, _, a in _native.error_codes() if name == code_name)
    e: Any = _native._CLASSES_BY_CODE[number](message)
    e.code, e.code_name, e.action = number, code_name, action
    e.service_code = e.request_id = e.retry_after = e.partial = e.run_id = None
    return e  # type: ignore[no-any-return]


def _input_error(message: str) -> Exception:
    """An :class:`InvalidInputError` made here, with the attributes the engine's have."""
    return _error("invalid_input", message)


def _params_text(operation: str, params: Mapping[str, Any]) -> str:
    """The parameters as the engine's JSON. Values too deep for Python's own JSON writer,
    and text that is not Unicode (a lone surrogate), are refused with a typed error that
    names the field, instead of a ``RecursionError`` or a JSON syntax error the caller
    never wrote."""
    try:
        value = {k: to_json(v) for k, v in params.items() if v is not _UNSET}
        text = json.dumps(value, default=_jsonable, ensure_ascii=False)
    except RecursionError:
        raise _input_error(
            f"the parameters of `{operation}` are nested too deeply to be JSON; pass the value the operation takes"
        ) from None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        field = _not_unicode(json.loads(text), "") or "a key"
        raise _input_error(
            f"`{field}` in the parameters of `{operation}` is not Unicode text (it holds a lone surrogate, as from bytes decoded with surrogateescape); pass text that encodes as UTF-8"
        ) from None
    return text


def _not_unicode(value: Any, path: str) -> Optional[str]:
    """The path of the first text under ``value`` that cannot be UTF-8 (never its content,
    which may be a password)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path or "the value"
        return None
    if isinstance(value, dict):
        for k, v in value.items():
            here = f"{path}.{k}" if path else str(k)
            if _not_unicode(k, here) is not None:
                return here
            found = _not_unicode(v, here)
            if found is not None:
                return found
    if isinstance(value, list):
        for i, v in enumerate(value):
            found = _not_unicode(v, f"{path}[{i}]")
            if found is not None:
                return found
    return None


def _jsonable(value: Any) -> Any:
    if isinstance(value, Result):
        return value.to_json()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not a JSON value")
