"""What the console's pages show, read from the store and the agent loop (never written here:
every change goes through `AdminService`).

Each read is bounded whatever the store holds: agents come a page at a time with counts from
indexes or counters (`recall_stats`), recall is read as "the newest N" and searched through its
indexes, the context window is the loop's own count of the agent's queue, and usage is read by
day range.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal

from bot.agent.context import ContextBreakdown
from bot.agent.loop import AgentLoop
from bot.memory.policy_store import AuditEntry
from bot.memory.runtime_store import HeartbeatState
from bot.memory.store import AgentRecord, CoreBlock, MessageRole, Passage, RecallStats, StoredMessage
from bot.memory.usage_store import UsageRecord
from bot.runtime import Store

__all__ = [
    "AgentRow",
    "AgentView",
    "AgentsPage",
    "AuditView",
    "ConsoleReads",
    "CostView",
    "HeartbeatView",
    "Place",
    "ReflectionChange",
    "Series",
    "place_of",
]

#: Above every seq a store hands out: "the newest N" is `get_messages_before(_END)`.
_END_SEQ = 2**62
#: Functions whose call in a reflection changed something (memory, a pause, a post).
_CHANGING = frozenset(
    {"core_memory_append", "core_memory_replace", "archival_memory_insert", "pause_heartbeats", "send_message"}
)
#: How far back from a heartbeat's end its reflection is looked for (a turn is bounded well below).
_REFLECTION_SPAN = timedelta(hours=1)
_TOP_SERIES = 12


@dataclass(frozen=True, slots=True, kw_only=True)
class Place:
    """Where an agent talks, from its conversation key (see `bot.router` for the formats)."""

    platform: str
    #: `discord:123`; None for direct messages and agents without a platform.
    server: str | None
    kind: Literal["channel", "user", "dm", "other"]
    #: The channel or user id; the whole key for `other`.
    target: str


def place_of(key: str | None) -> Place:
    parts = (key or "").split(":")
    if len(parts) == 4 and parts[2] in ("channel", "user"):
        return Place(
            platform=parts[0],
            server=f"{parts[0]}:{parts[1]}",
            kind="channel" if parts[2] == "channel" else "user",
            target=parts[3],
        )
    if len(parts) == 3 and parts[1] == "dm":
        return Place(platform=parts[0], server=None, kind="dm", target=parts[2])
    return Place(platform=parts[0] if key and len(parts) > 1 else "-", server=None, kind="other", target=key or "")


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentRow:
    agent: AgentRecord
    place: Place
    stats: RecallStats
    tokens_today: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentsPage:
    rows: tuple[AgentRow, ...]
    total: int
    offset: int
    limit: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReflectionChange:
    """One change a reflection made: the function, its arguments (JSON text) and whether it worked."""

    name: str
    arguments: str
    is_ok: bool | None
    at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class HeartbeatView:
    state: HeartbeatState | None
    #: When the last reflection started (its event in recall), if it is still there.
    reflection_at: datetime | None
    changes: tuple[ReflectionChange, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentView:
    agent: AgentRecord
    place: Place
    blocks: tuple[CoreBlock, ...]
    recall_count: int
    archival_count: int
    recent: tuple[StoredMessage, ...]
    context: ContextBreakdown
    heartbeat: HeartbeatView
    tokens_today: int
    recall_query: str
    archival_query: str
    recall_hits: tuple[tuple[StoredMessage, ...], int] | None
    archival_hits: tuple[tuple[Passage, ...], int] | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Series:
    """Tokens per day of one server or agent."""

    #: The server's scope ("" for direct messages) or the agent's id.
    key: str
    label: str
    values: tuple[int, ...]

    @property
    def total(self) -> int:
        return sum(self.values)


@dataclass(frozen=True, slots=True, kw_only=True)
class CostView:
    days: tuple[date, ...]
    server: str | None
    servers: tuple[Series, ...]
    agents: tuple[Series, ...]
    #: Servers and agents with usage beyond the charted top ones.
    more_servers: int
    more_agents: int
    total: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditView:
    entries: tuple[AuditEntry, ...]
    #: True when more entries matched the store's filters than were read.
    is_cut: bool


class ConsoleReads:
    """The console's reads over one store and the agent loop (for the context breakdown and searches)."""

    def __init__(
        self, *, store: Store, loop: AgentLoop, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self._store = store
        self._loop = loop
        self._clock = clock

    def today(self) -> date:
        return self._clock().astimezone(UTC).date()

    async def agents(self, *, key_prefix: str | None, offset: int, limit: int) -> AgentsPage:
        agents = await self._store.list_agents(offset=offset, limit=limit, key_prefix=key_prefix)
        total = await self._store.count_agents(key_prefix=key_prefix)
        stats = await self._store.recall_stats([a.id for a in agents])
        today = await self._tokens_by_agent(self.today())
        empty = RecallStats(message_count=0, last_message_at=None)
        rows = tuple(
            AgentRow(
                agent=a,
                place=place_of(a.conversation_key),
                stats=stats.get(a.id, empty),
                tokens_today=today.get(a.id, 0),
            )
            for a in agents
        )
        return AgentsPage(rows=rows, total=total, offset=offset, limit=limit)

    async def agent(self, agent: AgentRecord, *, recall_query: str, archival_query: str, recent: int = 20) -> AgentView:
        place = place_of(agent.conversation_key)
        recall_hits = archival_hits = None
        if recall_query:
            found, total = await self._loop.recall.search_messages(agent.id, recall_query, offset=0, limit=10)
            recall_hits = (tuple(found), total)
        if archival_query:
            passages, count = await self._loop.archival.search_passages(agent.id, archival_query, offset=0, limit=10)
            archival_hits = (tuple(passages), count)
        usage = await self._store.sum_usage(since=self.today(), until=self.today(), scope=place.server, by=("agent",))
        return AgentView(
            agent=agent,
            place=place,
            blocks=tuple(await self._store.get_blocks(agent.id)),
            recall_count=await self._store.count_messages(agent.id),
            archival_count=await self._store.count_passages(agent.id),
            recent=tuple(await self._store.get_messages_before(agent.id, before_seq=_END_SEQ, limit=recent)),
            context=await self._loop.context_breakdown(agent.id),
            heartbeat=await self._heartbeat(agent.id),
            tokens_today=sum(r.total_tokens for r in usage if r.agent_id == agent.id),
            recall_query=recall_query,
            archival_query=archival_query,
            recall_hits=recall_hits,
            archival_hits=archival_hits,
        )

    async def cost(self, *, server: str | None, days: int = 30) -> CostView:
        until = self.today()
        span = tuple(until - timedelta(days=days - 1 - i) for i in range(days))
        by_server = await self._store.sum_usage(since=span[0], until=until, scope=server, by=("day", "server"))
        servers = [
            Series(key=s.key, label=s.key or "(direct messages)", values=s.values)
            for s in _series(by_server, span, key=lambda r: r.scope or "")
        ]
        # The biggest agents by their total, then only their days: not a row per agent and day.
        totals = await self._store.sum_usage(since=span[0], until=until, scope=server, by=("agent",))
        top = [r.agent_id for r in sorted(totals, key=lambda r: (-r.total_tokens, r.agent_id))[:_TOP_SERIES]]
        by_agent = await self._store.sum_usage(
            since=span[0], until=until, scope=server, agent_ids=top, by=("day", "agent")
        )
        agents = []
        for series in _series(by_agent, span, key=lambda r: r.agent_id):
            found = await self._store.get_agent(series.key)
            label = found.name if found is not None else f"{series.key} (deleted)"
            agents.append(Series(key=series.key, label=label, values=series.values))
        return CostView(
            days=span,
            server=server,
            servers=tuple(servers[:_TOP_SERIES]),
            agents=tuple(agents),
            more_servers=max(0, len(servers) - _TOP_SERIES),
            more_agents=max(0, len(totals) - _TOP_SERIES),
            total=sum(r.total_tokens for r in by_server),
        )

    async def audit(
        self, *, server: str | None, agent_id: str | None, action: str, actor: str, limit: int
    ) -> AuditView:
        """The newest entries; server and agent filter in the store (indexed), action and actor here."""
        read = limit if not (action or actor) else max(limit, 1000)
        entries = await self._store.list_audit(scope=server or None, agent_id=agent_id or None, limit=read)
        kept = [
            e
            for e in entries
            if (not action or e.action == action)
            and (not actor or actor.casefold() in f"{e.actor_id} {e.actor_name}".casefold())
        ]
        return AuditView(entries=tuple(kept[:limit]), is_cut=len(kept) > limit or len(entries) == read)

    async def _tokens_by_agent(self, day: date) -> dict[str, int]:
        rows = await self._store.sum_usage(since=day, until=day, by=("agent",))
        return {r.agent_id: r.total_tokens for r in rows}

    async def _heartbeat(self, agent_id: str) -> HeartbeatView:
        state = await self._store.heartbeat_state(agent_id)
        if state is None or state.last_fired_at is None:
            return HeartbeatView(state=state, reflection_at=None, changes=())
        end = state.last_fired_at + timedelta(seconds=1)
        start = state.last_fired_at - _REFLECTION_SPAN
        roles: tuple[MessageRole, ...] = ("system", "assistant", "tool")
        _none, total = await self._store.messages_between(agent_id, start, end, limit=0, roles=roles)
        messages, _ = await self._store.messages_between(
            agent_id, start, end, offset=max(0, total - 100), limit=100, roles=roles
        )
        return _reflection(state, messages)


def _reflection(state: HeartbeatState, messages: Sequence[StoredMessage]) -> HeartbeatView:
    """The changes made after the last reflection event among `messages` (time order)."""
    starts = [i for i, m in enumerate(messages) if m.role == "system" and m.content.startswith("reflection:")]
    if not starts:
        return HeartbeatView(state=state, reflection_at=None, changes=())
    turn = messages[starts[-1] :]
    results: dict[str, bool | None] = {}
    for message in turn:
        if message.role == "tool" and message.tool_call_id:
            results[message.tool_call_id] = _is_ok(message.content)
    changes = tuple(
        ReflectionChange(name=call.name, arguments=call.arguments, is_ok=results.get(call.id), at=message.created_at)
        for message in turn
        if message.role == "assistant"
        for call in message.tool_calls
        if call.name in _CHANGING
    )
    return HeartbeatView(state=state, reflection_at=turn[0].created_at, changes=changes)


def _is_ok(result: str) -> bool | None:
    try:
        status = json.loads(result).get("status")
    except (ValueError, AttributeError):
        return None
    return status == "OK" if isinstance(status, str) else None


def _series(rows: Sequence[UsageRecord], days: Sequence[date], *, key: Callable[[UsageRecord], str]) -> list[Series]:
    """Per key, tokens on each of `days`; biggest total first."""
    index = {day: i for i, day in enumerate(days)}
    values: dict[str, list[int]] = {}
    for row in rows:
        position = index.get(row.day)
        if position is not None:
            values.setdefault(key(row), [0] * len(days))[position] += row.total_tokens
    series = [Series(key=k, label=k, values=tuple(v)) for k, v in values.items()]
    return sorted(series, key=lambda s: (-s.total, s.key))
