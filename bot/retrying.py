"""When and how long to wait before retrying a call to an LLM endpoint.

Neutral on purpose: no SDK is imported here. `bot.agent.llm` and `bot.memory.embeddings`
each classify their SDK's exceptions into a `Transient` (or not) and hand the call to
`call_with_retries`, so both endpoints back off the same way: exponential backoff with
full jitter, a server's `Retry-After` / `retry-after-ms` honoured up to a cap.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Protocol

from bot.errors import LLMUnavailableError

__all__ = [
    "RETRYABLE_STATUSES",
    "RandomSource",
    "RetryPolicy",
    "SleepFn",
    "Transient",
    "call_with_retries",
    "is_retryable_status",
    "parse_retry_after",
]

_log = logging.getLogger(__name__)

SleepFn = Callable[[float], Awaitable[None]]
"""An `asyncio.sleep`-like coroutine function; tests inject one that records and returns."""

RETRYABLE_STATUSES = frozenset({408, 409, 429})
"""Statuses worth retrying besides every 5xx: timeout, conflict (lock contention), rate limit."""


class RandomSource(Protocol):
    """Where jitter comes from: `random.Random(seed)` in tests, the `random` module otherwise."""

    def random(self) -> float:
        """A float in [0, 1)."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How many times to retry and how long to wait in between (seconds).

    `max_retries` counts retries, not attempts: 3 means at most 4 calls.
    """

    max_retries: int = 4
    base_delay: float = 0.5
    max_delay: float = 20.0
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if self.base_delay < 0 or self.max_delay < 0 or self.max_retry_after < 0:
            raise ValueError("retry delays must be >= 0")

    def delay_for(self, attempt: int, retry_after: float | None, rng: RandomSource) -> float:
        """Seconds to wait before retry number `attempt` (0 for the first retry).

        A server-given `retry_after` wins (it knows its own rate window) but is capped at
        `max_retry_after` so a bogus header cannot park the bot for an hour; otherwise full
        jitter over an exponentially growing window, which spreads out clients that failed
        together better than a fixed or equal-jitter backoff.
        """
        if retry_after is not None and math.isfinite(retry_after) and retry_after >= 0:
            return min(retry_after, self.max_retry_after)
        window = min(self.max_delay, self.base_delay * 2.0 ** min(attempt, 62))
        return rng.random() * window


@dataclass(frozen=True, slots=True, kw_only=True)
class Transient:
    """A failure a retry may cure, as the caller's SDK-specific classifier saw it."""

    reason: str
    """Short and content-free, e.g. "HTTP 429", "timeout", "connection error"."""
    retry_after: float | None = None
    """Seconds the server asked us to wait, when it said."""


def is_retryable_status(status: int) -> bool:
    """True for 408, 409, 429 and every 5xx."""
    return status in RETRYABLE_STATUSES or status >= 500


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, candidate in headers.items():
        if key.lower() == lowered:
            return candidate
    return None


def parse_retry_after(headers: Mapping[str, str], *, now: datetime | None = None) -> float | None:
    """Seconds a response asks us to wait, from `retry-after-ms` or `Retry-After`, else None.

    `retry-after-ms` (OpenAI, Azure) is more precise so it wins. `Retry-After` may be
    delta-seconds (possibly fractional) or an HTTP-date (RFC 9110 §10.2.3). Negative or
    unparseable values are ignored rather than trusted.
    """
    raw_ms = _header(headers, "retry-after-ms")
    if raw_ms is not None:
        try:
            millis = float(raw_ms)
        except ValueError:
            millis = math.nan
        if math.isfinite(millis) and millis >= 0:
            return millis / 1000.0
    raw = _header(headers, "retry-after")
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
    if math.isfinite(seconds) and seconds >= 0:
        return seconds
    return None


async def call_with_retries[T](
    call: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    classify: Callable[[Exception], Transient | None],
    sleep: SleepFn,
    rng: RandomSource,
    operation: str,
) -> T:
    """Await `call()` until it succeeds, retrying while `classify` calls the failure transient.

    Non-transient exceptions propagate unchanged for the caller to translate. When retries
    run out, raises `LLMUnavailableError` with a one-line message naming `operation`, the
    number of attempts and the last reason.
    """
    attempt = 0
    while True:
        try:
            return await call()
        except Exception as exc:
            transient = classify(exc)
            if transient is None:
                raise
            if attempt >= policy.max_retries:
                raise LLMUnavailableError(
                    f"{operation} failed after {attempt + 1} attempt(s): {transient.reason}"
                ) from exc
            delay = policy.delay_for(attempt, transient.retry_after, rng)
            _log.info(
                "%s: %s; retry %d/%d in %.2fs",
                operation,
                transient.reason,
                attempt + 1,
                policy.max_retries,
                delay,
            )
        await sleep(delay)
        attempt += 1
