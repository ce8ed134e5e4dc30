"""The agent loop: one turn is a bounded sequence of steps, each a single LLM call.

A step builds the context, calls the model and runs the functions it asked for; its
outcome is either the end of the turn or a heartbeat (another step) with a reason.
Every message and memory edit is written as it happens, so a crash loses at most the
step in flight.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol, assert_never

from bot.agent.compaction import Compactor
from bot.agent.context import (
    ContextBreakdown,
    ContextWindow,
    build_system_message,
    context_breakdown,
    estimate_prompt_tokens,
    render_message,
    render_queue,
    system_sections,
)
from bot.agent.functions import FunctionCall, MemoryFunctions, tool_schemas
from bot.agent.model import ChatMessage, ChatModel, Completion, ToolSchema
from bot.agent.queue_cache import QueueCache
from bot.agent.tokens import TokenCounter
from bot.errors import AgentPausedError, ContextOverflowError, LLMError, NotFoundError, VersionConflictError
from bot.events import InboundMessage, Interrupt, ReplySink, TurnInput
from bot.memory.archival import ArchivalMemory
from bot.memory.core import CoreMemory
from bot.memory.embeddings import Embedder
from bot.memory.recall import RecallMemory, TurnBounds
from bot.memory.store import (
    AgentRecord,
    AgentUpdate,
    MemoryStore,
    MessageRole,
    MessageSize,
    NewMessage,
    StoredMessage,
    StoredToolCall,
)

__all__ = ["AgentLoop", "AgentOptions", "TurnObserver", "TurnResult"]

_log = logging.getLogger(__name__)

_REMINDER = "You have not replied to the user. Your thoughts are private: call send_message to answer them now."


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentOptions:
    """Everything that shapes a turn, taken from settings by the composition root."""

    window: ContextWindow
    instructions: str
    summarize_instructions: str
    max_chained_steps: int = 10
    keep_last_messages: int = 6
    evict_fraction: float = 0.5
    max_user_message_chars: int = 8000
    login_gap: timedelta = timedelta(hours=1)
    core_block_limit: int = 2000


@dataclass(frozen=True, slots=True, kw_only=True)
class EndTurn:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Heartbeat:
    reason: Literal["requested", "function_error", "memory_pressure", "reminder"]


StepOutcome = EndTurn | Heartbeat


@dataclass(slots=True, kw_only=True)
class TurnResult:
    """What a turn did, for the adapter and for metrics."""

    replies: list[str] = field(default_factory=list)
    steps: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: Prompt tokens of the last call (what the context costs now).
    last_prompt_tokens: int = 0
    #: LLM calls made and the seconds spent waiting for them (summaries included).
    llm_calls: int = 0
    llm_seconds: float = 0.0
    error: str | None = None

    @property
    def is_failed(self) -> bool:
        return self.error is not None


class TurnObserver(Protocol):
    """Optional view into a turn (the terminal shows thoughts dimmed and calls in --debug)."""

    def on_thought(self, text: str) -> None: ...

    def on_function(self, name: str, arguments: str, result: str, *, is_ok: bool) -> None: ...

    def on_event(self, text: str) -> None: ...


class _SilentObserver:
    def on_thought(self, text: str) -> None:
        pass

    def on_function(self, name: str, arguments: str, result: str, *, is_ok: bool) -> None:
        pass

    def on_event(self, text: str) -> None:
        pass


@dataclass(slots=True, kw_only=True)
class _Turn:
    agent_id: str
    reply: ReplySink
    observer: TurnObserver
    is_owed: bool
    is_shared: bool
    result: TurnResult
    is_reminded: bool = False
    is_overflow_retried: bool = False
    #: The seq of the turn's first message (its first input, or its first step's message when it
    #: had none recorded now: a turn resumed after a crash); recall searches leave it and later out.
    first_seq: int | None = None
    #: Where the context window of the last prompt started; recall searches rank it after older history.
    context_start_seq: int = 1

    def bounds(self, recorded: StoredMessage) -> TurnBounds:
        """The bounds of a search made in this turn, once `recorded` (a message of it) is stored."""
        if self.first_seq is None:
            self.first_seq = recorded.seq
        return TurnBounds(turn_start_seq=self.first_seq, context_start_seq=self.context_start_seq)


class AgentLoop:
    """Runs turns for any agent of one store; holds no per-agent state between turns."""

    def __init__(
        self,
        *,
        store: MemoryStore,
        model: ChatModel,
        counter: TokenCounter,
        embedder: Embedder | None,
        options: AgentOptions,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._model = model
        self._counter = counter
        self._options = options
        self._clock = clock
        self.core = CoreMemory(store, default_limit=options.core_block_limit)
        self.recall = RecallMemory(store, embedder=embedder, clock=clock)
        self.archival = ArchivalMemory(store, embedder=embedder, clock=clock)
        self._functions = MemoryFunctions(
            store=store, core=self.core, recall=self.recall, archival=self.archival, clock=clock
        )
        max_chars = options.max_user_message_chars
        self._queues = QueueCache(store, render=lambda m: render_message(m, max_chars=max_chars, is_shared=False))
        self._shared_queues = QueueCache(store, render=lambda m: render_message(m, max_chars=max_chars, is_shared=True))
        self._tools: list[ToolSchema] = tool_schemas()
        self._tools_tokens: int | None = None  # counted on first use: loading the encoding takes ~0.2 s
        self._system_tokens: dict[str, int] = {}
        self._compactor = Compactor(
            store=store,
            model=model,
            counter=counter,
            summarize_instructions=options.summarize_instructions,
            window=options.window,
            max_user_message_chars=options.max_user_message_chars,
        )

    @property
    def compactor(self) -> Compactor:
        """Folds messages into an agent's recursive summary (recall retention uses it too)."""
        return self._compactor

    @property
    def tools(self) -> list[ToolSchema]:
        return self._tools

    def forget_cached(self, agent_id: str) -> None:
        """Drop what this loop caches about an agent, after its history was edited elsewhere."""
        self._queues.invalidate(agent_id)
        self._shared_queues.invalidate(agent_id)

    async def run_turn(
        self,
        agent_id: str,
        inputs: Sequence[TurnInput],
        *,
        reply: ReplySink,
        observer: TurnObserver | None = None,
        is_shared: bool = False,
        is_reply_owed: bool | None = None,
    ) -> TurnResult:
        """Record `inputs` in recall, then step until the agent ends its turn.

        Several inbound messages (a burst, or a group chat) are recorded in order with their
        speakers and answered in one turn. LLM failures end the turn with a short apology to
        the user and a system event in recall; the inputs are never lost. A reply is owed when
        an input is a user message, or when `is_reply_owed` says so (a turn resumed after a
        crash, whose messages are already in recall).
        """
        started = await self.begin_turn(agent_id, inputs)
        turn = _Turn(
            agent_id=agent_id,
            reply=reply,
            observer=observer or _SilentObserver(),
            is_owed=is_reply_owed if is_reply_owed is not None else any(isinstance(i, InboundMessage) for i in inputs),
            is_shared=is_shared,
            result=TurnResult(),
            first_seq=None if started is None else started.turn_start_seq,
        )
        await reply.typing()
        try:
            await self._run_steps(turn)
        except (LLMError, ContextOverflowError) as exc:
            _log.warning("turn of agent %s failed: %s", agent_id, exc)
            turn.result.error = str(exc)
            await self._record_event(agent_id, f"turn failed: {exc}")
            if turn.is_owed and not turn.result.replies:
                await reply.send(
                    "Sorry, I can't reach my language model right now. Your message is saved; try again in a moment."
                )
        return turn.result

    async def begin_turn(self, agent_id: str, inputs: Sequence[TurnInput]) -> TurnBounds | None:
        """What a turn does first (`run_turn`): check that the agent may run and record `inputs`
        in recall (after a long silence, a login event first). Returns the bounds recall searches
        keep to until the turn's context changes, or None when `inputs` recorded nothing."""
        agent = await self._store.get_agent(agent_id)
        if agent is None:
            raise NotFoundError(f"agent {agent_id!r} does not exist")
        if agent.is_paused:
            raise AgentPausedError("This agent is paused by an admin.")
        first_seq = await self._record_inputs(agent, inputs)
        if first_seq is None:
            return None
        return TurnBounds(turn_start_seq=first_seq, context_start_seq=agent.context_start_seq)

    async def _run_steps(self, turn: _Turn) -> None:
        while True:
            outcome = await self._step(turn)
            match outcome:
                case EndTurn():
                    return
                case Heartbeat(reason=reason):
                    if turn.result.steps >= self._options.max_chained_steps:
                        await self._record_event(
                            turn.agent_id,
                            f"heartbeat ({reason}) refused: the turn reached its limit of "
                            f"{self._options.max_chained_steps} chained steps",
                        )
                        _log.info("agent %s hit the chained-step limit", turn.agent_id)
                        return
                case _:
                    assert_never(outcome)

    async def _step(self, turn: _Turn) -> StepOutcome:
        turn.result.steps += 1
        completion = await self._complete(turn)
        calls = tuple(FunctionCall(id=c.id, name=c.name, arguments=c.arguments) for c in completion.tool_calls)
        if completion.content:
            turn.observer.on_thought(completion.content)
        (recorded,) = await self.recall.record(
            turn.agent_id,
            [
                self._new_message(
                    "assistant",
                    completion.content or "",
                    tool_calls=tuple(StoredToolCall(id=c.id, name=c.name, arguments=c.arguments) for c in calls),
                )
            ],
        )
        bounds = turn.bounds(recorded)
        heartbeat: Heartbeat | None = None
        for call in calls:
            outcome = await self._functions.run(
                turn.agent_id,
                call,
                send=lambda text: self._send(turn, text),
                record_result=lambda c, text: self._new_message("tool", text, tool_call_id=c.id, tool_name=c.name),
                bounds=bounds,
            )
            if not outcome.is_recorded:
                await self.recall.record(
                    turn.agent_id,
                    [self._new_message("tool", outcome.result, tool_call_id=call.id, tool_name=call.name)],
                )
            turn.observer.on_function(call.name, call.arguments, outcome.result, is_ok=outcome.is_ok)
            if not outcome.is_ok:
                heartbeat = Heartbeat(reason="function_error")
            elif outcome.request_heartbeat and heartbeat is None:
                heartbeat = Heartbeat(reason="requested")
        if heartbeat is None and turn.is_owed and not turn.result.replies and not turn.is_reminded:
            turn.is_reminded = True
            await self._record_event(turn.agent_id, _REMINDER)
            heartbeat = Heartbeat(reason="reminder")
        pressure = await self._pressure_warning(turn, turn.result.last_prompt_tokens)
        return pressure or heartbeat or EndTurn()

    async def _complete(self, turn: _Turn) -> Completion:
        """Build the prompt (compacting first when it would not fit) and call the model;
        a context-length error from the server compacts and retries once."""
        while True:
            messages, estimate = await self._prompt(turn)
            if estimate > self._options.window.prompt_budget:
                await self._compact(turn, estimate)
                messages, estimate = await self._prompt(turn)
            try:
                completion = await self._timed_call(turn, messages)
            except ContextOverflowError:
                if turn.is_overflow_retried:
                    raise
                turn.is_overflow_retried = True
                _log.info("server reported a context overflow for agent %s; compacting", turn.agent_id)
                await self._compact(turn, max(estimate, self._options.window.prompt_budget) * 2)
                continue
            self._counter.observe(estimate, completion.usage.prompt_tokens)
            turn.result.prompt_tokens += completion.usage.prompt_tokens
            turn.result.completion_tokens += completion.usage.completion_tokens
            turn.result.last_prompt_tokens = completion.usage.prompt_tokens or estimate
            return completion

    async def _timed_call(self, turn: _Turn, messages: list[ChatMessage]) -> Completion:
        started = time.perf_counter()
        try:
            return await self._model.complete(messages, tools=self._tools)
        finally:
            turn.result.llm_calls += 1
            turn.result.llm_seconds += time.perf_counter() - started

    async def _prompt(self, turn: _Turn) -> tuple[list[ChatMessage], int]:
        """The messages for the next call and their estimated prompt tokens."""
        agent = await self._require_agent(turn.agent_id)
        blocks = await self.core.blocks(turn.agent_id)
        passages = await self.archival.count(turn.agent_id)
        queues = self._shared_queues if turn.is_shared else self._queues
        turn.context_start_seq = agent.context_start_seq
        queue = await queues.load(turn.agent_id, agent.context_start_seq)
        system = build_system_message(
            instructions=self._options.instructions, agent=agent, blocks=blocks, passage_count=passages
        )
        messages: list[ChatMessage] = [{"role": "system", "content": system}]
        messages += render_queue(
            queue.messages,
            max_chars=self._options.max_user_message_chars,
            is_shared=turn.is_shared,
            rendered=queue.rendered,
        )
        return messages, self._estimate(system, queue.messages)

    def _estimate(self, system: str, queue: Sequence[StoredMessage]) -> int:
        """Prompt tokens without re-encoding the queue: each stored message carries its count,
        the system text is counted once per distinct value, and the server's reported usage
        calibrates the total (see TokenCounter.observe)."""
        system_tokens = self._system_tokens.get(system)
        if system_tokens is None:
            if len(self._system_tokens) > 1024:
                self._system_tokens.clear()
            system_tokens = self._system_tokens[system] = self._counter.count_text(system)
        return estimate_prompt_tokens(
            system_tokens=system_tokens,
            tools_tokens=self._count_tools(),
            queue=queue,
            max_chars=self._options.max_user_message_chars,
            correction=self._counter.correction_factor,
        )

    def _count_tools(self) -> int:
        if self._tools_tokens is None:
            self._tools_tokens = self._counter.count_text(json.dumps(self._tools))
        return self._tools_tokens

    async def context_breakdown(self, agent_id: str) -> ContextBreakdown:
        """What the agent's next prompt is made of (the console's chart), counted as `_prompt` counts it."""
        agent = await self._require_agent(agent_id)
        sections = system_sections(
            instructions=self._options.instructions,
            agent=agent,
            blocks=await self.core.blocks(agent_id),
            passage_count=await self.archival.count(agent_id),
        )
        # An agent this loop is serving has its queue cached: brought up to date, it costs one
        # small read. For any other only the messages' sizes are read, and nothing is cached, so
        # looking at many agents never pushes the active ones out of the cache.
        cached = next((c for c in (self._queues, self._shared_queues) if c.holds(agent_id)), None)
        queue: Sequence[StoredMessage] | Sequence[MessageSize]
        if cached is not None:
            queue = (await cached.load(agent_id, agent.context_start_seq)).messages
        else:
            queue = await self._store.message_sizes(agent_id, from_seq=agent.context_start_seq)
        return context_breakdown(
            window=self._options.window,
            sections=sections,
            tools_tokens=self._count_tools(),
            queue=queue,
            max_chars=self._options.max_user_message_chars,
            count=self._counter.count_text,
            correction=self._counter.correction_factor,
        )

    async def _compact(self, turn: _Turn, estimate: int) -> None:
        usage = await self._compactor.compact(
            turn.agent_id,
            tokens_to_free=estimate - self._options.window.prompt_budget,
            evict_fraction=self._options.evict_fraction,
            keep_last=self._options.keep_last_messages,
        )
        turn.result.prompt_tokens += usage.prompt_tokens
        turn.result.completion_tokens += usage.completion_tokens
        turn.observer.on_event("older messages were summarised to free the context window")

    async def _pressure_warning(self, turn: _Turn, prompt_tokens: int) -> Heartbeat | None:
        """MemGPT's memory-pressure interrupt: once per fill, at the configured fraction."""
        if prompt_tokens < self._options.window.warning_tokens:
            return None
        agent = await self._require_agent(turn.agent_id)
        if agent.is_pressure_warned:
            return None
        await self._update_agent(turn.agent_id, AgentUpdate(is_pressure_warned=True))
        text = (
            f"memory pressure: the context is {prompt_tokens} of {self._options.window.context_window} tokens. "
            "Older messages will soon be summarised and leave the context; save what matters to core or "
            "archival memory now."
        )
        await self._record_event(turn.agent_id, text)
        turn.observer.on_event(text)
        return Heartbeat(reason="memory_pressure")

    async def _send(self, turn: _Turn, text: str) -> None:
        await turn.reply.send(text)
        turn.result.replies.append(text)

    async def _record_inputs(self, agent: AgentRecord, inputs: Sequence[TurnInput]) -> int | None:
        """Record the inputs; returns the seq of the first message recorded (None for none)."""
        messages: list[NewMessage] = []
        last_seen = agent.last_user_message_at
        latest: datetime | None = None
        for item in inputs:
            match item:
                case InboundMessage():
                    if latest is None and (last_seen is None or item.sent_at - last_seen >= self._options.login_gap):
                        messages.append(self._event(_login_text(last_seen, item.sent_at), at=item.sent_at))
                    latest = item.sent_at if latest is None else max(latest, item.sent_at)
                    messages.append(
                        self._new_message(
                            "user",
                            item.text,
                            at=item.sent_at,
                            speaker_id=item.speaker_id,
                            speaker_name=item.speaker_name,
                            platform_message_id=item.platform_message_id,
                        )
                    )
                case Interrupt(kind="login"):
                    # The user opened a session (the terminal): they count as seen from now.
                    messages.append(self._event(_login_text(last_seen, item.at), at=item.at))
                    latest = item.at if latest is None else max(latest, item.at)
                    last_seen = item.at
                case Interrupt():
                    messages.append(self._event(f"{item.kind}: {item.reason}", at=item.at))
                case _:
                    assert_never(item)
        stored = await self.recall.record(agent.id, messages) if messages else []
        if latest is not None:
            await self._update_agent(agent.id, AgentUpdate(last_user_message_at=latest))
        return stored[0].seq if stored else None

    async def _record_event(self, agent_id: str, text: str) -> None:
        await self.recall.record(agent_id, [self._event(text)])

    def _event(self, text: str, *, at: datetime | None = None) -> NewMessage:
        return self._new_message("system", text, at=at)

    def _new_message(
        self,
        role: MessageRole,
        content: str,
        *,
        at: datetime | None = None,
        tool_calls: tuple[StoredToolCall, ...] = (),
        speaker_id: str | None = None,
        speaker_name: str | None = None,
        platform_message_id: str | None = None,
        tool_call_id: str | None = None,
        tool_name: str | None = None,
    ) -> NewMessage:
        tokens = self._counter.count_text(content) + sum(self._counter.count_text(c.arguments) + 8 for c in tool_calls)
        if speaker_name:
            tokens += self._counter.count_text(speaker_name)
        return NewMessage(
            role=role,
            content=content,
            created_at=at or self._clock(),
            tokens=tokens,
            tool_calls=tool_calls,
            speaker_id=speaker_id,
            speaker_name=speaker_name,
            platform_message_id=platform_message_id,
            tool_call_id=tool_call_id,
            tool_name=tool_name,
        )

    async def _require_agent(self, agent_id: str) -> AgentRecord:
        agent = await self._store.get_agent(agent_id)
        if agent is None:
            raise NotFoundError(f"agent {agent_id!r} was deleted during the turn")
        return agent

    async def _update_agent(self, agent_id: str, update: AgentUpdate) -> AgentRecord:
        for _attempt in range(5):
            agent = await self._require_agent(agent_id)
            try:
                return await self._store.update_agent(agent_id, update, expected_version=agent.version)
            except VersionConflictError:
                continue
        raise VersionConflictError(f"agent {agent_id!r} kept changing; gave up updating it")


def _login_text(last_seen: datetime | None, now: datetime) -> str:
    if last_seen is None:
        return "login: the user is here for the first time."
    gap = now - last_seen
    hours = gap.total_seconds() / 3600
    ago = f"{hours / 24:.0f} days" if hours >= 48 else f"{hours:.0f} hours"
    return f"login: the user is back; last seen {last_seen.astimezone(UTC):%Y-%m-%d %H:%M} UTC ({ago} ago)."
