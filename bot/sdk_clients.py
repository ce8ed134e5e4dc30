"""The LLM and embeddings clients, built on first use.

Importing the openai SDK costs ~0.7 s of CPU (its type tree). `prefetch` starts that
import, and the token encoding, in a worker thread as the CLI starts, so it overlaps
opening the store and the user's first keystrokes; the deferred wrappers below await
the same import (Python's import lock makes it happen once) before their first call.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bot.agent.model import ChatMessage, Completion, ToolSchema
from bot.config import EmbeddingSettings, LLMSettings

if TYPE_CHECKING:
    import openai

    from bot.agent.llm import OpenAIChatModel
    from bot.memory.openai_embeddings import OpenAIEmbedder

__all__ = ["DeferredChatModel", "DeferredEmbedder", "prefetch"]

_log = logging.getLogger(__name__)


def prefetch(model: str) -> None:
    """Warm the SDK import and the token encoding in the background (never raises)."""

    def warm() -> None:
        try:
            importlib.import_module("bot.agent.llm")
            importlib.import_module("bot.memory.openai_embeddings")
            from bot.agent.tokens import TokenCounter

            TokenCounter(model=model).count_text("warm")
        except Exception:  # the real use reports the problem where it can be handled
            _log.debug("background prefetch failed", exc_info=True)

    threading.Thread(target=warm, name="membot-prefetch", daemon=True).start()


async def _import(name: str) -> None:
    # In a thread, so a slow first import never stalls the event loop (gateway heartbeats).
    await asyncio.to_thread(importlib.import_module, name)


def _client(base_url: str, api_key: str | None, timeout: float) -> openai.AsyncOpenAI:
    from bot.agent.llm import make_openai_client

    return make_openai_client(base_url=base_url, api_key=api_key or "not-needed", timeout=timeout)


class DeferredChatModel:
    """`ChatModel` over the configured endpoint; the SDK client is made at the first call."""

    def __init__(self, settings: LLMSettings) -> None:
        self._settings = settings
        self._model: OpenAIChatModel | None = None
        self._client: openai.AsyncOpenAI | None = None
        self._lock = asyncio.Lock()

    @property
    def model_name(self) -> str:
        return self._settings.model

    async def complete(self, messages: Sequence[ChatMessage], *, tools: Sequence[ToolSchema]) -> Completion:
        model = self._model or await self._build()
        return await model.complete(messages, tools=tools)

    async def _build(self) -> OpenAIChatModel:
        async with self._lock:
            if self._model is None:
                await _import("bot.agent.llm")
                from bot.agent.llm import OpenAIChatModel

                llm = self._settings
                key = llm.api_key.get_secret_value() if llm.api_key else None
                self._client = _client(llm.base_url, key, llm.timeout_s)
                self._model = OpenAIChatModel(
                    client=self._client,
                    model=llm.model,
                    max_retries=llm.max_retries,
                    stream=llm.stream,
                    max_output_tokens=llm.max_output_tokens,
                )
            return self._model

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()


class DeferredEmbedder:
    """`Embedder` over the configured endpoint; the SDK client is made at the first call."""

    def __init__(self, settings: EmbeddingSettings, *, model: str, timeout_s: float, fallback_base_url: str) -> None:
        self._settings = settings
        self._model_name = model
        self._timeout_s = timeout_s
        self._base_url = settings.base_url or fallback_base_url
        self._embedder: OpenAIEmbedder | None = None
        self._client: openai.AsyncOpenAI | None = None
        self._lock = asyncio.Lock()

    @property
    def model_name(self) -> str:
        return self._model_name

    @property
    def dimensions(self) -> int | None:
        return self._embedder.dimensions if self._embedder else None

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        embedder = self._embedder or await self._build()
        return await embedder.embed(texts)

    async def _build(self) -> OpenAIEmbedder:
        async with self._lock:
            if self._embedder is None:
                await _import("bot.memory.openai_embeddings")
                from bot.memory.openai_embeddings import OpenAIEmbedder

                # The settings copy the chat key only when both share one endpoint.
                key = self._settings.api_key.get_secret_value() if self._settings.api_key else None
                self._client = _client(self._base_url, key, self._timeout_s)
                self._embedder = OpenAIEmbedder(
                    client=self._client, model=self._model_name, batch_size=self._settings.batch_size
                )
            return self._embedder

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
