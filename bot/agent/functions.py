"""The memory functions the agent calls: one pydantic model per function gives both the JSON
schema sent to the LLM and the validation of the LLM's arguments.

Schemas are kept terse on purpose: they are sent with every call and count against the
first-turn budget of 1,700 prompt tokens.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.agent.model import ToolSchema
from bot.errors import FunctionArgumentError, ModelFacingError
from bot.memory.archival import ArchivalMemory
from bot.memory.core import CoreMemory
from bot.memory.recall import RecallMemory, TurnBounds
from bot.memory.store import AgentUpdate, MemoryStore, NewMessage

__all__ = [
    "FUNCTION_NAMES",
    "FunctionCall",
    "FunctionOutcome",
    "MemoryFunctions",
    "tool_schemas",
]


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False)


class _Chained(_Args):
    request_heartbeat: bool = Field(False, description="true to run another step after this one")


class SendMessage(_Args):
    """Send a message to the user. The only way the user hears you."""

    message: str = Field(description="message text (Markdown)")


class CoreMemoryAppend(_Chained):
    """Append text to a core memory block."""

    label: str = Field(description="block label, e.g. persona or human")
    content: str


class CoreMemoryReplace(_Chained):
    """Replace exact text in a core memory block; empty new_content deletes it."""

    label: str
    old_content: str = Field(description="exact text to find")
    new_content: str


class ConversationSearch(_Chained):
    """Search past messages (recall memory) by text."""

    query: str
    page: int = Field(0, ge=0)


class ConversationSearchDate(_Chained):
    """Search past messages by date range (inclusive)."""

    start_date: str = Field(description="YYYY-MM-DD")
    end_date: str = Field(description="YYYY-MM-DD")
    page: int = Field(0, ge=0)


class ArchivalMemoryInsert(_Chained):
    """Save a passage to archival memory for the long term. Make it self-contained."""

    content: str


class ArchivalMemorySearch(_Chained):
    """Search archival memory by meaning."""

    query: str
    page: int = Field(0, ge=0)


class PauseHeartbeats(_Args):
    """Skip timed heartbeats (reflection) for a while."""

    minutes: int = Field(ge=1, le=360 * 24, description="how long, at most 8640")


_MODELS: dict[str, type[_Args]] = {
    "send_message": SendMessage,
    "core_memory_append": CoreMemoryAppend,
    "core_memory_replace": CoreMemoryReplace,
    "conversation_search": ConversationSearch,
    "conversation_search_date": ConversationSearchDate,
    "archival_memory_insert": ArchivalMemoryInsert,
    "archival_memory_search": ArchivalMemorySearch,
    "pause_heartbeats": PauseHeartbeats,
}
FUNCTION_NAMES = tuple(_MODELS)


def _strip_titles(node: Any) -> Any:
    """pydantic's `title` keys cost tokens and tell the model nothing."""
    if isinstance(node, dict):
        return {k: _strip_titles(v) for k, v in node.items() if k != "title"}
    if isinstance(node, list):
        return [_strip_titles(v) for v in node]
    return node


def tool_schemas() -> list[ToolSchema]:
    """The Chat Completions `tools` for every memory function, in a fixed order."""
    schemas: list[ToolSchema] = []
    for name, model in _MODELS.items():
        parameters = _strip_titles(model.model_json_schema())
        parameters.pop("description", None)
        parameters.pop("additionalProperties", None)
        schemas.append(
            {
                "type": "function",
                "function": {"name": name, "description": (model.__doc__ or "").strip(), "parameters": parameters},
            }
        )
    return schemas


@dataclass(frozen=True, slots=True, kw_only=True)
class FunctionCall:
    """One tool call as the model made it."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FunctionOutcome:
    """What running one function produced."""

    name: str
    result: str
    is_ok: bool
    request_heartbeat: bool
    #: The tool-result message is already in recall (core edits store it with the edit).
    is_recorded: bool = False
    #: The text delivered to the user by `send_message`.
    sent_message: str | None = None


def format_result(*, is_ok: bool, message: str) -> str:
    return json.dumps({"status": "OK" if is_ok else "Failed", "message": message}, ensure_ascii=False)


def parse_arguments(call: FunctionCall) -> _Args:
    """Validate the model's arguments; every problem becomes a `FunctionArgumentError`."""
    model = _MODELS.get(call.name)
    if model is None:
        raise FunctionArgumentError(f"Unknown function {call.name!r}. Available: {', '.join(FUNCTION_NAMES)}.")
    raw = call.arguments.strip() or "{}"
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise FunctionArgumentError(f"Arguments are not valid JSON ({exc.msg} at char {exc.pos}).") from exc
    if not isinstance(data, dict):
        raise FunctionArgumentError("Arguments must be a JSON object.")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'arguments'}: {err['msg']}" for err in exc.errors()
        )
        raise FunctionArgumentError(f"Invalid arguments for {call.name}: {problems}.") from exc


ResultRecorder = Callable[[FunctionCall, str], NewMessage]
Sender = Callable[[str], Awaitable[None]]


class MemoryFunctions:
    """Runs validated function calls against one agent's memory tiers."""

    def __init__(
        self,
        *,
        store: MemoryStore,
        core: CoreMemory,
        recall: RecallMemory,
        archival: ArchivalMemory,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._core = core
        self._recall = recall
        self._archival = archival
        self._clock = clock

    async def run(
        self,
        agent_id: str,
        call: FunctionCall,
        *,
        send: Sender,
        record_result: ResultRecorder,
        bounds: TurnBounds | None = None,
    ) -> FunctionOutcome:
        """Run one call; model-facing errors become a failed result with a heartbeat. `bounds`: the
        turn the call is made in, which recall searches leave out (see `RecallMemory.search_messages`)."""
        try:
            args = parse_arguments(call)
            return await self._dispatch(agent_id, call, args, send=send, record_result=record_result, bounds=bounds)
        except ModelFacingError as exc:
            return FunctionOutcome(
                name=call.name, result=format_result(is_ok=False, message=str(exc)), is_ok=False, request_heartbeat=True
            )

    async def _dispatch(
        self,
        agent_id: str,
        call: FunctionCall,
        args: _Args,
        *,
        send: Sender,
        record_result: ResultRecorder,
        bounds: TurnBounds | None,
    ) -> FunctionOutcome:
        def done(message: str, *, recorded: bool = False, sent: str | None = None) -> FunctionOutcome:
            heartbeat = isinstance(args, _Chained) and args.request_heartbeat
            return FunctionOutcome(
                name=call.name,
                result=format_result(is_ok=True, message=message),
                is_ok=True,
                request_heartbeat=heartbeat,
                is_recorded=recorded,
                sent_message=sent,
            )

        def core_recorder(label: str) -> Callable[[str], Sequence[NewMessage]]:
            # The edit and its result message are written in one store transaction.
            return lambda value: [record_result(call, format_result(is_ok=True, message=_block_note(label, value)))]

        match args:
            case SendMessage(message=message):
                if not message.strip():
                    raise FunctionArgumentError("message must not be empty.")
                await send(message)
                return done("Sent.", sent=message)
            case CoreMemoryAppend(label=label, content=content):
                block = await self._core.append(agent_id, label, content, record=core_recorder(label))
                return done(_block_note(label, block.value), recorded=True)
            case CoreMemoryReplace(label=label, old_content=old, new_content=new):
                block = await self._core.replace(agent_id, label, old, new, record=core_recorder(label))
                return done(_block_note(label, block.value), recorded=True)
            case ConversationSearch(query=query, page=page):
                return done(await self._recall.search(agent_id, query, page=page, bounds=bounds))
            case ConversationSearchDate(start_date=start, end_date=end, page=page):
                return done(await self._recall.search_date(agent_id, start, end, page=page, bounds=bounds))
            case ArchivalMemoryInsert(content=content):
                await self._archival.insert(agent_id, [content])
                return done("Saved to archival memory.")
            case ArchivalMemorySearch(query=query, page=page):
                return done(await self._archival.search(agent_id, query, page=page))
            case PauseHeartbeats(minutes=minutes):
                until = self._clock() + timedelta(minutes=minutes)
                await self._pause_heartbeats(agent_id, until)
                return done(f"Timed heartbeats paused until {until:%Y-%m-%d %H:%M} UTC.")
            case _:
                raise FunctionArgumentError(f"Function {call.name!r} is not available.")

    async def _pause_heartbeats(self, agent_id: str, until: datetime) -> None:
        agent = await self._store.get_agent(agent_id)
        if agent is None:
            raise FunctionArgumentError("This agent no longer exists.")
        await self._store.update_agent(
            agent_id, AgentUpdate(heartbeats_paused_until=until), expected_version=agent.version
        )


def _block_note(label: str, value: str) -> str:
    return f"Block '{label}' updated ({len(value)} chars)."
