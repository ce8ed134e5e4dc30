"""Recall retention: messages older than the retention period are summarised, then deleted.

An agent's messages are in seq order, and (near enough) in time order, so the old ones are a
prefix of recall: everything before the first message newer than the cut-off. Of that prefix,
the messages still in the context (seq >= `context_start_seq`) are folded into the agent's
recursive summary by the LLM first, exactly as compaction folds them (`Compactor.summarize`),
and the context then starts after them; the older ones are in the summary already. Only then
is the prefix deleted, so nothing leaves recall before the summary holds it. The cut never
falls between a function call and its result, and the next message still gets a new seq
(`MemoryStore` never reuses one), so the context start stays valid.

`RetentionSweep` is the periodic job (the scheduler runs it): it prunes the inbox's finished
entries, which hold message text, and applies retention to every agent. It takes each agent's
lease first, as a turn does, so it never runs beside a turn of the same agent on any replica;
an agent that is busy is left for the next sweep.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from bot.agent.compaction import Compactor
from bot.agent.model import Usage
from bot.errors import LLMError, StoreError, VersionConflictError
from bot.memory.runtime_store import WRITE_FENCE, Fence, RuntimeStore
from bot.memory.store import AgentRecord, AgentUpdate, MemoryStore
from bot.ops.logging import log_context

__all__ = ["RecallRetention", "RetentionReport", "RetentionSweep", "SweepReport"]

_log = logging.getLogger(__name__)

_PAGE = 500


@dataclass(frozen=True, slots=True, kw_only=True)
class RetentionReport:
    """What retention did to one agent."""

    agent_id: str
    #: Messages folded into the summary now (they were still in the context).
    summarised: int = 0
    #: Messages deleted from recall (those folded now and those summarised earlier).
    deleted: int = 0
    usage: Usage = field(default_factory=Usage)


class RecallRetention:
    """Summarises and deletes one agent's recall older than `keep_for`."""

    def __init__(
        self,
        *,
        store: MemoryStore,
        compactor: Compactor,
        keep_for: timedelta,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._compactor = compactor
        self._keep_for = keep_for
        self._clock = clock

    async def apply(self, agent_id: str) -> RetentionReport:
        """Summarise, then delete, the agent's messages older than the retention period.

        The caller holds the agent's lease (writes are fenced by it). LLM errors propagate
        before anything is deleted."""
        agent = await self._store.get_agent(agent_id)
        if agent is None:
            return RetentionReport(agent_id=agent_id)
        cut = await self._first_kept_seq(agent_id, self._clock() - self._keep_for)
        if cut is None:
            return RetentionReport(agent_id=agent_id)
        in_context = [
            m for m in await self._store.get_messages(agent_id, from_seq=agent.context_start_seq) if m.seq < cut
        ]
        usage = Usage()
        if in_context:
            summary, usage = await self._compactor.summarize(agent.summary, in_context)
            await self._move_context(agent, summary=summary, start_seq=cut)
        elif agent.context_start_seq < cut:
            await self._move_context(agent, summary=agent.summary, start_seq=cut)
        deleted = await self._store.delete_messages_before(agent_id, cut)
        if deleted:
            _log.info(
                "agent %s: retention summarised %d and deleted %d messages (%d summary tokens)",
                agent_id,
                len(in_context),
                deleted,
                usage.prompt_tokens + usage.completion_tokens,
            )
        return RetentionReport(agent_id=agent_id, summarised=len(in_context), deleted=deleted, usage=usage)

    async def _first_kept_seq(self, agent_id: str, cutoff: datetime) -> int | None:
        """The seq recall keeps from: the first message at or after `cutoff` (moved back so a
        function's result keeps its call), one past the last message when all are older, or
        None when nothing is old."""
        oldest = await self._store.get_messages(agent_id, limit=1)
        if not oldest or oldest[0].created_at >= cutoff:
            return None  # the common case once retention has run: one small read per agent and sweep
        last_old: int | None = None
        from_seq = oldest[0].seq
        while page := await self._store.get_messages(agent_id, from_seq=from_seq, limit=_PAGE):
            for message in page:
                if message.created_at >= cutoff:
                    return None if last_old is None else await self._keep_calls_with_results(agent_id, message.seq)
                last_old = message.seq
            from_seq = page[-1].seq + 1
        return None if last_old is None else last_old + 1

    async def _keep_calls_with_results(self, agent_id: str, seq: int) -> int | None:
        """Move the cut back while the first kept message is a function result."""
        while True:
            first = await self._store.get_messages(agent_id, from_seq=seq, limit=1)
            if not first or first[0].role != "tool":
                return seq
            before = await self._store.get_messages_before(agent_id, before_seq=seq, limit=1)
            if not before:
                return None
            seq = before[0].seq

    async def _move_context(self, agent: AgentRecord, *, summary: str, start_seq: int) -> None:
        update = AgentUpdate(summary=summary, context_start_seq=start_seq, is_pressure_warned=False)
        try:
            await self._store.update_agent(agent.id, update, expected_version=agent.version)
        except VersionConflictError:
            # Another writer (an admin pause) moved the record on; the context start is ours to set.
            fresh = await self._store.get_agent(agent.id)
            if fresh is None or fresh.context_start_seq != agent.context_start_seq:
                raise
            await self._store.update_agent(agent.id, update, expected_version=fresh.version)


class _SweepStore(MemoryStore, RuntimeStore, Protocol):
    """Memory to trim, leases to take, and the inbox to prune."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SweepReport:
    """What one sweep did."""

    inbox_pruned: int = 0
    agents: tuple[RetentionReport, ...] = ()
    #: Agents another replica (or a turn) held, left for the next sweep.
    agents_busy: int = 0
    #: Agents whose retention failed (the LLM or the store); nothing of theirs was deleted.
    agents_failed: int = 0


class RetentionSweep:
    """The periodic job: prune finished inbox entries (they hold message text), then apply recall
    retention to every agent under its lease. Safe on every replica at once."""

    def __init__(
        self,
        *,
        store: _SweepStore,
        owner: str,
        retention: RecallRetention | None,
        inbox_keep: timedelta,
        lease_ttl: timedelta = timedelta(seconds=60),
        on_changed: Callable[[str], None] = lambda agent_id: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        # Its own lease owner: this replica's runtime must wait for the sweep, not join it.
        self._owner = f"{owner}/retention"
        self._retention = retention
        self._inbox_keep = inbox_keep
        self._lease_ttl = lease_ttl
        self._on_changed = on_changed
        self._clock = clock

    async def run(self) -> SweepReport:
        pruned = await self._store.inbox_prune(older_than=self._clock() - self._inbox_keep)
        if self._retention is None:
            return SweepReport(inbox_pruned=pruned)
        reports: list[RetentionReport] = []
        busy = failed = 0
        offset = 0
        while page := await self._store.list_agents(offset=offset, limit=_PAGE):
            offset += len(page)
            for agent in page:
                with log_context(agent_id=agent.id, server=None, event_id="retention"):
                    outcome = await self._apply(self._retention, agent.id)
                if outcome is None:
                    busy += 1
                elif isinstance(outcome, RetentionReport):
                    reports.append(outcome)
                else:
                    failed += 1
        report = SweepReport(inbox_pruned=pruned, agents=tuple(reports), agents_busy=busy, agents_failed=failed)
        _log.info(
            "retention sweep: %d inbox entries pruned, %d messages deleted from %d agents (%d busy, %d failed)",
            pruned,
            sum(r.deleted for r in reports),
            sum(1 for r in reports if r.deleted),
            busy,
            failed,
        )
        return report

    async def _apply(self, retention: RecallRetention, agent_id: str) -> RetentionReport | Exception | None:
        """The agent's retention under its lease; None when the agent is busy."""
        now = self._clock()
        lease = await self._store.lease_acquire(agent_id, self._owner, now=now, expires_at=now + self._lease_ttl)
        if lease is None:
            return None
        fence = WRITE_FENCE.set(Fence(agent_id=agent_id, token=lease.token))
        try:
            return await retention.apply(agent_id)
        except (LLMError, StoreError) as exc:
            _log.warning("retention of agent %s failed, nothing deleted: %s", agent_id, exc)
            return exc
        finally:
            WRITE_FENCE.reset(fence)
            self._on_changed(agent_id)
            with contextlib.suppress(StoreError):
                await self._store.lease_release(lease)
