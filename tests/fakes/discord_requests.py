"""What the fake Discord's REST API received: recorded requests, waits on them, and injected failures.

Every REST call is recorded with the status and body it was answered with (injected 429s
and errors too, so a test can see discord.py retry). `RequestLog.wait_for` lets a test in
any event loop await "the n-th request matching this predicate", counting ones already
recorded, so tests wait on events, never on sleeps. `FailureRules` holds the answers a test
asked for ahead of time: a 429 with Discord's rate-limit headers, or any error status.
"""

from __future__ import annotations

import asyncio
import fnmatch
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.discord_wire import JSON, error_body, rate_limit_body, rate_limit_headers

__all__ = ["FailureRules", "RecordedFile", "RecordedRequest", "Reply", "RequestLog", "RequestPredicate", "json_of"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordedFile:
    """One uploaded file of a multipart request (discord.py names the fields "files[0]", ...)."""

    field: str
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordedRequest:
    """One REST call as the fake received and answered it."""

    method: str
    path: str
    """Relative to the API base: "/channels/123/messages" (attachment downloads: "/attachments/...")."""
    route: str
    """The route template: "/channels/{channel_id}/messages"; "*" for a path the fake does not know."""
    params: Mapping[str, str]
    query: Mapping[str, str]
    headers: Mapping[str, str]
    json: Any
    """The JSON body, or a multipart request's `payload_json`; None without a body."""
    files: tuple[RecordedFile, ...]
    status: int
    response: Any
    """The JSON answered (None for 204 and downloads)."""

    @property
    def key(self) -> str:
        """ "POST /channels/{channel_id}/messages"."""
        return f"{self.method} {self.route}"

    def is_call(self, method: str, path: str) -> bool:
        """Whether this is `method` on `path`: a concrete path, a route template or an fnmatch pattern."""
        return self.method == method.upper() and (
            path in (self.path, self.route) or fnmatch.fnmatchcase(self.path, path)
        )


RequestPredicate = Callable[[RecordedRequest], bool]


@dataclass(slots=True, kw_only=True, eq=False)
class _Waiter:
    predicate: RequestPredicate
    remaining: int
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[RecordedRequest]


def _settle(future: asyncio.Future[RecordedRequest], outcome: RecordedRequest | BaseException) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


class RequestLog:
    """Thread-safe: the server records from its thread, tests read and wait from theirs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._waiters: list[_Waiter] = []

    def all(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)
            for waiter in list(self._waiters):
                try:
                    hit = waiter.predicate(request)
                except Exception as exc:
                    self._waiters.remove(waiter)
                    waiter.loop.call_soon_threadsafe(_settle, waiter.future, exc)
                    continue
                if hit:
                    waiter.remaining -= 1
                    if waiter.remaining == 0:
                        self._waiters.remove(waiter)
                        waiter.loop.call_soon_threadsafe(_settle, waiter.future, request)

    async def wait_for(self, predicate: RequestPredicate, *, timeout: float, count: int) -> RecordedRequest:  # noqa: ASYNC109
        """The `count`-th request matching `predicate` (already recorded ones count), within `timeout` s."""
        if count < 1:
            raise ValueError("count starts at 1")
        loop = asyncio.get_running_loop()
        with self._lock:
            matches = [r for r in self._requests if predicate(r)]
            if len(matches) >= count:
                return matches[count - 1]
            waiter = _Waiter(
                predicate=predicate, remaining=count - len(matches), loop=loop, future=loop.create_future()
            )
            self._waiters.append(waiter)
        try:
            return await asyncio.wait_for(waiter.future, timeout)
        except TimeoutError:
            seen = "\n  ".join(f"{r.method} {r.path} -> {r.status}" for r in self.all()) or "(none)"
            message = f"fake Discord: no matching request #{count} within {timeout} s; requests so far:\n  {seen}"
            raise TimeoutError(message) from None
        finally:
            with self._lock:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    status: int
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(slots=True, kw_only=True, eq=False)
class _Rule:
    method: str
    path: str
    times: int | None
    reply: Reply


class FailureRules:
    """Answers queued by tests: the next `times` matching calls get them instead of being served."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []

    def add(self, method: str, path: str, reply: Reply, *, times: int | None) -> None:
        with self._lock:
            self._rules.append(_Rule(method=method.upper(), path=path, times=times, reply=reply))

    def rate_limit(self, method: str, path: str, *, retry_after: float, is_global: bool, times: int | None) -> None:
        scope = "global" if is_global else "user"
        headers = rate_limit_headers("fake-limited", limit=5, remaining=0, reset_after=retry_after, scope=scope)
        self.add(
            method,
            path,
            Reply(status=429, body=rate_limit_body(retry_after, is_global=is_global), headers=headers),
            times=times,
        )

    def error(self, method: str, path: str, *, status: int, code: int, message: str, times: int | None) -> None:
        self.add(method, path, Reply(status=status, body=error_body(code, message)), times=times)

    def take(self, method: str, path: str, route: str) -> Reply | None:
        probe = RecordedRequest(
            method=method,
            path=path,
            route=route,
            params={},
            query={},
            headers={},
            json=None,
            files=(),
            status=0,
            response=None,
        )
        with self._lock:
            for rule in self._rules:
                if probe.is_call(rule.method, rule.path):
                    if rule.times is not None:
                        rule.times -= 1
                        if rule.times == 0:
                            self._rules.remove(rule)
                    return rule.reply
        return None

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()


def json_of(value: Any) -> JSON:
    """A JSON object body, or {} (for handlers that need one)."""
    return value if isinstance(value, dict) else {}
