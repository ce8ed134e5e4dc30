"""The runtime: many agents at once, one turn at a time each, nothing lost or doubled.

    adapter ──submit──> inbox (store) ──wake──> mailbox(agent) ──lease──> AgentLoop.run_turn
                                                      ^
    scheduler ──heartbeat(due)────────────────────────┘

- Every event is written to the inbox under its platform keys *before* the adapter
  acknowledges it; a duplicate key drops the event there.
- Each agent with work has a mailbox task in this process. It claims the agent's lease in
  the store (so no other replica runs the agent), takes *all* of the agent's pending inbox
  entries (whichever replica received them) as one turn, and marks them done. User messages
  go before heartbeats; a burst becomes one turn with every speaker kept.
- Memory writes during a turn carry the lease's fencing token (`WRITE_FENCE`), so a replica
  that froze past its lease cannot overwrite what the new holder wrote.
- Replies are recorded on the inbox entry as they are delivered: after a crash, an entry
  that got its reply is closed, not answered again; one that did not is run again, and
  its messages (recorded by platform id) are not stored twice.
- Each turn's LLM calls (summaries included) are noted as they happen by `LimitedChatModel`,
  through a context variable the runtime sets around the turn, for the `RuntimeObserver`
  (metrics) and, when the turn ends, charged to the `UsageMeter` (token usage), which may also
  refuse a turn before it calls the LLM (daily budgets). Both default to doing nothing.
- Request/response callers (the A2A server) store a request's messages with
  `submit_together`, so this replica answers them in one turn, and wait on a turn listener
  (`add_turn_listener`), told which inbound messages each turn answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from bot.agent.loop import AgentLoop, TurnResult
from bot.errors import AgentPausedError, LeaseLostError, NotFoundError, StoreError
from bot.events import InboundMessage, Interrupt, ReplySink
from bot.memory.policy_store import PolicyStore
from bot.memory.runtime_store import WRITE_FENCE, DueHeartbeat, Fence, InboxEntry, Lease, RuntimeStore
from bot.memory.store import MemoryStore
from bot.memory.usage_store import UsageStore
from bot.metering import (
    UNMETERED,
    UNOBSERVED,
    Refusal,
    RuntimeObserver,
    TurnContext,
    TurnOutcome,
    UsageMeter,
    labels_of,
    noting_calls,
)
from bot.ops.logging import log_content, log_context, task_log_context

__all__ = [
    "FinishedTurn",
    "Runtime",
    "RuntimeOptions",
    "RuntimeStats",
    "SinkFactory",
    "Store",
    "TurnListener",
    "decode_message",
    "encode_message",
]

_log = logging.getLogger(__name__)


class Store(MemoryStore, RuntimeStore, PolicyStore, UsageStore, Protocol):
    """What the runtime needs: memory, coordination, the servers' policies and token usage in one store."""


SinkFactory = Callable[[InboundMessage], ReplySink]


@dataclass(frozen=True, slots=True, kw_only=True)
class FinishedTurn:
    """The inbound messages one turn of this replica answered (or gave up on), for callers
    that wait on a request/response protocol (A2A) rather than post replies on their own."""

    agent_id: str
    messages: tuple[InboundMessage, ...]
    #: Why the turn failed or was not run; None when it ran.
    error: str | None = None


TurnListener = Callable[[FinishedTurn], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class RuntimeOptions:
    """How the runtime shares work; every value has a setting in `bot.config`."""

    #: This replica's name in leases and claims (unique per process).
    owner: str = field(default_factory=lambda: f"membot-{uuid.uuid4().hex[:12]}")
    lease_ttl: timedelta = timedelta(seconds=60)
    #: Pause between tries while another replica holds an agent that has work here.
    lease_retry_s: float = 1.0
    max_turn_inputs: int = 20
    #: How long `submit`, and noting a delivered reply, keep retrying while the store is unreachable.
    store_wait_s: float = 60.0
    reflection_idle: timedelta = timedelta(minutes=30)
    reflection_min_period: timedelta = timedelta(hours=6)
    reflection_jitter: timedelta = timedelta(minutes=5)


@dataclass(slots=True)
class RuntimeStats:
    """Counters and gauges the operations issue exports as metrics."""

    turns: int = 0
    turns_failed: int = 0
    turns_in_flight: int = 0
    duplicates_dropped: int = 0
    lease_waits: int = 0
    #: Agents this replica took from another whose lease had expired (it died or froze).
    lease_takeovers: int = 0
    leases_lost: int = 0
    heartbeats_fired: int = 0
    heartbeats_skipped: int = 0
    #: Turns not run because a daily budget was spent; leases this replica holds now.
    turns_refused: int = 0
    leases_held: int = 0
    #: Per agent, since start: tokens, LLM calls and seconds spent waiting for the LLM.
    prompt_tokens: dict[str, int] = field(default_factory=dict)
    completion_tokens: dict[str, int] = field(default_factory=dict)
    llm_calls: dict[str, int] = field(default_factory=dict)
    llm_seconds: dict[str, float] = field(default_factory=dict)

    def count_turn(self, agent_id: str, result: TurnResult) -> None:
        self.prompt_tokens[agent_id] = self.prompt_tokens.get(agent_id, 0) + result.prompt_tokens
        self.completion_tokens[agent_id] = self.completion_tokens.get(agent_id, 0) + result.completion_tokens
        self.llm_calls[agent_id] = self.llm_calls.get(agent_id, 0) + result.llm_calls
        self.llm_seconds[agent_id] = self.llm_seconds.get(agent_id, 0.0) + result.llm_seconds


@dataclass(slots=True)
class _Mailbox:
    agent_id: str
    task: asyncio.Task[None] | None = None
    heartbeat: DueHeartbeat | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    #: `submit_together` calls storing messages for this agent; no turn reads the inbox meanwhile.
    holds: int = 0
    released: asyncio.Event = field(default_factory=asyncio.Event)


class _RecordingSink:
    """Delivers through the platform's sink and records each delivery on the inbox entry."""

    def __init__(self, inner: ReplySink, record: Callable[[str], Awaitable[None]]) -> None:
        self._inner = inner
        self._record = record

    async def send(self, text: str) -> str | None:
        reply_id = await self._inner.send(text)
        _log.debug("reply delivered (%d chars)", len(text), extra=log_content(text))
        await self._record(reply_id or "delivered")
        return reply_id

    async def typing(self) -> None:
        await self._inner.typing()


class _QuietSink:
    """Heartbeats between sessions talk to no one unless the server names a channel for it."""

    async def send(self, text: str) -> str | None:
        _log.info("a reflection heartbeat produced a message; proactive messages are off, so it was not sent")
        return None

    async def typing(self) -> None:
        pass


class Runtime:
    """Per-agent mailboxes over one store and one agent loop."""

    def __init__(
        self,
        *,
        store: Store,
        loop: AgentLoop,
        sinks: Mapping[str, SinkFactory],
        options: RuntimeOptions | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
        observer: RuntimeObserver | None = None,
        meter: UsageMeter | None = None,
    ) -> None:
        self._store = store
        self._loop = loop
        self._observer: RuntimeObserver = observer or UNOBSERVED
        self._meter: UsageMeter = meter or UNMETERED
        self._sinks = dict(sinks)
        self._options = options or RuntimeOptions()
        self._clock = clock
        self._rng = rng or random.Random()
        self._mailboxes: dict[str, _Mailbox] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self._is_accepting = False
        self.stats = RuntimeStats()
        self._turn_listeners: list[TurnListener] = []

    @property
    def owner(self) -> str:
        return self._options.owner

    @property
    def queue_depth(self) -> int:
        """Agents with work waiting or running in this process."""
        return len(self._mailboxes)

    async def wait_idle(self) -> None:
        """Return once no agent has work waiting or running in this process."""
        await self._idle.wait()

    def register_sink(self, platform: str, factory: SinkFactory) -> None:
        """How to answer on `platform` (adapters register theirs at start-up)."""
        self._sinks[platform] = factory

    def add_turn_listener(self, listener: TurnListener) -> None:
        """Call `listener` after each turn this replica runs for inbound messages (not heartbeats)."""
        self._turn_listeners.append(listener)

    def _tell_listeners(self, turn: FinishedTurn) -> None:
        for listener in self._turn_listeners:
            try:
                listener(turn)
            except Exception:
                _log.exception("a turn listener failed for agent %s", turn.agent_id)

    async def start(self) -> None:
        """Accept events, and resume every entry left pending by a crash or a redeploy."""
        self._is_accepting = True
        pending = await self._store.inbox_pending(limit=10_000)
        for agent_id in dict.fromkeys(entry.agent_id for entry in pending):
            self._wake(agent_id)
        if pending:
            _log.info("resuming %d pending inbox entries for %d agents", len(pending), len(self._mailboxes))

    async def submit(self, agent_id: str, message: InboundMessage, *, keys: Sequence[str]) -> bool:
        """Store the event under its platform keys, then queue it. False for a duplicate.

        Returns once the event is durable: the adapter acknowledges the platform after this.
        Retries while the store is unreachable, up to `store_wait_s`."""
        if not self._is_accepting:
            raise StoreError("the runtime is shutting down and takes no new events")
        entry = InboxEntry(
            id=uuid.uuid4().hex,
            keys=tuple(keys) or (f"{message.platform}:{uuid.uuid4().hex}",),
            agent_id=agent_id,
            payload=encode_message(message),
            received_at=self._clock(),
        )
        with log_context(agent_id=agent_id, server=message.scope, event_id=entry.keys[0]):
            is_new = await self._with_store_retries(lambda: self._store.inbox_put(entry))
            if not is_new:
                self.stats.duplicates_dropped += 1
                _log.info("dropped a duplicate event for agent %s (keys %s)", agent_id, ", ".join(entry.keys))
                return False
        self._wake(agent_id)
        return True

    async def submit_together(
        self, agent_id: str, messages: Sequence[tuple[InboundMessage, Sequence[str]]]
    ) -> list[bool]:
        """`submit` for messages that belong in one turn (an A2A request's text parts, each with
        its speaker): this replica starts no turn of the agent until all are stored, so they are
        answered together. One result per message, False for a duplicate."""
        mailbox = self._mailboxes.get(agent_id) or self._new_mailbox(agent_id)
        mailbox.holds += 1
        mailbox.released.clear()
        try:
            return [await self.submit(agent_id, message, keys=keys) for message, keys in messages]
        finally:
            mailbox.holds -= 1
            if mailbox.holds == 0:
                mailbox.released.set()
                self._wake(agent_id)

    def heartbeat(self, due: DueHeartbeat) -> None:
        """Queue a claimed reflection heartbeat; it runs only when no user message is waiting."""
        mailbox = self._mailboxes.get(due.agent_id) or self._new_mailbox(due.agent_id)
        mailbox.heartbeat = due
        self._wake(due.agent_id)

    async def stop(self, *, deadline_s: float = 30.0) -> None:
        """Take no new events, let running turns finish within the deadline, then cancel the
        rest (their entries stay pending in the inbox for the next start) and release leases."""
        self._is_accepting = False
        tasks = [m.task for m in self._mailboxes.values() if m.task is not None]
        if not tasks:
            return
        _done, pending = await asyncio.wait(tasks, timeout=deadline_s)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
            _log.warning("shutdown deadline passed: %d turns were interrupted and stay pending", len(pending))

    # -- mailboxes --------------------------------------------------------------------------
    def _new_mailbox(self, agent_id: str) -> _Mailbox:
        mailbox = _Mailbox(agent_id=agent_id)
        self._mailboxes[agent_id] = mailbox
        self._idle.clear()
        return mailbox

    def _wake(self, agent_id: str) -> None:
        mailbox = self._mailboxes.get(agent_id) or self._new_mailbox(agent_id)
        mailbox.wake.set()
        if mailbox.task is None or mailbox.task.done():
            mailbox.task = asyncio.create_task(
                self._drain(mailbox), name=f"membot-agent-{agent_id}", context=task_log_context(agent_id=agent_id)
            )

    async def _drain(self, mailbox: _Mailbox) -> None:
        """Run the agent's work until none is left, holding its lease while it runs."""
        while self._is_accepting:
            mailbox.wake.clear()
            try:
                is_busy = await self._drain_once(mailbox)
            except StoreError as exc:
                _log.warning("agent %s: store unavailable (%s); its events stay in the inbox", mailbox.agent_id, exc)
                is_busy = True
                await asyncio.sleep(self._retry_delay())
            if not is_busy and not mailbox.wake.is_set():
                break
        # No await between the last check and here, so a concurrent `_wake` either saw this
        # task still running (and set `wake`, checked above) or finds the mailbox gone.
        if mailbox.heartbeat is None and not mailbox.holds and self._mailboxes.get(mailbox.agent_id) is mailbox:
            del self._mailboxes[mailbox.agent_id]
            if not self._mailboxes:
                self._idle.set()

    async def _drain_once(self, mailbox: _Mailbox) -> bool:
        """One turn if this replica can take the agent; True while work may remain."""
        lease = await self._acquire(mailbox.agent_id)
        if lease is None:
            if not await self._has_work(mailbox):
                return False
            # Another replica runs the agent; it takes our entries from the inbox too. Look
            # again shortly in case it finished before they were stored.
            self.stats.lease_waits += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(mailbox.wake.wait(), self._retry_delay())
            return True
        if lease.taken_over_from is not None:
            self.stats.lease_takeovers += 1
            _log.warning("agent %s: took over from %s, whose lease had expired", lease.agent_id, lease.taken_over_from)
        self.stats.leases_held += 1
        try:
            return await self._work_under(lease, mailbox)
        finally:
            self.stats.leases_held -= 1
            with contextlib.suppress(StoreError):
                await self._store.lease_release(lease)

    async def _has_work(self, mailbox: _Mailbox) -> bool:
        return mailbox.heartbeat is not None or bool(
            await self._store.inbox_pending(agent_id=mailbox.agent_id, limit=1)
        )

    async def _acquire(self, agent_id: str) -> Lease | None:
        now = self._clock()
        return await self._store.lease_acquire(
            agent_id, self._options.owner, now=now, expires_at=now + self._options.lease_ttl
        )

    async def _work_under(self, lease: Lease, mailbox: _Mailbox) -> bool:
        """One turn under `lease`: the pending user entries if any, else the heartbeat."""
        renewer = asyncio.create_task(self._keep_renewed(lease))
        fence = WRITE_FENCE.set(Fence(agent_id=lease.agent_id, token=lease.token))
        try:
            while mailbox.holds:
                await mailbox.released.wait()
            # No await between the check above and this read: a batch being stored is taken whole.
            entries = await self._store.inbox_pending(agent_id=lease.agent_id, limit=self._options.max_turn_inputs)
            if entries:
                if mailbox.heartbeat is not None:
                    # A user message pre-empts the pending reflection; it will be rescheduled.
                    self.stats.heartbeats_skipped += 1
                    mailbox.heartbeat = None
                events = ",".join(e.keys[0] if e.keys else e.id for e in entries)
                with log_context(server=decode_message(entries[-1].payload).scope, event_id=events):
                    await self._run_entries(lease.agent_id, entries)
                return True
            if mailbox.heartbeat is not None:
                due, mailbox.heartbeat = mailbox.heartbeat, None
                await self._run_heartbeat(due)
                return True
            return False
        except LeaseLostError:
            self.stats.leases_lost += 1
            _log.warning("agent %s: lease lost mid-turn; another replica carries on", lease.agent_id)
            return False
        finally:
            WRITE_FENCE.reset(fence)
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer

    async def _keep_renewed(self, lease: Lease) -> None:
        interval = self._options.lease_ttl.total_seconds() / 3
        while True:
            await asyncio.sleep(interval)
            try:
                renewed = await self._store.lease_renew(lease, expires_at=self._clock() + self._options.lease_ttl)
            except StoreError as exc:
                # The lease still runs until it expires; try again next time rather than give it up.
                _log.warning("agent %s: could not renew the lease (%s); trying again", lease.agent_id, exc)
                continue
            if renewed is None:
                _log.warning("agent %s: could not renew the lease; writes will be refused", lease.agent_id)
                return

    async def _run_entries(self, agent_id: str, entries: list[InboxEntry]) -> None:
        answered = [e.id for e in entries if e.replies]
        if answered:
            # Delivered before a crash: closing them is the only way never to answer twice.
            await self._store.inbox_finish(answered, status="done")
            entries = [e for e in entries if not e.replies]
            if not entries:
                return
        messages = [decode_message(e.payload) for e in entries]
        recorded = await self._store.recorded_platform_ids(
            agent_id, [m.platform_message_id for m in messages if m.platform_message_id]
        )
        fresh = [m for m in messages if m.platform_message_id not in recorded]
        if _log.isEnabledFor(logging.DEBUG):  # the join costs on every turn otherwise
            _log.debug("a turn for %d new message(s)", len(fresh), extra=log_content("\n".join(m.text for m in fresh)))
        latest = messages[-1]
        factory = self._sinks.get(latest.platform)
        if factory is None:
            await self._store.inbox_finish([e.id for e in entries], status="failed", error="no adapter for platform")
            _log.error("agent %s: no adapter registered for platform %r", agent_id, latest.platform)
            self._tell_listeners(
                FinishedTurn(agent_id=agent_id, messages=tuple(messages), error="no adapter for platform")
            )
            return
        answered_id = entries[-1].id

        async def record_reply(reply_id: str) -> None:
            # The user has the reply now: wait out a store outage to note it, or the entry
            # would be run again and answered twice.
            await self._with_store_retries(lambda: self._store.inbox_record_reply(answered_id, reply_id))

        sink = _RecordingSink(factory(latest), record_reply)
        ids = [e.id for e in entries]
        turn = TurnContext(
            agent_id=agent_id,
            kind="message",
            scope=latest.scope,
            channel=labels_of(latest.conversation_key)[1],
            user_id=f"{latest.platform}:{latest.speaker_id}",
        )
        refusal = await self._meter.admit(turn)
        if refusal is not None:
            await self._refuse(turn, refusal, sink, ids)
            self._tell_listeners(FinishedTurn(agent_id=agent_id, messages=tuple(messages), error=refusal.reason))
            return
        self.stats.turns_in_flight += 1
        try:
            result = await self._metered(
                turn,
                lambda: self._loop.run_turn(
                    agent_id,
                    fresh,
                    reply=sink,
                    is_shared=latest.is_shared_conversation,
                    is_reply_owed=True,
                ),
            )
        except (NotFoundError, AgentPausedError) as exc:
            await self._store.inbox_finish(ids, status="failed", error=str(exc))
            _log.info("agent %s: %d events not run: %s", agent_id, len(ids), exc)
            self._tell_listeners(FinishedTurn(agent_id=agent_id, messages=tuple(messages), error=str(exc)))
            return
        finally:
            self.stats.turns_in_flight -= 1
        self.stats.turns += 1
        self.stats.count_turn(agent_id, result)
        if result.is_failed:
            self.stats.turns_failed += 1
        await self._store.inbox_finish(ids, status="failed" if result.is_failed else "done", error=result.error)
        self._tell_listeners(FinishedTurn(agent_id=agent_id, messages=tuple(messages), error=result.error))
        await self._schedule_reflection(agent_id, scope=latest.scope)

    async def _run_heartbeat(self, due: DueHeartbeat) -> None:
        sink = await self._proactive_sink(due.agent_id)
        where = (
            "If something is worth telling the server, you may post it with send_message; otherwise message no one."
            if sink is not None
            else "Message no one."
        )
        interrupt = Interrupt(
            kind="reflection",
            reason=(
                "quiet time. Review the conversation since your last reflection: update core memory, "
                f"archive facts worth keeping, and leave yourself notes. {where}"
            ),
            at=self._clock(),
        )
        agent = await self._store.get_agent(due.agent_id)
        scope, channel = labels_of(agent.conversation_key if agent else None)
        turn = TurnContext(agent_id=due.agent_id, kind="heartbeat", scope=scope, channel=channel)
        refusal = await self._meter.admit(turn)
        if refusal is not None:
            self.stats.heartbeats_skipped += 1
            self._observer.turn_finished(turn, seconds=0.0, outcome="refused")
            _log.info("agent %s: heartbeat skipped: %s", due.agent_id, refusal.reason)
            await self._store.finish_heartbeat(due, fired_at=self._clock(), tokens=0)
            return
        self.stats.turns_in_flight += 1
        try:
            result = await self._metered(
                turn, lambda: self._loop.run_turn(due.agent_id, [interrupt], reply=sink or _QuietSink())
            )
        except (NotFoundError, AgentPausedError) as exc:
            self.stats.heartbeats_skipped += 1
            _log.info("agent %s: heartbeat skipped: %s", due.agent_id, exc)
            await self._store.finish_heartbeat(due, fired_at=self._clock(), tokens=0)
            return
        finally:
            self.stats.turns_in_flight -= 1
        self.stats.heartbeats_fired += 1
        self.stats.count_turn(due.agent_id, result)
        await self._store.finish_heartbeat(
            due, fired_at=self._clock(), tokens=result.prompt_tokens + result.completion_tokens
        )

    async def _metered(self, turn: TurnContext, run: Callable[[], Awaitable[TurnResult]]) -> TurnResult:
        """Run a turn, noting its LLM calls (through `LimitedChatModel`), its outcome and time for
        the observer, and charging the calls to the meter whatever happens."""
        started = time.perf_counter()
        outcome: TurnOutcome = "failed"
        with noting_calls(turn, self._observer) as calls:
            try:
                result = await run()
                outcome = "failed" if result.is_failed else "ok"
                return result
            except (NotFoundError, AgentPausedError):
                outcome = "refused"
                raise
            finally:
                self._observer.turn_finished(turn, seconds=time.perf_counter() - started, outcome=outcome)
                if calls.calls:
                    try:
                        await self._meter.charge(turn, calls.calls)
                    except StoreError as exc:
                        _log.warning("agent %s: could not record the turn's token usage (%s)", turn.agent_id, exc)

    async def _refuse(self, turn: TurnContext, refusal: Refusal, sink: ReplySink, ids: list[str]) -> None:
        """Answer without calling the LLM: the notice (once per budget and day), then close the entries."""
        self.stats.turns_refused += 1
        self._observer.turn_finished(turn, seconds=0.0, outcome="refused")
        _log.info("agent %s: %d events not run: %s", turn.agent_id, len(ids), refusal.reason)
        if refusal.notice is not None:
            await sink.send(refusal.notice)
        await self._store.inbox_finish(ids, status="failed", error=refusal.reason)

    async def _proactive_sink(self, agent_id: str) -> ReplySink | None:
        """Where a reflection may post: the channel the agent's server names in its policy
        (`proactive_channel`), through that platform's adapter; None when it names none."""
        state = await self._store.heartbeat_state(agent_id)
        if state is None or state.scope is None:
            return None
        policy = await self._store.get_policy(state.scope, None)
        if policy is None or policy.proactive_channel is None:
            return None
        platform = state.scope.split(":", 1)[0]
        factory = self._sinks.get(platform)
        agent = await self._store.get_agent(agent_id)
        if factory is None or agent is None:
            return None
        # Adapters read a reply route of {"channel": id} as "post a new message there".
        route = json.dumps({"channel": policy.proactive_channel, "proactive": True})
        return factory(
            InboundMessage(
                platform=platform,
                conversation_key=agent.conversation_key or agent.name,
                speaker_id=agent.id,
                speaker_name=agent.name,
                text="",
                sent_at=self._clock(),
                reply_route=route,
                scope=state.scope,
            )
        )

    async def _schedule_reflection(self, agent_id: str, *, scope: str | None) -> None:
        """After new activity, reflect once the agent has been quiet a while (at most once per period)."""
        options = self._options
        now = self._clock()
        jitter = timedelta(seconds=self._rng.uniform(0, options.reflection_jitter.total_seconds()))
        due = now + options.reflection_idle + jitter
        state = await self._store.heartbeat_state(agent_id)
        if state is not None and state.last_fired_at is not None:
            due = max(due, state.last_fired_at + options.reflection_min_period)
        await self._store.schedule_heartbeat(agent_id, due_at=due, scope=scope)

    # -- helpers ----------------------------------------------------------------------------
    def _retry_delay(self) -> float:
        base = self._options.lease_retry_s
        return base * self._rng.uniform(0.5, 1.5)

    async def _with_store_retries[T](self, call: Callable[[], Awaitable[T]]) -> T:
        deadline = asyncio.get_running_loop().time() + self._options.store_wait_s
        delay = 0.2
        while True:
            try:
                return await call()
            except StoreError as exc:
                if isinstance(exc, LeaseLostError) or asyncio.get_running_loop().time() + delay > deadline:
                    raise
                _log.warning("store unavailable (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)


def encode_message(message: InboundMessage) -> str:
    """An `InboundMessage` as the inbox stores it."""
    return json.dumps(
        {
            "platform": message.platform,
            "conversation_key": message.conversation_key,
            "speaker_id": message.speaker_id,
            "speaker_name": message.speaker_name,
            "text": message.text,
            "sent_at": message.sent_at.isoformat(),
            "platform_message_id": message.platform_message_id,
            "attachments": list(message.attachments),
            "reply_route": message.reply_route,
            "is_shared_conversation": message.is_shared_conversation,
            "scope": message.scope,
        },
        ensure_ascii=False,
    )


def decode_message(payload: str) -> InboundMessage:
    data = json.loads(payload)
    return InboundMessage(
        platform=data["platform"],
        conversation_key=data["conversation_key"],
        speaker_id=data["speaker_id"],
        speaker_name=data["speaker_name"],
        text=data["text"],
        sent_at=datetime.fromisoformat(data["sent_at"]),
        platform_message_id=data.get("platform_message_id"),
        attachments=tuple(data.get("attachments") or ()),
        reply_route=data.get("reply_route") or "",
        is_shared_conversation=bool(data.get("is_shared_conversation")),
        scope=data.get("scope"),
    )
