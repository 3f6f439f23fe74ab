"""The integration for asyncio: the same methods as :class:`o365_essentials.Integration`,
each awaitable. Cancelling the task cancels the engine's work at its next item boundary
and raises :class:`asyncio.CancelledError`; ``progress=`` runs on the event loop's
thread. Works inside an already running loop (Jupyter)."""

from __future__ import annotations

import asyncio
import functools
import inspect
from typing import Any, Callable, Dict, Optional

from . import _integration
from ._integration import CancelToken, Config, OPERATIONS, Progress

__all__ = ["Integration"]


class Integration:
    """An open integration whose operations are coroutines."""

    def __init__(self, config: Config) -> None:
        self._sync = _integration.Integration(config)

    async def call(
        self,
        operation: str,
        *,
        progress: Optional[Progress] = None,
        lease_wait: Optional[float] = None,
        **params: Any,
    ) -> Any:
        loop = asyncio.get_running_loop()
        token = CancelToken()
        relay = None
        if progress is not None:
            callback = progress

            def relay(event: Dict[str, Any]) -> None:
                loop.call_soon_threadsafe(callback, event)

        work = loop.run_in_executor(
            None,
            functools.partial(
                self._sync.call,
                operation,
                progress=relay,
                cancel=token,
                lease_wait=lease_wait,
                **params,
            ),
        )
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            token.cancel()
            try:
                await work
            except Exception:
                pass
            raise


def _method(op: Dict[str, Any]) -> Callable[..., Any]:
    name = op["name"]
    sync = getattr(_integration.Integration, name)
    params = list(inspect.signature(sync).parameters.values())
    params = [p for p in params if p.name != "cancel"]
    signature = inspect.Signature(params)

    async def method(self: Integration, **kwargs: Any) -> Any:
        signature.bind(self, **kwargs)
        return await self.call(name, **kwargs)

    method.__name__ = name
    method.__qualname__ = f"Integration.{name}"
    method.__doc__ = sync.__doc__
    method.__signature__ = signature  # type: ignore[attr-defined]
    return method


for _op in OPERATIONS:
    setattr(Integration, _op["name"], _method(_op))
