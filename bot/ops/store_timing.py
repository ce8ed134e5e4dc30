"""Store latency at one seam: a proxy that times every coroutine method of the store it wraps.

`bot.service.open_services` puts it around the store the runtime, router, scheduler and admin
service share, so their calls (the inbox write an adapter waits on before acknowledging, leases,
heartbeat claims, routing lookups) are timed per operation without either store knowing. The
agent loop keeps the store it was built with: a turn's memory reads and writes are inside the
turn's latency, not in the store histogram.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from typing import Any, Protocol, cast

__all__ = ["StoreCallObserver", "timed_store"]


class StoreCallObserver(Protocol):
    def store_called(self, operation: str, *, seconds: float, error: str | None) -> None:
        """After each store call: the method's name, how long it took, the error's class name if it failed."""


class _TimedStore:
    """Forwards every attribute to `inner`; coroutine methods come back timed (and cached)."""

    def __init__(self, inner: object, observer: StoreCallObserver) -> None:
        self._inner = inner
        self._observer = observer
        self._timed: dict[str, Callable[..., Any]] = {}

    def __getattr__(self, name: str) -> Any:
        timed = self._timed.get(name)
        if timed is not None:  # every store call comes here: the cached wrapper first
            return timed
        attribute = getattr(self._inner, name)
        if name.startswith("_") or not inspect.iscoroutinefunction(attribute):
            return attribute
        timed = self._timed[name] = self._wrap(name, attribute)
        return timed

    def _wrap(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        observer = self._observer

        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                result = await method(*args, **kwargs)
            except Exception as exc:
                observer.store_called(name, seconds=time.perf_counter() - started, error=type(exc).__name__)
                raise
            observer.store_called(name, seconds=time.perf_counter() - started, error=None)
            return result

        return timed


def timed_store[S](store: S, observer: StoreCallObserver) -> S:
    """`store`, with each coroutine method's calls reported to `observer`."""
    return cast(S, _TimedStore(store, observer))
