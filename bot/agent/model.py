"""The seam between the agent loop and an LLM: the `ChatModel` protocol and its values.

`bot.agent.llm.OpenAIChatModel` implements it over any OpenAI-compatible endpoint
(OpenAI, Azure, vLLM, Ollama, LM Studio). Messages and tool schemas are the Chat
Completions wire shapes (TypedDicts), so nothing is translated twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NotRequired, Protocol, TypedDict

__all__ = [
    "ChatMessage",
    "ChatModel",
    "Completion",
    "FunctionSpec",
    "ToolCall",
    "ToolCallWire",
    "ToolSchema",
    "Usage",
]


class FunctionSpec(TypedDict):
    name: str
    description: str
    parameters: dict[str, Any]


class ToolSchema(TypedDict):
    type: Literal["function"]
    function: FunctionSpec


class _FunctionCallWire(TypedDict):
    name: str
    arguments: str


class ToolCallWire(TypedDict):
    id: str
    type: Literal["function"]
    function: _FunctionCallWire


class ChatMessage(TypedDict):
    """One Chat Completions message as sent on the wire."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str | None
    name: NotRequired[str]
    tool_calls: NotRequired[list[ToolCallWire]]
    tool_call_id: NotRequired[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCall:
    """A function call the model asked for; `arguments` is the raw JSON text, unvalidated."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    """Token usage as the server reported it (0 when the server did not say)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Completion:
    """What one chat completion call returned."""

    content: str | None
    tool_calls: tuple[ToolCall, ...] = field(default_factory=tuple)
    usage: Usage = field(default_factory=Usage)
    finish_reason: str | None = None
    model: str = ""


class ChatModel(Protocol):
    """An LLM that completes a chat with tools."""

    @property
    def model_name(self) -> str:
        """The model id sent to the endpoint."""
        ...

    async def complete(self, messages: Sequence[ChatMessage], *, tools: Sequence[ToolSchema]) -> Completion:
        """One completion; retries transient failures itself.

        Raises `LLMUnavailableError` when retries run out, `ContextOverflowError` when the
        server says the prompt is too long, `LLMResponseError` for other unusable answers.
        """
        ...
