"""The virtual context: what the LLM sees on each call, and how it is kept inside the window.

Layout (MemGPT's main context)::

    [system]  instructions + core memory + memory statistics + recursive summary
    [...]     the FIFO queue: every message with seq >= agent.context_start_seq

The system message depends only on memory (core blocks, the summary, how many messages
were evicted, how many passages exist), never on the clock or on per-turn counters, so
between turns the prompt prefix stays byte-identical unless memory changed and the
providers' prompt caches hit.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC

from bot.agent.model import ChatMessage, ToolCallWire
from bot.agent.tokens import REPLY_PRIMING_TOKENS, TOKENS_PER_MESSAGE
from bot.memory.core import render_blocks
from bot.memory.store import AgentRecord, CoreBlock, MessageRole, MessageSize, StoredMessage

__all__ = [
    "ContextBreakdown",
    "ContextWindow",
    "SystemSections",
    "build_system_message",
    "choose_eviction",
    "context_breakdown",
    "estimate_prompt_tokens",
    "render_message",
    "render_queue",
    "render_transcript",
    "rendered_tokens",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ContextWindow:
    """The numbers that bound the prompt."""

    context_window: int
    max_output_tokens: int
    warning_fraction: float

    @property
    def prompt_budget(self) -> int:
        """Prompt tokens allowed: the window minus room for the answer."""
        return self.context_window - self.max_output_tokens

    @property
    def warning_tokens(self) -> int:
        return int(self.context_window * self.warning_fraction)


@dataclass(frozen=True, slots=True, kw_only=True)
class SystemSections:
    """The system message in its parts, as `build_system_message` joins them."""

    instructions: str
    core_memory: str
    statistics: str
    #: Empty when the agent has no summary yet (the section is left out).
    summary: str

    def joined(self) -> str:
        parts = [self.instructions, self.core_memory, self.statistics]
        return "\n\n".join([*parts, self.summary] if self.summary else parts)


def system_sections(
    *, instructions: str, agent: AgentRecord, blocks: Sequence[CoreBlock], passage_count: int
) -> SystemSections:
    evicted = agent.context_start_seq - 1
    return SystemSections(
        instructions=instructions.strip(),
        core_memory="## Core memory\n\n" + (render_blocks(blocks) or "(empty)"),
        statistics="## Memory statistics\n\n"
        f"{evicted} older messages are only in recall memory (conversation_search). "
        f"{passage_count} passages are in archival memory (archival_memory_search).",
        summary="## Summary of older messages\n\n" + agent.summary.strip() if agent.summary else "",
    )


def build_system_message(
    *, instructions: str, agent: AgentRecord, blocks: Sequence[CoreBlock], passage_count: int
) -> str:
    return system_sections(instructions=instructions, agent=agent, blocks=blocks, passage_count=passage_count).joined()


def estimate_prompt_tokens(
    *,
    system_tokens: int,
    tools_tokens: int,
    queue: Sequence[StoredMessage] | Sequence[MessageSize],
    max_chars: int,
    correction: float,
) -> int:
    """Prompt tokens of the system message, the function schemas and the queue, without
    re-encoding the queue (each stored message carries its count); `correction` is the
    calibration from the server's reported usage (`TokenCounter.correction_factor`)."""
    raw = REPLY_PRIMING_TOKENS + TOKENS_PER_MESSAGE + 1 + system_tokens + tools_tokens
    raw += sum(rendered_tokens(m, max_chars=max_chars) for m in queue)
    return math.ceil(raw * correction)


@dataclass(frozen=True, slots=True, kw_only=True)
class ContextBreakdown:
    """What the agent's next prompt is made of, in tokens, against its window (the console's chart).

    The parts add up to `total`, the loop's own estimate of the prompt; `system` holds the
    instructions, the memory statistics and the per-message framing."""

    window: ContextWindow
    system: int
    functions: int
    core_memory: int
    summary: int
    messages: int
    message_count: int

    @property
    def total(self) -> int:
        return self.system + self.functions + self.core_memory + self.summary + self.messages

    @property
    def reserved(self) -> int:
        """Kept free for the reply (`max_output_tokens`)."""
        return self.window.max_output_tokens

    @property
    def free(self) -> int:
        """Prompt tokens left before the loop compacts (negative: over, it compacts on the next step)."""
        return self.window.prompt_budget - self.total


def context_breakdown(
    *,
    window: ContextWindow,
    sections: SystemSections,
    tools_tokens: int,
    queue: Sequence[StoredMessage] | Sequence[MessageSize],
    max_chars: int,
    count: Callable[[str], int],
    correction: float = 1.0,
) -> ContextBreakdown:
    """The prompt `sections` and `queue` make, split by part; its total is `estimate_prompt_tokens`
    of the same prompt, so the console shows what the loop counts."""
    system_tokens = count(sections.joined())
    total = estimate_prompt_tokens(
        system_tokens=system_tokens, tools_tokens=tools_tokens, queue=queue, max_chars=max_chars, correction=correction
    )
    core = round(count(sections.core_memory) * correction)
    summary = round(count(sections.summary) * correction) if sections.summary else 0
    functions = round(tools_tokens * correction)
    messages = round(sum(rendered_tokens(m, max_chars=max_chars) for m in queue) * correction)
    return ContextBreakdown(
        window=window,
        system=max(0, total - core - summary - functions - messages),
        functions=functions,
        core_memory=core,
        summary=summary,
        messages=messages,
        message_count=len(queue),
    )


def render_message(message: StoredMessage, *, max_chars: int, is_shared: bool) -> ChatMessage:
    """One stored message as the LLM sees it. Rendering is a pure function of the stored
    message, so the same history always renders to the same bytes."""
    match message.role:
        case "user":
            return {"role": "user", "content": _user_text(message, max_chars=max_chars, is_shared=is_shared)}
        case "system":
            # Many local models refuse a system message mid-conversation: events ride as user text.
            return {"role": "user", "content": f"[system event {_stamp(message)}] {message.content}"}
        case "assistant":
            # A null content is only valid beside tool calls.
            content = message.content or (None if message.tool_calls else "")
            rendered: ChatMessage = {"role": "assistant", "content": content}
            if message.tool_calls:
                calls: list[ToolCallWire] = [
                    {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                    for c in message.tool_calls
                ]
                rendered["tool_calls"] = calls
            return rendered
        case "tool":
            return {"role": "tool", "tool_call_id": message.tool_call_id or "", "content": message.content}


def render_queue(
    messages: Sequence[StoredMessage],
    *,
    max_chars: int,
    is_shared: bool,
    rendered: Sequence[ChatMessage] | None = None,
) -> list[ChatMessage]:
    """The FIFO queue, repaired so the wire is always valid: tool results whose call was lost
    are dropped, and a call whose result never arrived (a crash mid-step) gets a failed result.

    `rendered`, when given, holds `render_message` of each message already (a cache)."""
    out: list[ChatMessage] = []
    open_calls: list[str] = []
    for index, message in enumerate(messages):
        if message.role == "tool":
            if message.tool_call_id not in open_calls:
                continue
            open_calls.remove(message.tool_call_id)
        else:
            if open_calls:
                out.extend(_interrupted_results(open_calls))
            open_calls = [c.id for c in message.tool_calls] if message.tool_calls else []
        out.append(
            rendered[index]
            if rendered is not None
            else render_message(message, max_chars=max_chars, is_shared=is_shared)
        )
    out.extend(_interrupted_results(open_calls))
    return out


def _interrupted_results(call_ids: list[str]) -> list[ChatMessage]:
    body = json.dumps({"status": "Failed", "message": "interrupted before it finished"})
    return [{"role": "tool", "tool_call_id": call_id, "content": body} for call_id in call_ids]


#: Tokens a stored message gains when rendered: the per-message overhead, plus the
#: "[2024-05-01 14:03 name]" prefix on user text and system events.
_RENDER_OVERHEAD: dict[MessageRole, int] = {"user": 16, "system": 14, "assistant": 4, "tool": 12}


def rendered_tokens(message: StoredMessage | MessageSize, *, max_chars: int) -> int:
    """Estimated tokens of `render_message(message)`, from the count stored with it (no
    re-encoding on the hot path); a user message over `max_chars` is truncated when rendered."""
    tokens = message.tokens
    if message.role == "user":
        chars = message.chars if isinstance(message, MessageSize) else len(message.content)
        if chars > max_chars:
            tokens = tokens * max_chars // chars + 24
    return tokens + _RENDER_OVERHEAD[message.role]


def choose_eviction(messages: Sequence[StoredMessage], *, tokens_to_free: int, keep_last: int, max_chars: int) -> int:
    """How many of the oldest queue messages to evict (0 when nothing can go).

    Frees at least `tokens_to_free` where possible, always keeps the last `keep_last`
    messages, and never cuts between a function call and its result: the first kept
    message is never a tool result.
    """
    limit = max(0, len(messages) - keep_last)
    freed = 0
    cut = 0
    while cut < limit and freed < tokens_to_free:
        freed += rendered_tokens(messages[cut], max_chars=max_chars)
        cut += 1
    while 0 < cut < len(messages) and messages[cut].role == "tool":
        cut += 1
    return cut


def render_transcript(messages: Sequence[StoredMessage], *, max_chars: int) -> str:
    """Evicted messages as plain text for the summariser."""
    lines = []
    for m in messages:
        if m.role == "tool":
            lines.append(f"(function {m.tool_name} result: {_clip(m.content, max_chars)})")
            continue
        if m.role == "assistant":
            if m.content:
                lines.append(f"(agent thought: {_clip(m.content, max_chars)})")
            for call in m.tool_calls:
                lines.append(f"(agent called {call.name} {_clip(call.arguments, max_chars)})")
            continue
        who = m.speaker_name or m.role
        lines.append(f"[{_stamp(m)}] {who}: {_clip(m.content, max_chars)}")
    return "\n".join(lines)


def _user_text(message: StoredMessage, *, max_chars: int, is_shared: bool) -> str:
    text = message.content
    if len(text) > max_chars:
        text = (
            text[:max_chars]
            + f"\n[… truncated: the message is {len(message.content)} characters; the full text is in recall memory]"
        )
    speaker = message.speaker_name or "user"
    if is_shared and message.speaker_id:
        speaker = f"{speaker} ({message.speaker_id})"
    return f"[{_stamp(message)} {speaker}] {text}"


def _stamp(message: StoredMessage) -> str:
    return f"{message.created_at.astimezone(UTC):%Y-%m-%d %H:%M}"


def _clip(text: str, max_chars: int) -> str:
    return text if len(text) <= max_chars else text[:max_chars] + "…"
