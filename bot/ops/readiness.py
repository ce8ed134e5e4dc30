"""What `/readyz` checks, and the rule for each.

- **store**: a cheap read (`get_agent` of an id that never exists) answers within the timeout.
- **platforms**: every platform component (Discord, Slack, ...) says `is_ready()`: connected
  and serving.
- **llm**: the endpoint answered recently. Ready when an LLM call succeeded within the window
  (`MEMBOT_OPS__LLM_READY_WINDOW_S`, 300 s by default); otherwise a probe is made now (GET
  `{base_url}/models`, within the timeout), and any answer but a 5xx or a refused key (401/403)
  counts: servers without `/models` answer 404, which still proves they are up. A successful
  probe counts as an answer for the window; a failed one is remembered for a few seconds, so a
  probe storm cannot hit an endpoint that is down. A window of 0 leaves the LLM out.

A replica that is not ready is taken out of its load balancer; it keeps running (and keeps
its inbox entries) and comes back once every check passes again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import aiohttp

from bot.memory.store import MemoryStore

__all__ = ["Check", "HTTPProbe", "LLMReadiness", "Readiness", "ReadyComponent"]

_PING_ID = "membot-readyz-ping"
#: How long a failed probe's answer is reused.
_FAILED_PROBE_TTL_S = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Check:
    name: str
    is_ok: bool
    detail: str


class ReadyComponent(Protocol):
    @property
    def name(self) -> str: ...

    def is_ready(self) -> bool: ...


class HTTPProbe:
    """GET `{base_url}/models` with the API key; raises with a reason when the endpoint did not answer."""

    def __init__(self, base_url: str, api_key: str | None) -> None:
        self._url = base_url.rstrip("/") + "/models"
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    async def __call__(self) -> None:
        try:
            async with aiohttp.ClientSession() as session, session.get(self._url, headers=self._headers) as response:
                status = response.status
        except aiohttp.ClientError as exc:
            raise ConnectionError(f"no answer from the LLM endpoint ({type(exc).__name__})") from exc
        if status in (401, 403):
            raise ConnectionError(f"the LLM endpoint refused the API key (HTTP {status})")
        if status >= 500:
            raise ConnectionError(f"the LLM endpoint answered HTTP {status}")


class LLMReadiness:
    """The LLM rule of the module docstring, over the last success `Metrics` noted."""

    def __init__(
        self,
        *,
        window_s: float,
        last_success: Callable[[], float | None],
        note_success: Callable[[], None],
        probe: Callable[[], Awaitable[None]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._window_s = window_s
        self._last_success = last_success
        self._note_success = note_success
        self._probe = probe
        self._clock = clock
        self._failed: tuple[float, str] | None = None

    async def check(self, timeout_s: float) -> Check:
        if self._window_s <= 0:
            return Check(name="llm", is_ok=True, detail="not checked (llm_ready_window_s is 0)")
        now = self._clock()
        last = self._last_success()
        if last is not None and now - last <= self._window_s:
            return Check(name="llm", is_ok=True, detail=f"answered {now - last:.0f} s ago")
        if self._failed is not None and now - self._failed[0] < _FAILED_PROBE_TTL_S:
            return Check(name="llm", is_ok=False, detail=self._failed[1])
        try:
            async with asyncio.timeout(timeout_s):
                await self._probe()
        except TimeoutError:
            reason = f"the LLM endpoint did not answer a probe within {timeout_s:g} s"
        except ConnectionError as exc:
            reason = str(exc)
        else:
            self._failed = None
            self._note_success()
            return Check(name="llm", is_ok=True, detail="answered a probe just now")
        self._failed = (now, reason)
        return Check(name="llm", is_ok=False, detail=reason)


class Readiness:
    """Runs every check of `/readyz` at once."""

    def __init__(
        self,
        *,
        store: MemoryStore,
        components: Sequence[ReadyComponent],
        llm: LLMReadiness,
        timeout_s: float,
    ) -> None:
        self._store = store
        self._components = components
        self._llm = llm
        self._timeout_s = timeout_s

    async def check(self) -> list[Check]:
        store, llm = await asyncio.gather(self._check_store(), self._llm.check(self._timeout_s))
        return [store, self._check_platforms(), llm]

    async def _check_store(self) -> Check:
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._store.get_agent(_PING_ID)
        except TimeoutError:
            return Check(name="store", is_ok=False, detail=f"no answer within {self._timeout_s:g} s")
        except Exception as exc:  # any failure means "not reachable"; the reason is shown
            return Check(name="store", is_ok=False, detail=f"{type(exc).__name__}: {exc}")
        return Check(name="store", is_ok=True, detail="reachable")

    def _check_platforms(self) -> Check:
        waiting = [c.name for c in self._components if not c.is_ready()]
        if waiting:
            return Check(name="platforms", is_ok=False, detail="not connected: " + ", ".join(waiting))
        names = ", ".join(c.name for c in self._components) or "none"
        return Check(name="platforms", is_ok=True, detail=f"connected: {names}")
