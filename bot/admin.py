"""The admin service: one platform-neutral set of admin commands (see shared/STYLE.md §12).

The Discord `/memory ...` cog and the Slack `/membot ...` command parse their arguments, call
one method here and format what it returns; nothing here formats text for a platform.

Every method takes the `Actor` who ran the command and checks, in code, that the actor is an
admin (`NotAllowedError` otherwise, before anything is read or written) and that the agent
belongs to the server the command was run in. An actor with `scope=None` is a bot-wide admin
(the operator); a server admin (`scope="discord:123"`) sees only that server's agents, never
users' direct-message agents. Every action that changes something, and every export, is
written to the audit log; refused attempts change nothing and are not audited.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from bot.agent.directory import AgentDirectory
from bot.agent.loop import AgentLoop
from bot.agent.templates import TemplateKind, Templates
from bot.errors import NotAllowedError, NotFoundError, UserFacingError
from bot.memory.policy_store import AuditEntry, Policy, RoutingMode
from bot.memory.runtime_store import DueHeartbeat
from bot.memory.store import AgentRecord, AgentUpdate, CoreBlock, StoredMessage
from bot.memory.usage_store import BudgetKind, UsageGroup, UsageRecord, budget_key, spent_today
from bot.runtime import Runtime, Store

__all__ = [
    "Actor",
    "AdminService",
    "BlockSummary",
    "BudgetStatus",
    "ForgetReport",
    "HeartbeatReport",
    "MemorySummary",
    "ResetReport",
    "ResetScope",
    "UsageReport",
]

ResetScope = Literal["core", "recall", "archival", "all"]

_log = logging.getLogger(__name__)

_PAGE = 500


@dataclass(frozen=True, slots=True, kw_only=True)
class Actor:
    """Who ran an admin command, and where."""

    id: str
    name: str
    #: The server or workspace the command was run in (`discord:123`); None: bot-wide.
    scope: str | None
    #: Decided by the platform (Discord permissions, Slack admins); checked again here.
    is_admin: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockSummary:
    label: str
    value: str
    size: int
    limit: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MemorySummary:
    """What `show` reports about one agent."""

    agent_id: str
    name: str
    conversation_key: str | None
    blocks: tuple[BlockSummary, ...]
    recall_count: int
    archival_count: int
    summary: str
    is_paused: bool
    heartbeats_paused_until: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ResetReport:
    agent_id: str
    scope: ResetScope
    blocks_reset: int = 0
    messages_deleted: int = 0
    passages_deleted: int = 0
    agent_deleted: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class HeartbeatReport:
    agent_id: str
    due_at: datetime
    #: True when it was handed to this process's runtime; False when scheduled for the scheduler.
    is_queued_directly: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ForgetReport:
    """What forgetting a user deleted, and what it could not."""

    user_id: str
    #: The user's own agents (DM, per-user), deleted entirely.
    agents_deleted: tuple[str, ...]
    #: Shared agents (in scope) the user's messages were deleted from, and how many messages.
    shared_agents_cleaned: tuple[str, ...] = ()
    shared_messages_deleted: int = 0
    #: Shared agents still holding messages the user wrote (none since the store deletes by speaker).
    shared_agents_kept: tuple[str, ...] = ()
    shared_messages_kept: int = 0
    #: False when some of the user's messages are still stored (see `shared_messages_kept`).
    is_complete: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetStatus:
    """Where one daily budget stands today (UTC)."""

    kind: BudgetKind
    #: The server (`discord:123`) or the user (`discord:456`).
    who: str
    #: Tokens counted against the budget today (what a reset forgave is not).
    spent: int
    #: The daily limit; 0: no cap.
    limit: int

    @property
    def is_spent(self) -> bool:
        return 0 < self.limit <= self.spent


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageReport:
    """Token usage over a span of UTC days, summed by the groups asked for."""

    since: date
    until: date
    #: The server reported on; None: every server and the DMs (a bot-wide admin).
    scope: str | None
    #: One row per distinct value of the groups; the other fields are blank.
    rows: tuple[UsageRecord, ...]
    total_prompt_tokens: int
    total_completion_tokens: int
    total_calls: int
    #: The server's budget today; None for a bot-wide report.
    server_budget: BudgetStatus | None


class AdminService:
    """Admin commands over one store; returns values, never formatted text."""

    def __init__(
        self,
        *,
        store: Store,
        directory: AgentDirectory,
        loop: AgentLoop,
        templates: Templates,
        runtime: Runtime | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        budget_limits: Mapping[BudgetKind, int] | None = None,
    ) -> None:
        self._store = store
        self._budget_limits = dict(budget_limits or {})
        self._directory = directory
        self._loop = loop
        self._templates = templates
        self._runtime = runtime
        self._clock = clock

    # -- one agent --------------------------------------------------------------------------
    async def show(self, actor: Actor, agent_id: str) -> MemorySummary:
        agent = await self._agent(actor, agent_id)
        blocks = await self._store.get_blocks(agent_id)
        return MemorySummary(
            agent_id=agent.id,
            name=agent.name,
            conversation_key=agent.conversation_key,
            blocks=tuple(BlockSummary(label=b.label, value=b.value, size=len(b.value), limit=b.limit) for b in blocks),
            recall_count=await self._store.count_messages(agent_id),
            archival_count=await self._store.count_passages(agent_id),
            summary=agent.summary,
            is_paused=agent.is_paused,
            heartbeats_paused_until=agent.heartbeats_paused_until,
        )

    async def dump(self, actor: Actor, agent_id: str) -> dict[str, Any]:
        """Everything the agent holds (`AgentDirectory.export`); audited, as it discloses data."""
        await self._agent(actor, agent_id)
        exported = await self._directory.export(agent_id)
        await self._audit(actor, "dump", agent_id=agent_id)
        return exported

    async def edit_block(self, actor: Actor, agent_id: str, label: str, value: str) -> CoreBlock:
        """Overwrite one core block (created if new); its limit is enforced (`CoreBlockLimitError`)."""
        await self._agent(actor, agent_id)
        block = await self._loop.core.overwrite(agent_id, label, value)
        self._loop.forget_cached(agent_id)
        await self._audit(actor, "edit_block", agent_id=agent_id, detail=f"label={label} chars={len(value)}")
        return block

    async def reset(self, actor: Actor, agent_id: str, scope: ResetScope) -> ResetReport:
        """Reset part of an agent's memory; `all` deletes the agent (recreated on its next message)."""
        agent = await self._agent(actor, agent_id)
        try:
            if scope == "all":
                await self._store.delete_agent(agent_id)
                await self._store.cancel_heartbeat(agent_id)
                report = ResetReport(agent_id=agent_id, scope=scope, agent_deleted=True)
            elif scope == "core":
                report = ResetReport(agent_id=agent_id, scope=scope, blocks_reset=await self._reset_core(agent))
            elif scope == "recall":
                deleted = await self._store.delete_messages_from(agent_id, 1)
                current = await self._directory.require(agent_id)
                await self._store.update_agent(
                    agent_id,
                    AgentUpdate(context_start_seq=1, summary="", is_pressure_warned=False),
                    expected_version=current.version,
                )
                report = ResetReport(agent_id=agent_id, scope=scope, messages_deleted=deleted)
            else:
                deleted = await self._store.delete_passages(agent_id)
                report = ResetReport(agent_id=agent_id, scope=scope, passages_deleted=deleted)
        finally:
            self._loop.forget_cached(agent_id)
        await self._audit(actor, f"reset_{scope}", agent_id=agent_id)
        return report

    async def pause(self, actor: Actor, agent_id: str) -> AgentRecord:
        return await self._set_paused(actor, agent_id, is_paused=True)

    async def resume(self, actor: Actor, agent_id: str) -> AgentRecord:
        return await self._set_paused(actor, agent_id, is_paused=False)

    async def heartbeat_now(self, actor: Actor, agent_id: str) -> HeartbeatReport:
        """Fire a reflection heartbeat now: through this process's runtime when there is one,
        otherwise scheduled as due now, so the scheduler fires it on its next tick."""
        await self._agent(actor, agent_id)
        now = self._clock()
        if self._runtime is not None:
            self._runtime.heartbeat(DueHeartbeat(agent_id=agent_id, due_at=now, claimed_by=self._runtime.owner))
        else:
            await self._store.schedule_heartbeat(agent_id, due_at=now)
        await self._audit(actor, "heartbeat_now", agent_id=agent_id)
        return HeartbeatReport(agent_id=agent_id, due_at=now, is_queued_directly=self._runtime is not None)

    # -- policies ---------------------------------------------------------------------------
    async def set_policy(
        self,
        actor: Actor,
        scope: str,
        channel: str | None,
        mode: RoutingMode,
        persona: str | None,
        human: str | None,
        proactive_channel: str | None,
    ) -> Policy:
        """Create or replace the policy of a server (channel=None) or one of its channels.

        Template names follow the admins' rule (`Templates.admin_text`: an installed name whose
        text fits a core block, never a path; `UserFacingError` otherwise). A name the policy
        already held that no longer passes (stored before the rule, or uninstalled since) is
        dropped with a warning rather than refused, so the other fields can still be changed."""
        self._require_server(actor, scope)
        stored = await self._store.get_policy(scope, channel)
        persona = self._checked_template("persona", persona, stored.persona if stored else None)
        human = self._checked_template("human", human, stored.human if stored else None)
        policy = Policy(
            scope=scope,
            channel=channel,
            mode=mode,
            persona=persona,
            human=human,
            proactive_channel=proactive_channel,
            updated_at=self._clock(),
            updated_by=actor.id,
        )
        await self._store.set_policy(policy)
        where = f"channel={channel}" if channel is not None else "server"
        await self._audit(actor, "set_policy", detail=f"{scope} {where} mode={mode}")
        return policy

    async def get_policy(self, actor: Actor, scope: str, channel: str | None) -> Policy | None:
        self._require_server(actor, scope)
        return await self._store.get_policy(scope, channel)

    # -- users ------------------------------------------------------------------------------
    async def export_user(self, actor: Actor, user_id: str) -> dict[str, Any]:
        """The user's own agents (per-user agents on the actor's server; also DM agents for a
        bot-wide admin) and the user's messages inside the shared agents in scope."""
        _require_admin(actor)
        own, shared = await self._user_agents(actor, user_id)
        shared_messages: list[dict[str, Any]] = []
        for agent in shared:
            messages = await self._messages_by(agent.id, user_id)
            if messages:
                shared_messages.append(
                    {
                        "agent_id": agent.id,
                        "conversation_key": agent.conversation_key,
                        "messages": [_jsonable(asdict(m)) for m in messages],
                    }
                )
        exported = {
            "format": "membot-user-export",
            "version": 1,
            "exported_at": self._clock().isoformat(),
            "user_id": user_id,
            "scope": actor.scope,
            "agents": [await self._directory.export(agent.id) for agent in own],
            "shared_messages": shared_messages,
        }
        await self._audit(actor, "export_user", detail=f"user={user_id} agents={len(own)}")
        return exported

    async def forget_user(self, actor: Actor, user_id: str) -> ForgetReport:
        """Delete the user's own agents in scope entirely, and the messages the user wrote in the
        shared agents of the scope (`delete_messages_by_speaker`; other messages keep their seqs).
        Summaries and core blocks those agents wrote from the messages are not rewritten."""
        _require_admin(actor)
        own, shared = await self._user_agents(actor, user_id)
        for agent in own:
            await self._delete(agent.id)
        cleaned: list[str] = []
        deleted = 0
        for agent in shared:
            try:
                count = await self._store.delete_messages_by_speaker(agent.id, user_id)
            except NotFoundError:
                continue  # deleted meanwhile: nothing of the user's left there
            finally:
                self._loop.forget_cached(agent.id)
            if count:
                cleaned.append(agent.id)
                deleted += count
        report = ForgetReport(
            user_id=user_id,
            agents_deleted=tuple(a.id for a in own),
            shared_agents_cleaned=tuple(cleaned),
            shared_messages_deleted=deleted,
            shared_messages_kept=0,
            is_complete=True,
        )
        await self._audit(
            actor,
            "forget_user",
            detail=f"user={user_id} agents_deleted={len(own)} shared_messages_deleted={deleted}",
        )
        return report

    async def forget_me(self, user_id: str, name: str, *, platform: str) -> ForgetReport:
        """A user forgets their own direct-message agent on `platform`; no admin needed."""
        agent = await self._store.get_agent_by_conversation(f"{platform}:dm:{user_id}")
        if agent is None:
            return ForgetReport(user_id=user_id, agents_deleted=())
        await self._delete(agent.id)
        me = Actor(id=user_id, name=name, scope=None, is_admin=False)
        await self._audit(me, "forget_me", agent_id=agent.id)
        return ForgetReport(user_id=user_id, agents_deleted=(agent.id,))

    async def audit(self, actor: Actor, limit: int = 50) -> list[AuditEntry]:
        """The newest audit entries of the actor's server (every server's for a bot-wide admin)."""
        _require_admin(actor)
        return await self._store.list_audit(scope=actor.scope, limit=limit)

    # -- usage and budgets ------------------------------------------------------------------
    async def usage(
        self, actor: Actor, *, days: int = 7, by: Sequence[UsageGroup] = ("day", "channel", "agent")
    ) -> UsageReport:
        """LLM token usage of the last `days` UTC days (today included), summed by `by`: a server
        admin sees their server's, a bot-wide admin every server's and the DMs'."""
        _require_admin(actor)
        if not 1 <= days <= 366:
            raise UserFacingError("The number of days must be between 1 and 366.")
        today = self._clock().astimezone(UTC).date()
        since = today - timedelta(days=days - 1)
        rows = await self._store.sum_usage(since=since, scope=actor.scope, by=by)
        return UsageReport(
            since=since,
            until=today,
            scope=actor.scope,
            rows=tuple(rows),
            total_prompt_tokens=sum(r.prompt_tokens for r in rows),
            total_completion_tokens=sum(r.completion_tokens for r in rows),
            total_calls=sum(r.calls for r in rows),
            server_budget=None if actor.scope is None else await self._budget_status("server", actor.scope, today),
        )

    async def reset_budget(self, actor: Actor, kind: BudgetKind, who: str | None = None) -> BudgetStatus:
        """Give a server (`who` = its scope; default: the actor's) or a user (`who` =
        `{platform}:{user id}`) a fresh daily budget for the rest of today (UTC): what was spent so
        far is forgiven and the bot answers again. Audited."""
        _require_admin(actor)
        who = who or (actor.scope if kind == "server" else None)
        if who is None:
            raise UserFacingError("Name the server or user whose budget to reset.")
        if kind == "server":
            self._require_server(actor, who)
        today = self._clock().astimezone(UTC).date()
        spent = await (
            self._store.tokens_spent(today, scope=who)
            if kind == "server"
            else self._store.tokens_spent(today, user_id=who)
        )
        await self._store.reset_budget(budget_key(kind, who), today, reset_tokens=spent)
        await self._audit(actor, "reset_budget", detail=f"{kind}={who} forgiven_tokens={spent}")
        return await self._budget_status(kind, who, today)

    async def _budget_status(self, kind: BudgetKind, who: str, day: date) -> BudgetStatus:
        spent = await spent_today(self._store, kind, who, day)
        return BudgetStatus(kind=kind, who=who, spent=spent, limit=self._budget_limits.get(kind, 0))

    # -- helpers ----------------------------------------------------------------------------
    async def _agent(self, actor: Actor, agent_id: str) -> AgentRecord:
        """The agent, once the actor is known to be an admin of the server it belongs to."""
        _require_admin(actor)
        agent = await self._store.get_agent(agent_id)
        if agent is None:
            raise NotFoundError(f"no agent with id {agent_id!r}")
        if not _in_scope(actor, agent.conversation_key):
            raise NotAllowedError("That agent does not belong to this server.")
        return agent

    def _require_server(self, actor: Actor, scope: str) -> None:
        _require_admin(actor)
        if actor.scope is not None and actor.scope != scope:
            raise NotAllowedError("You can only manage the server this command was run in.")

    def _checked_template(self, kind: TemplateKind, name: str | None, stored: str | None) -> str | None:
        if name is None:
            return None
        try:
            self._templates.admin_text(kind, name)
        except UserFacingError as exc:
            if name != stored:
                raise
            _log.warning("dropping %s template %r from a stored policy: %s", kind, name[:60], exc)
            return None
        return name

    async def _reset_core(self, agent: AgentRecord) -> int:
        old = {b.label: b for b in await self._store.get_blocks(agent.id)}
        # The names the agent was created with, by the same rules as a new agent's (never a path an admin gave).
        texts = {
            "persona": self._templates.for_agent("persona", agent.persona_template)[1],
            "human": self._templates.for_agent("human", agent.human_template)[1],
        }
        await self._store.delete_blocks(agent.id)
        for label, text in texts.items():
            previous = old.get(label)
            limit = max(previous.limit, len(text)) if previous is not None else None
            await self._loop.core.overwrite(agent.id, label, text, limit=limit)
        return len(texts)

    async def _set_paused(self, actor: Actor, agent_id: str, *, is_paused: bool) -> AgentRecord:
        agent = await self._agent(actor, agent_id)
        updated = await self._store.update_agent(
            agent_id, AgentUpdate(is_paused=is_paused), expected_version=agent.version
        )
        await self._audit(actor, "pause" if is_paused else "resume", agent_id=agent_id)
        return updated

    async def _delete(self, agent_id: str) -> None:
        await self._store.delete_agent(agent_id)
        await self._store.cancel_heartbeat(agent_id)
        self._loop.forget_cached(agent_id)

    async def _user_agents(self, actor: Actor, user_id: str) -> tuple[list[AgentRecord], list[AgentRecord]]:
        """(the user's own agents, the shared channel agents) within the actor's scope."""
        own: list[AgentRecord] = []
        shared: list[AgentRecord] = []
        offset = 0
        while page := await self._store.list_agents(offset=offset, limit=_PAGE):
            offset += len(page)
            for agent in page:
                key = agent.conversation_key
                if key is None or not _in_scope(actor, key):
                    continue
                parts = key.split(":")
                is_dm = len(parts) == 3 and parts[1] == "dm"
                if (is_dm or (len(parts) == 4 and parts[2] == "user")) and parts[-1] == user_id:
                    own.append(agent)
                elif len(parts) == 4 and parts[2] == "channel":
                    shared.append(agent)
        return own, shared

    async def _messages_by(self, agent_id: str, user_id: str) -> list[StoredMessage]:
        found: list[StoredMessage] = []
        from_seq = 1
        while page := await self._store.get_messages(agent_id, from_seq=from_seq, limit=_PAGE):
            found += [m for m in page if m.speaker_id == user_id]
            from_seq = page[-1].seq + 1
        return found

    async def _audit(self, actor: Actor, action: str, *, agent_id: str | None = None, detail: str = "") -> None:
        await self._store.append_audit(
            AuditEntry(
                at=self._clock(),
                scope=actor.scope,
                actor_id=actor.id,
                actor_name=actor.name,
                action=action,
                agent_id=agent_id,
                detail=detail,
            )
        )


def _require_admin(actor: Actor) -> None:
    if not actor.is_admin:
        raise NotAllowedError("Only an admin can do that.")


def _in_scope(actor: Actor, conversation_key: str | None) -> bool:
    """Whether an agent's conversation (see `bot.router` for the key formats) is in the actor's
    server. A server's keys are `{platform}:{server}:...`; DM and unbound agents are bot-wide."""
    if actor.scope is None:
        return True
    return conversation_key is not None and conversation_key.startswith(f"{actor.scope}:")


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
