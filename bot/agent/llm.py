"""`ChatModel` over any OpenAI-compatible Chat Completions endpoint, via the `openai` SDK.

This module owns retries (the SDK client is built with ``max_retries=0``), so backoff,
`Retry-After` and the final `LLMUnavailableError` behave the same against OpenAI, Azure,
vLLM, Ollama and LM Studio. It also owns the translation of SDK errors into our tree:

    429, 408, 409, 5xx, timeout, connection  -> retried, then LLMUnavailableError
    prompt too long (any wording we know)    -> ContextOverflowError, never retried
    other 4xx, no choices, broken stream     -> LLMResponseError

Tool-call arguments are kept as the raw JSON text the model produced: validating them is
the agent loop's job, and a malformed call is model-facing, not an operator error.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import openai
from openai._types import RequestOptions
from openai.types import CompletionUsage
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.chat.chat_completion_chunk import Choice as ChunkChoice

from bot.agent.model import ChatMessage, Completion, ToolCall, ToolSchema, Usage
from bot.errors import ContextOverflowError, LLMError, LLMResponseError, LLMUnavailableError
from bot.memory.openai_embeddings import transient_sdk_error
from bot.retrying import (
    RandomSource,
    RetryPolicy,
    SleepFn,
    Transient,
    call_with_retries,
)

__all__ = ["OpenAIChatModel", "is_context_overflow", "make_openai_client"]

_log = logging.getLogger(__name__)

_NO_KEY = "no-key"
"""Sent when the operator configured no key: local servers ignore it, the SDK insists on one."""

_OVERFLOW_CODES = frozenset({"context_length_exceeded", "exceed_context_size_error", "string_above_max_length"})

# One pattern per server family's wording; lower-cased messages are matched.
_OVERFLOW_MESSAGE = re.compile(
    "|".join(
        (
            r"maximum context length",  # OpenAI, Azure, vLLM, Mistral, Groq
            r"context length exceeded|context_length_exceeded",
            r"exceeds? (?:the )?(?:available |maximum )?context (?:size|length|window)",  # llama.cpp, Ollama
            r"greater than the context length",  # LM Studio: "tokens to keep ... greater than the context length"
            r"when context the overflows",  # LM Studio: "Trying to keep the first N tokens when context the overflows"
            r"n_keep \(\d+\) ?>= ?n_ctx",  # LM Studio / llama.cpp: "Cannot truncate prompt with n_keep (N) >= n_ctx (M)"
            r"longer than the maximum model length",  # vLLM: "The decoder prompt (length N) is longer than ..."
            r"prompt is too long|input is too long|is too long and exceeds",  # vLLM, Anthropic-style gateways
            r"too many tokens",
        )
    )
)


def make_openai_client(
    base_url: str, api_key: str, timeout: float, default_headers: Mapping[str, str] | None = None
) -> openai.AsyncOpenAI:
    """An `AsyncOpenAI` for the composition root to own (and close) with SDK retries off.

    The SDK's own retries would multiply ours and ignore our jitter, caps and logging.
    """
    return openai.AsyncOpenAI(
        base_url=base_url,
        api_key=api_key or _NO_KEY,
        timeout=timeout,
        max_retries=0,
        default_headers=dict(default_headers) if default_headers else None,
    )


def _error_message(exc: openai.APIError) -> str:
    """The server's own error text: `body.message` when the body is a dict, else the body or str(exc)."""
    body = exc.body
    if isinstance(body, Mapping):
        message = body.get("message")
        if isinstance(message, str) and message:
            return message
    if isinstance(body, str) and body:
        return body
    return exc.message or str(exc)


def is_context_overflow(exc: openai.APIError) -> bool:
    """True when the endpoint is saying the prompt does not fit the model's context window.

    Never for 429: "too many tokens" there means a tokens-per-minute limit, which a wait cures.
    """
    if isinstance(exc, openai.APIStatusError) and exc.status_code == 429:
        return False
    body = exc.body
    if isinstance(body, Mapping):
        labels = {str(body.get("code") or ""), str(body.get("type") or "")}
        if labels & _OVERFLOW_CODES:
            return True
    return _OVERFLOW_MESSAGE.search(_error_message(exc).lower()) is not None


def _transient(exc: Exception) -> Transient | None:
    """What a retry may cure; a context-length error never is, whatever its status code."""
    if isinstance(exc, openai.APIStatusError) and is_context_overflow(exc):
        return None
    return transient_sdk_error(exc)


def _shorten(text: str, limit: int = 200) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _translate(exc: openai.APIError, model: str) -> LLMError:
    """Our error for an SDK failure that `_transient` did not claim."""
    status = exc.status_code if isinstance(exc, openai.APIStatusError) else None
    where = f"HTTP {status}" if status is not None else "stream error"
    if is_context_overflow(exc):
        return ContextOverflowError(
            f"{model}: prompt exceeds the context window ({where}): {_shorten(_error_message(exc))}"
        )
    return LLMResponseError(f"{model}: chat completion rejected ({where}): {_shorten(_error_message(exc))}")


@dataclass(slots=True)
class _PartialCall:
    """One tool call being assembled from stream deltas."""

    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


def _usage(raw: CompletionUsage | None) -> Usage:
    if raw is None:
        return Usage()
    return Usage(prompt_tokens=raw.prompt_tokens or 0, completion_tokens=raw.completion_tokens or 0)


def _completion_from_response(response: ChatCompletion, model: str) -> Completion:
    choices = getattr(response, "choices", None)
    if not choices:
        raise LLMResponseError(f"{model}: chat completion returned no choices")
    choice = choices[0]
    calls: list[ToolCall] = []
    for index, call in enumerate(choice.message.tool_calls or ()):
        if call.type != "function":
            _log.warning("%s: ignoring a %s tool call", model, call.type)
            continue
        calls.append(
            ToolCall(
                id=getattr(call, "id", None) or f"call_{index}",
                name=call.function.name,
                arguments=call.function.arguments or "",
            )
        )
    return Completion(
        content=choice.message.content,
        tool_calls=tuple(calls),
        usage=_usage(getattr(response, "usage", None)),
        finish_reason=choice.finish_reason,
        model=getattr(response, "model", None) or model,
    )


class OpenAIChatModel:
    """A `ChatModel` talking to one model of an OpenAI-compatible endpoint.

    The caller builds and closes `client` (see `make_openai_client`). `timeout` is per
    HTTP call in seconds (None: the client's). `stream` asks for SSE and assembles the
    deltas into the same `Completion`; useful behind proxies that cut long idle requests.
    `max_output_tokens` caps the reply: sent as `max_completion_tokens` to OpenAI and Azure
    (whose reasoning models refuse `max_tokens`) and as `max_tokens` to everything else
    (vLLM, Ollama, LM Studio read that one). `sleep` and `rng` are injectable so tests can
    assert the backoff without waiting for it.
    """

    def __init__(
        self,
        *,
        client: openai.AsyncOpenAI,
        model: str,
        max_retries: int = 4,
        backoff_base: float = 0.5,
        backoff_max: float = 20.0,
        max_retry_after: float = 60.0,
        timeout: float | None = None,
        stream: bool = False,
        max_output_tokens: int | None = None,
        sleep: SleepFn = asyncio.sleep,
        rng: RandomSource | None = None,
    ) -> None:
        self._client = client
        self._model = model
        self._policy = RetryPolicy(
            max_retries=max_retries, base_delay=backoff_base, max_delay=backoff_max, max_retry_after=max_retry_after
        )
        self._timeout: float | openai.NotGiven = openai.NOT_GIVEN if timeout is None else timeout
        self._stream = stream
        host = client.base_url.host
        is_openai_hosted = host == "api.openai.com" or host.endswith(".openai.azure.com")
        self._max_output_tokens = max_output_tokens
        self._max_tokens_key: str | None = None
        if max_output_tokens is not None:
            self._max_tokens_key = "max_completion_tokens" if is_openai_hosted else "max_tokens"
        self._options: RequestOptions = {} if timeout is None else {"timeout": timeout}
        self._sleep = sleep
        self._rng: RandomSource = rng if rng is not None else random.Random()

    @property
    def model_name(self) -> str:
        """The model id sent to the endpoint."""
        return self._model

    @property
    def retry_policy(self) -> RetryPolicy:
        """The backoff this model applies to transient failures."""
        return self._policy

    async def probe(self) -> list[str] | None:
        """Check the endpoint answers at all, once and without retries, so start-up fails fast.

        Returns the model ids GET /models lists, or None when the endpoint answers that call
        with an error (some servers have no /models; a 503 may be a model still loading).
        Raises `LLMUnavailableError` when nothing answers and `LLMResponseError` on 401/403.
        """
        try:
            page = await self._client.models.list(timeout=self._timeout)
        except openai.APIConnectionError as exc:
            reason = "timeout" if isinstance(exc, openai.APITimeoutError) else "connection error"
            raise LLMUnavailableError(f"{self._model}: no answer from the endpoint ({reason})") from exc
        except openai.APIStatusError as exc:
            if exc.status_code in (401, 403):
                raise LLMResponseError(
                    f"{self._model}: the endpoint refused the API key (HTTP {exc.status_code})"
                ) from exc
            _log.debug("%s: GET /models answered HTTP %d; carrying on", self._model, exc.status_code)
            return None
        return [model.id for model in page.data]

    async def complete(self, messages: Sequence[ChatMessage], *, tools: Sequence[ToolSchema]) -> Completion:
        """One completion, retried on transient failures; see `ChatModel.complete`."""
        once = self._streamed if self._stream else self._single

        async def attempt() -> Completion:
            return await once(messages, tools)

        try:
            completion = await call_with_retries(
                attempt,
                policy=self._policy,
                classify=_transient,
                sleep=self._sleep,
                rng=self._rng,
                operation=f"chat completion ({self._model})",
            )
        except openai.APIError as exc:
            raise _translate(exc, self._model) from exc
        _log.debug(
            "%s: %d tool call(s), finish=%s, prompt_tokens=%d",
            self._model,
            len(completion.tool_calls),
            completion.finish_reason,
            completion.usage.prompt_tokens,
        )
        return completion

    def _body(self, messages: Sequence[ChatMessage], tools: Sequence[ToolSchema], *, stream: bool) -> dict[str, object]:
        body: dict[str, object] = {"model": self._model, "messages": list(messages)}
        if tools:
            body["tools"] = list(tools)
        if self._max_tokens_key is not None:
            body[self._max_tokens_key] = self._max_output_tokens
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    # Our messages and tools are already Chat Completions wire dicts, so the request goes
    # through the SDK's generic `post` (auth, errors, response parsing) and skips
    # `chat.completions.create`'s recursive TypedDict transform, which costs milliseconds
    # per call on a long conversation and changes nothing for these shapes.
    async def _single(self, messages: Sequence[ChatMessage], tools: Sequence[ToolSchema]) -> Completion:
        response = await self._client.post(
            "/chat/completions",
            body=self._body(messages, tools, stream=False),
            cast_to=ChatCompletion,
            options=self._options,
        )
        return _completion_from_response(response, self._model)

    async def _streamed(self, messages: Sequence[ChatMessage], tools: Sequence[ToolSchema]) -> Completion:
        stream = await self._client.post(
            "/chat/completions",
            body=self._body(messages, tools, stream=True),
            cast_to=ChatCompletion,
            options=self._options,
            stream=True,
            stream_cls=openai.AsyncStream[ChatCompletionChunk],
        )
        content: list[str] = []
        calls: dict[int, _PartialCall] = {}
        finish_reason: str | None = None
        usage: Usage | None = None
        model = self._model
        has_choice = False
        async with stream:
            async for chunk in stream:
                model = chunk.model or model
                if chunk.usage is not None:
                    usage = _usage(chunk.usage)
                for choice in chunk.choices:
                    if choice.index != 0:
                        continue
                    has_choice = True
                    _accumulate(choice, content, calls)
                    finish_reason = choice.finish_reason or finish_reason
        if not has_choice:
            raise LLMResponseError(f"{self._model}: chat completion stream carried no choices")
        tool_calls = tuple(
            ToolCall(id=partial.id or f"call_{index}", name=partial.name, arguments="".join(partial.arguments))
            for index, partial in sorted(calls.items())
        )
        return Completion(
            content="".join(content) if content else None,
            tool_calls=tool_calls,
            usage=usage or Usage(),
            finish_reason=finish_reason,
            model=model,
        )


def _accumulate(choice: ChunkChoice, content: list[str], calls: dict[int, _PartialCall]) -> None:
    """Fold one delta in: content appends, tool calls assemble by their `index`."""
    delta = choice.delta
    if delta.content:
        content.append(delta.content)
    for fragment in delta.tool_calls or ():
        partial = calls.setdefault(fragment.index, _PartialCall())
        if fragment.id:
            partial.id = fragment.id
        if fragment.function is not None:
            if fragment.function.name:
                partial.name += fragment.function.name
            if fragment.function.arguments:
                partial.arguments.append(fragment.function.arguments)
