"""`OpenAIEmbedder`: the `bot.memory.embeddings.Embedder` seam over the openai SDK.

It works against any OpenAI-compatible `/v1/embeddings` (OpenAI, Azure,
vLLM, Ollama, LM Studio). It batches, retries like `bot.agent.llm` (same `RetryPolicy`,
SDK retries off) and asks for plain floats rather than the SDK's default base64, which
several local servers do not implement.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping, Sequence

import openai

from bot.errors import LLMResponseError
from bot.retrying import (
    RandomSource,
    RetryPolicy,
    SleepFn,
    Transient,
    call_with_retries,
    is_retryable_status,
    parse_retry_after,
)

__all__ = ["OpenAIEmbedder", "transient_sdk_error"]

_log = logging.getLogger(__name__)


def transient_sdk_error(exc: Exception) -> Transient | None:
    """The openai SDK failures a retry may cure (a timeout is a connection error, so it goes
    first); `bot.agent.llm` uses the same classes, less context-length errors."""
    if isinstance(exc, openai.APITimeoutError):
        return Transient(reason="timeout")
    if isinstance(exc, openai.APIConnectionError):
        return Transient(reason="connection error")
    if isinstance(exc, openai.APIStatusError) and is_retryable_status(exc.status_code):
        return Transient(reason=f"HTTP {exc.status_code}", retry_after=parse_retry_after(exc.response.headers))
    return None


def _reason(exc: openai.APIError) -> str:
    body = exc.body
    message = body.get("message") if isinstance(body, Mapping) else body
    text = message if isinstance(message, str) and message else exc.message
    line = " ".join(text.split())
    return line if len(line) <= 200 else line[:199] + "…"


class OpenAIEmbedder:
    """An `Embedder` over `AsyncOpenAI.embeddings.create`.

    `dimensions`, when set, is sent to the endpoint (text-embedding-3 models can shorten
    their vectors; leave it None for servers that reject the parameter) and every vector
    is checked against it. Empty strings, which OpenAI rejects, are sent as one space.
    """

    def __init__(
        self,
        *,
        client: openai.AsyncOpenAI,
        model: str,
        dimensions: int | None = None,
        batch_size: int = 64,
        max_retries: int = 4,
        backoff_base: float = 0.5,
        backoff_max: float = 20.0,
        max_retry_after: float = 60.0,
        timeout: float | None = None,
        sleep: SleepFn = asyncio.sleep,
        rng: RandomSource | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if dimensions is not None and dimensions < 1:
            raise ValueError("dimensions must be >= 1")
        self._client = client
        self._model = model
        self._requested_dimensions = dimensions
        self._dimensions = dimensions
        self._batch_size = batch_size
        self._policy = RetryPolicy(
            max_retries=max_retries, base_delay=backoff_base, max_delay=backoff_max, max_retry_after=max_retry_after
        )
        self._timeout: float | openai.NotGiven = openai.NOT_GIVEN if timeout is None else timeout
        self._sleep = sleep
        self._rng: RandomSource = rng if rng is not None else random.Random()

    @property
    def model_name(self) -> str:
        """The embedding model id sent to the endpoint."""
        return self._model

    @property
    def dimensions(self) -> int | None:
        """The configured size, else the size the endpoint returned first, else None."""
        return self._dimensions

    @property
    def batch_size(self) -> int:
        """How many texts go into one request."""
        return self._batch_size

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, `batch_size` texts per request, in input order."""
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self._batch_size):
            batch = [text or " " for text in texts[start : start + self._batch_size]]
            vectors.extend(await self._embed_batch(batch))
        return vectors

    async def _embed_batch(self, batch: list[str]) -> list[list[float]]:
        async def attempt() -> list[list[float]]:
            response = await self._client.embeddings.create(
                model=self._model,
                input=batch,
                encoding_format="float",
                dimensions=self._requested_dimensions if self._requested_dimensions is not None else openai.omit,
                timeout=self._timeout,
            )
            data = sorted(response.data or (), key=lambda item: item.index)
            return [list(item.embedding) for item in data]

        try:
            vectors = await call_with_retries(
                attempt,
                policy=self._policy,
                classify=transient_sdk_error,
                sleep=self._sleep,
                rng=self._rng,
                operation=f"embeddings ({self._model})",
            )
        except openai.APIStatusError as exc:
            raise LLMResponseError(
                f"{self._model}: embeddings rejected (HTTP {exc.status_code}): {_reason(exc)}"
            ) from exc
        except openai.APIError as exc:
            raise LLMResponseError(f"{self._model}: embeddings failed: {_reason(exc)}") from exc
        self._check(vectors, expected=len(batch))
        _log.debug("%s: embedded %d text(s)", self._model, len(batch))
        return vectors

    def _check(self, vectors: list[list[float]], *, expected: int) -> None:
        """Refuse answers a store would silently corrupt itself with."""
        if len(vectors) != expected:
            raise LLMResponseError(f"{self._model}: asked for {expected} embedding(s), got {len(vectors)}")
        sizes = {len(vector) for vector in vectors}
        if self._dimensions is None:
            if len(sizes) != 1:
                raise LLMResponseError(f"{self._model}: embeddings of mixed sizes {sorted(sizes)}")
            self._dimensions = sizes.pop()
            return
        if sizes - {self._dimensions}:
            raise LLMResponseError(
                f"{self._model}: expected {self._dimensions}-dimensional embeddings, got sizes {sorted(sizes)}"
            )
