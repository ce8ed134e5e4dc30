"""A thread-safe record the fake appends to from its own thread and tests await from theirs.

The fake Slack serves from a thread with its own event loop while the code under test runs
in the test's loop, so "wait until the bot has posted" cannot be an `asyncio.Event` of
either loop alone: each waiter is a `concurrent.futures.Future` the server thread resolves
and the test awaits through `asyncio.wrap_future`. No polling, no sleeps; a timeout fails the
test with what *was* recorded.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Recorder"]


@dataclass(frozen=True, slots=True)
class _Waiter[T, R]:
    select: Callable[[list[T]], R | None]
    future: concurrent.futures.Future[R]


class Recorder[T]:
    """An append-only list with awaitable conditions over it."""

    def __init__(self, *, describe: Callable[[T], str] = repr) -> None:
        self._describe = describe
        self._lock = threading.Lock()
        self._items: list[T] = []
        self._waiters: list[_Waiter[T, object]] = []

    def append(self, item: T) -> None:
        """Record `item` and wake every waiter whose condition now holds."""
        with self._lock:
            self._items.append(item)
            snapshot = list(self._items)
            ready: list[tuple[_Waiter[T, object], object]] = []
            for waiter in self._waiters:
                if (result := waiter.select(snapshot)) is not None:
                    ready.append((waiter, result))
            for waiter, _ in ready:
                self._waiters.remove(waiter)
        for waiter, result in ready:
            with contextlib.suppress(concurrent.futures.InvalidStateError):  # its wait already timed out
                waiter.future.set_result(result)

    def items(self) -> list[T]:
        """Everything recorded so far, oldest first (a copy)."""
        with self._lock:
            return list(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    async def wait_until[R](self, select: Callable[[list[T]], R | None], *, timeout: float, what: str) -> R:  # noqa: ASYNC109
        """Return `select(items)` as soon as it is not None, checking now and after each append."""
        future: concurrent.futures.Future[R] = concurrent.futures.Future()
        waiter = _Waiter(select, future)
        with self._lock:
            if (result := select(list(self._items))) is not None:
                return result
            self._waiters.append(waiter)  # type: ignore[arg-type]
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        except TimeoutError:
            recorded = "\n  ".join(self._describe(item) for item in self.items()) or "(nothing)"
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; recorded:\n  {recorded}") from None
        finally:
            with self._lock:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)  # type: ignore[arg-type]

    async def wait_for(self, predicate: Callable[[T], bool], *, timeout: float, what: str) -> T:  # noqa: ASYNC109
        """The first recorded item (past or future) matching `predicate`."""

        def first(items: list[T]) -> T | None:
            return next((item for item in items if predicate(item)), None)

        return await self.wait_until(first, timeout=timeout, what=what)

    async def wait_for_count(self, predicate: Callable[[T], bool], count: int, *, timeout: float, what: str) -> list[T]:  # noqa: ASYNC109
        """The first `count` recorded items matching `predicate`, once there are that many."""

        def enough(items: list[T]) -> list[T] | None:
            matching = [item for item in items if predicate(item)]
            return matching[:count] if len(matching) >= count else None

        return await self.wait_until(enough, timeout=timeout, what=what)
