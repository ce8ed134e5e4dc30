"""Heartbeats between sessions: each replica ticks locally (APScheduler 3), and the due
heartbeats live in the store, claimed atomically, so each fires once across replicas.

APScheduler's own job stores must not be shared between processes, so APScheduler only
drives this replica's tick (an in-memory interval job, coalescing missed runs into one);
which agents are due, and who fires them, is the store's business.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]

from bot.memory.runtime_store import DueHeartbeat
from bot.ops.logging import OutageLog, is_store_outage
from bot.runtime import Runtime, Store

__all__ = ["HeartbeatScheduler", "SchedulerOptions"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerOptions:
    tick: timedelta = timedelta(seconds=30)
    #: How many due heartbeats one tick may claim (the rest wait for the next tick).
    batch: int = 50
    #: A claim not finished by then (the replica died) may be claimed again.
    claim_ttl: timedelta = timedelta(minutes=10)
    #: Reflection tokens one agent may spend per UTC day; 0 turns reflection off.
    daily_tokens_per_agent: int = 50_000
    #: Reflection tokens all agents of one server or workspace may spend per UTC day; 0: no cap.
    daily_tokens_per_server: int = 500_000
    #: Time between two runs of the `sweep` job (recall retention, inbox pruning); the first runs soon after start.
    sweep_every: timedelta = timedelta(hours=6)


class HeartbeatScheduler:
    """Claims due heartbeats and hands them to the runtime, honouring pauses and budgets."""

    def __init__(
        self,
        *,
        store: Store,
        runtime: Runtime,
        options: SchedulerOptions | None = None,
        sweep: Callable[[], Awaitable[object]] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._runtime = runtime
        self._options = options or SchedulerOptions()
        self._sweep = sweep
        self._clock = clock
        self._scheduler: AsyncIOScheduler | None = None
        #: Due heartbeats this scheduler did not hand to the runtime (paused agent, budget spent,
        #: agent deleted); the runtime counts those it skipped itself (a user message came first).
        self.heartbeats_skipped = 0
        # A store outage is logged once per outage, not once per tick (APScheduler would log a traceback).
        self._tick_outage = OutageLog("heartbeat tick", logger=_log)
        self._sweep_outage = OutageLog("retention sweep", logger=_log)

    def start(self) -> None:
        """Tick every `options.tick` on the running event loop."""
        scheduler = AsyncIOScheduler(timezone=UTC)
        scheduler.add_job(
            self.tick,
            "interval",
            seconds=self._options.tick.total_seconds(),
            coalesce=True,
            max_instances=1,
            misfire_grace_time=None,
            id="membot-heartbeat-tick",
        )
        if self._sweep is not None:
            scheduler.add_job(
                self.sweep,
                "interval",
                seconds=self._options.sweep_every.total_seconds(),
                next_run_time=self._clock() + timedelta(minutes=1),  # restarts must not postpone it forever
                coalesce=True,
                max_instances=1,
                misfire_grace_time=None,
                id="membot-retention-sweep",
            )
        scheduler.start()
        self._scheduler = scheduler

    def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None

    async def sweep(self) -> None:
        """Run the periodic sweep once (recall retention, inbox pruning); its failure is logged."""
        if self._sweep is None:
            return
        try:
            await self._sweep()
        except Exception as exc:
            if not is_store_outage(exc):
                _log.exception("the retention sweep failed; it runs again in %s", self._options.sweep_every)
                return
            self._sweep_outage.failed(exc)
        else:
            self._sweep_outage.succeeded()

    async def tick(self) -> int:
        """Claim what is due now and queue it; returns how many were handed to the runtime. While
        the store is unavailable a tick does nothing (and says so once per outage)."""
        try:
            fired = await self._tick()
        except Exception as exc:
            if not is_store_outage(exc):
                raise
            self._tick_outage.failed(exc)
            return 0
        self._tick_outage.succeeded()
        return fired

    async def _tick(self) -> int:
        now = self._clock()
        claimed = await self._store.claim_due_heartbeats(
            self._runtime.owner, now=now, claim_until=now + self._options.claim_ttl, limit=self._options.batch
        )
        fired = 0
        for due in claimed:
            if await self._is_allowed(due, now):
                self._runtime.heartbeat(due)
                fired += 1
        if claimed:
            _log.debug("heartbeat tick: %d claimed, %d queued", len(claimed), fired)
        return fired

    async def _is_allowed(self, due: DueHeartbeat, now: datetime) -> bool:
        agent = await self._store.get_agent(due.agent_id)
        reason: str | None = None
        if agent is None:
            reason = "agent deleted"
        elif agent.is_paused:
            reason = "agent paused by an admin"
        elif agent.heartbeats_paused_until is not None and agent.heartbeats_paused_until > now:
            # pause_heartbeats: try again when the pause ends.
            await self._store.schedule_heartbeat(due.agent_id, due_at=agent.heartbeats_paused_until)
            self.heartbeats_skipped += 1
            return False
        elif await self._is_over_budget(due.agent_id, now):
            reason = "daily reflection budget spent (agent or server)"
        if reason is None:
            return True
        self.heartbeats_skipped += 1
        _log.info("heartbeat for agent %s skipped: %s", due.agent_id, reason)
        await self._store.finish_heartbeat(due, fired_at=now, tokens=0)
        return False

    async def _is_over_budget(self, agent_id: str, now: datetime) -> bool:
        limit = self._options.daily_tokens_per_agent
        if limit <= 0:
            return True
        state = await self._store.heartbeat_state(agent_id)
        if state is None:
            return False
        today = now.astimezone(UTC).date().isoformat()
        if state.budget_day == today and state.tokens_spent >= limit:
            return True
        server_limit = self._options.daily_tokens_per_server
        if state.scope is None or server_limit <= 0:
            return False
        return await self._store.reflection_tokens_spent(state.scope, day=today) >= server_limit
