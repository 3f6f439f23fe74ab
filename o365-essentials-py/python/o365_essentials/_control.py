"""What a call takes besides its parameters: a cancellation token and a progress callable."""

from __future__ import annotations

from typing import Any, Callable, Dict

from . import _native

__all__ = ["CancelToken", "Progress"]

#: Called with each event of a long call, as a dict (``{"event": "progress", ...}``).
Progress = Callable[[Dict[str, Any]], Any]


class CancelToken:
    """Cancels the calls it is given, from any thread, at their next item boundary."""

    def __init__(self) -> None:
        self._handle = _native.CancelHandle()

    def cancel(self) -> None:
        self._handle.cancel()

    @property
    def cancelled(self) -> bool:
        return bool(self._handle.cancelled)
