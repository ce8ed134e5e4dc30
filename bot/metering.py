"""What turns cost and how they are watched: the labels of a turn (`TurnContext`), each LLM
call it makes (`LLMCall`, noted by `LimitedChatModel` through a context variable the runtime
sets around the turn), the `RuntimeObserver` that sees them (metrics) and the `UsageMeter` that
charges them and may refuse a turn before it calls the LLM (daily budgets). Both default to
doing nothing; `bot.ops` implements them, so the runtime never imports prometheus."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Literal, Protocol

from bot.agent.model import ChatMessage, ChatModel, Completion, ToolSchema

__all__ = [
    "UNMETERED",
    "UNOBSERVED",
    "LLMCall",
    "LimitedChatModel",
    "Refusal",
    "RuntimeObserver",
    "TurnCalls",
    "TurnContext",
    "TurnOutcome",
    "UsageMeter",
    "labels_of",
    "noting_calls",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnContext:
    """Whom a turn's LLM calls are for: the labels of its usage and the budgets it draws on."""

    agent_id: str
    kind: Literal["message", "heartbeat"]
    #: The server or workspace (`discord:123`); None for direct messages.
    scope: str | None = None
    #: The channel of a shared channel agent; None for DMs and per-user agents.
    channel: str | None = None
    #: `{platform}:{user id}` of the message the turn answers (the latest); None for heartbeats.
    user_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LLMCall:
    """One chat completion of a turn (summaries included), after the client's retries."""

    model: str
    seconds: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: The error's class name when the call failed.
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Refusal:
    """Why a turn may not call the LLM (a daily budget is spent), and what to tell the user."""

    reason: str
    #: Sent once per budget and day; None: stay quiet (already told, or a heartbeat).
    notice: str | None = None


TurnOutcome = Literal["ok", "failed", "refused"]


class RuntimeObserver(Protocol):
    """What the runtime reports as it works (`bot.ops.metrics` exports it). Called on the event
    loop, so it must not block."""

    def llm_called(self, turn: TurnContext, call: LLMCall) -> None:
        """After each LLM call of a turn, failed ones included."""

    def turn_finished(self, turn: TurnContext, *, seconds: float, outcome: TurnOutcome) -> None:
        """After each turn, also one refused before it called the LLM."""


class UsageMeter(Protocol):
    """Accounts for what turns cost and may refuse one (`bot.ops.budgets`: daily token budgets)."""

    async def admit(self, turn: TurnContext) -> Refusal | None:
        """None to run the turn; a `Refusal` to answer without calling the LLM."""

    async def charge(self, turn: TurnContext, calls: Sequence[LLMCall]) -> None:
        """Record the tokens of a turn's LLM calls (called once per turn that made calls)."""


class _Unobserved:
    def llm_called(self, turn: TurnContext, call: LLMCall) -> None:
        pass

    def turn_finished(self, turn: TurnContext, *, seconds: float, outcome: TurnOutcome) -> None:
        pass


class _Unmetered:
    async def admit(self, turn: TurnContext) -> Refusal | None:
        return None

    async def charge(self, turn: TurnContext, calls: Sequence[LLMCall]) -> None:
        pass


@dataclass(slots=True)
class TurnCalls:
    """The LLM calls of the turn running in this task (`LimitedChatModel` adds to it)."""

    turn: TurnContext
    observer: RuntimeObserver
    calls: list[LLMCall] = field(default_factory=list)

    def add(self, call: LLMCall) -> None:
        self.calls.append(call)
        self.observer.llm_called(self.turn, call)


_TURN_CALLS: ContextVar[TurnCalls | None] = ContextVar("membot_turn_calls", default=None)


def labels_of(conversation_key: str | None) -> tuple[str | None, str | None]:
    """(server scope, channel) of a conversation key (see `bot.router` for the formats)."""
    parts = (conversation_key or "").split(":")
    if len(parts) != 4 or parts[2] not in ("channel", "user"):
        return None, None
    return f"{parts[0]}:{parts[1]}", parts[3] if parts[2] == "channel" else None


UNOBSERVED: RuntimeObserver = _Unobserved()
UNMETERED: UsageMeter = _Unmetered()


@contextlib.contextmanager
def noting_calls(turn: TurnContext, observer: RuntimeObserver) -> Iterator[TurnCalls]:
    """Collect the LLM calls `LimitedChatModel` makes in this task (and its children) while open."""
    calls = TurnCalls(turn=turn, observer=observer)
    token = _TURN_CALLS.set(calls)
    try:
        yield calls
    finally:
        _TURN_CALLS.reset(token)


class LimitedChatModel:
    """A global cap on concurrent LLM calls. `asyncio.Semaphore` wakes waiters in FIFO order,
    so agents are served in the order their calls arrive: a busy agent cannot starve others."""

    def __init__(self, inner: ChatModel, *, max_concurrent: int) -> None:
        self._inner = inner
        self._slots = asyncio.Semaphore(max_concurrent)
        #: Calls queued for a slot, and calls running: the LLM queue depth for metrics.
        self.waiting = 0
        self.in_flight = 0

    @property
    def model_name(self) -> str:
        return self._inner.model_name

    async def complete(self, messages: Sequence[ChatMessage], *, tools: Sequence[ToolSchema]) -> Completion:
        self.waiting += 1
        async with self._slots:
            self.waiting -= 1
            self.in_flight += 1
            started = time.perf_counter()
            try:
                completion = await self._inner.complete(messages, tools=tools)
            except Exception as exc:
                _note_call(
                    LLMCall(model=self.model_name, seconds=time.perf_counter() - started, error=type(exc).__name__)
                )
                raise
            finally:
                self.in_flight -= 1
        _note_call(
            LLMCall(
                model=self.model_name,
                seconds=time.perf_counter() - started,
                prompt_tokens=completion.usage.prompt_tokens,
                completion_tokens=completion.usage.completion_tokens,
            )
        )
        return completion


def _note_call(call: LLMCall) -> None:
    calls = _TURN_CALLS.get()
    if calls is not None:
        calls.add(call)
