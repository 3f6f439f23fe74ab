"""The integration for asyncio: the same methods as :class:`o365_essentials.Integration`,
each awaitable. Cancelling the task cancels the engine's work at its next item boundary
and raises :class:`asyncio.CancelledError`; ``progress=`` runs on the event loop's
thread. Works inside an already running loop (Jupyter). To keep what a long call did
before it stopped, cancel it with a :class:`CancelToken` (``cancel=``) instead: it raises
:class:`OperationCancelledError` with ``partial`` and ``run_id``.

``async with aio.Integration(config) as integration:`` closes it on the way out."""

from __future__ import annotations

import asyncio
import functools
from typing import Any, Dict, Optional

from . import _integration
from ._control import CancelToken, Progress
from ._integration import Config
from ._operations import AsyncOperations

__all__ = ["Integration"]


class Integration(AsyncOperations):
    """An open integration whose operations are coroutines."""

    def __init__(self, config: Config) -> None:
        self._sync = _integration.Integration(config)

    def close(self) -> None:
        """Releases the store and the engine (as the blocking ``close()``)."""
        self._sync.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` ran."""
        return self._sync.closed

    async def __aenter__(self) -> "Integration":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()

    def __enter__(self) -> "Integration":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    async def call(
        self,
        operation: str,
        *,
        progress: Optional[Progress] = None,
        cancel: Optional[CancelToken] = None,
        lease_wait: Optional[float] = None,
        **params: Any,
    ) -> Any:
        loop = asyncio.get_running_loop()
        token = cancel if cancel is not None else CancelToken()
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
