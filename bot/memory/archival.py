"""Archival memory: long-term passages, searched by meaning when an embedder is configured.

Each passage remembers which embedding model produced its vector, so changing the model
never compares vectors from two spaces: passages embedded by another model are re-embedded
on the next search (a bounded batch at a time) and, until then, found by full-text search.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from bot.errors import FunctionArgumentError, LLMError
from bot.memory.embeddings import Embedder
from bot.memory.store import MemoryStore, NewPassage, Passage

__all__ = ["ArchivalMemory"]

_log = logging.getLogger(__name__)

PAGE_SIZE = 5
_REEMBED_BATCH = 64
_RESULT_CHARS = 600


class ArchivalMemory:
    """The archival tier over one store; every method takes the agent id."""

    def __init__(
        self,
        store: MemoryStore,
        *,
        embedder: Embedder | None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._embedder = embedder
        self._clock = clock

    async def count(self, agent_id: str) -> int:
        return await self._store.count_passages(agent_id)

    async def insert(self, agent_id: str, texts: Sequence[str]) -> list[str]:
        """Store passages, embedded when possible; an embedding failure still stores the text."""
        clean = [t.strip() for t in texts if t.strip()]
        if not clean:
            raise FunctionArgumentError("content must not be empty.")
        vectors = await self._embed_or_none(clean)
        now = self._clock()
        model = self._embedder.model_name if self._embedder and vectors else None
        passages = [
            NewPassage(
                text=text,
                created_at=now,
                embedding=tuple(vectors[i]) if vectors else None,
                embedding_model=model,
            )
            for i, text in enumerate(clean)
        ]
        return await self._store.insert_passages(agent_id, passages)

    async def search(self, agent_id: str, query: str, *, page: int = 0) -> str:
        """`archival_memory_search`: one page of passages, best first, formatted for the model."""
        if not query.strip():
            raise FunctionArgumentError("query must not be empty.")
        found, total = await self.search_passages(agent_id, query, offset=page * PAGE_SIZE, limit=PAGE_SIZE)
        if not found:
            return f"No archival passages match {query!r}." if page == 0 else f"No results on page {page}."
        pages = (total + PAGE_SIZE - 1) // PAGE_SIZE
        lines = [f"Page {page} of {pages} (pages start at 0), {total} results:"]
        for passage in found:
            text = passage.text if len(passage.text) <= _RESULT_CHARS else passage.text[:_RESULT_CHARS] + "…"
            lines.append(f"[{passage.created_at.astimezone(UTC):%Y-%m-%d}] {text}")
        return "\n".join(lines)

    async def search_passages(self, agent_id: str, query: str, *, offset: int, limit: int) -> tuple[list[Passage], int]:
        """Vector search when an embedder answers, else full-text search."""
        if self._embedder is not None:
            await self._reembed_stale(agent_id)
            vectors = await self._embed_or_none([query])
            if vectors:
                found, total = await self._store.search_passages_vector(
                    agent_id, vectors[0], embedding_model=self._embedder.model_name, offset=offset, limit=limit
                )
                if total:
                    return found, total
        return await self._store.search_passages_text(agent_id, query, offset=offset, limit=limit)

    async def _reembed_stale(self, agent_id: str) -> None:
        assert self._embedder is not None
        stale = await self._store.passages_without_embedding(agent_id, self._embedder.model_name, limit=_REEMBED_BATCH)
        if not stale:
            return
        vectors = await self._embed_or_none([p.text for p in stale])
        if vectors is None:
            return
        for passage, vector in zip(stale, vectors, strict=True):
            await self._store.set_passage_embedding(passage.id, vector, self._embedder.model_name)
        _log.info(
            "re-embedded %d archival passages of agent %s with %s", len(stale), agent_id, self._embedder.model_name
        )

    async def _embed_or_none(self, texts: list[str]) -> list[list[float]] | None:
        if self._embedder is None:
            return None
        try:
            return await self._embedder.embed(texts)
        except LLMError as exc:
            _log.warning("embedding endpoint failed (%s); falling back to full-text search", exc)
            return None
