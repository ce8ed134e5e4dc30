"""Archival vector search for the MongoDB store: `$vectorSearch` where the server has it, numpy otherwise.

Detection happens once, at `open()`: `$listSearchIndexes` answers on Atlas and on MongoDB 8.2+
with mongot; everything else (community server without mongot, test servers) raises, and the
store ranks with numpy instead. Both rank by cosine similarity and report it as the score.

Native: one vector index per embedding size (`membot_passages_vector_<dims>`, created on the
first search at that size; filter fields agent_id, embedding_model, seq). Until the index is
queryable (Atlas builds it in the background) searches use the fallback. Up to
`EXACT_SEARCH_LIMIT` candidates the search is exact (ENN), so it ranks as the fallback does;
past it, approximate (HNSW) with `numCandidates` = 10 x the page end, capped at 10,000.

Fallback: fetch the agent's vectors of that model (BinData float32, so decoding is one
`frombuffer`), rank in numpy. Cost grows with passages x dimensions: at 1,536 dimensions about
6 KB per passage cross the network per search, so ~10,000 passages (60 MB, a few hundred ms) is
where it stops being acceptable; deploy Atlas or mongot beyond that (docs/mongodb.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from bson.binary import Binary, BinaryVectorDtype
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import OperationFailure
from pymongo.operations import SearchIndexModel

from bot.errors import StoreError

__all__ = ["EXACT_SEARCH_LIMIT", "VectorSearch", "embedding_value", "unit_vector"]

_log = logging.getLogger(__name__)

EXACT_SEARCH_LIMIT = 10_000
_MAX_CANDIDATES = 10_000
_RECHECK_S = 30.0


def unit_vector(embedding: Sequence[float]) -> np.ndarray[Any, np.dtype[np.float32]]:
    """The float32 unit vector, as the SQLite store keeps it (cosine becomes a dot product)."""
    vector = np.asarray(embedding, dtype=np.float32)
    if vector.ndim != 1 or not np.all(np.isfinite(vector)):
        raise StoreError("an embedding must be a flat sequence of finite floats")
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def embedding_value(embedding: Sequence[float] | None) -> dict[str, Any]:
    """The stored fields of an embedding: a float32 BinData vector (compact; Atlas indexes it) and its size."""
    if embedding is None:
        return {"embedding": None, "embedding_dims": None}
    vector = Binary.from_vector(unit_vector(embedding).tolist(), BinaryVectorDtype.FLOAT32)
    return {"embedding": vector, "embedding_dims": len(embedding)}


class VectorSearch:
    """Ranks one agent's passages of one embedding model by cosine similarity to a query vector."""

    def __init__(self, passages: AsyncCollection[dict[str, Any]], mode: Literal["native", "fallback"]) -> None:
        self._passages = passages
        self.mode: Literal["native", "fallback"] = mode
        self._ready: set[int] = set()
        self._checked_at: dict[int, float] = {}

    @classmethod
    async def detect(
        cls, passages: AsyncCollection[dict[str, Any]], *, mode: Literal["auto", "native", "fallback"]
    ) -> VectorSearch:
        if mode != "auto":
            return cls(passages, mode)
        try:
            await (await passages.aggregate([{"$listSearchIndexes": {}}])).to_list()
        except OperationFailure as error:
            _log.info("archival search: numpy fallback (no $vectorSearch on this server: %s)", error.details or error)
            return cls(passages, "fallback")
        _log.info("archival search: $vectorSearch (the server has search indexes)")
        return cls(passages, "native")

    @staticmethod
    def vector_of(doc: dict[str, Any]) -> tuple[float, ...] | None:
        value = doc.get("embedding")
        if isinstance(value, Binary) and value.subtype == 9:
            try:
                return tuple(float(x) for x in value.as_vector().data)
            except ValueError:
                return None
        if isinstance(value, list) and all(isinstance(x, (int, float)) for x in value):
            return tuple(float(x) for x in value)
        return None

    async def search(
        self, agent_id: str, top_seq: int, query: Sequence[float], model: str, offset: int, limit: int
    ) -> tuple[list[tuple[str, float]], int]:
        """(passage id, cosine) best first for the page, and how many passages have that model's embedding."""
        where = {"agent_id": agent_id, "embedding_model": model, "seq": {"$lte": top_seq}}
        if self.mode == "native" and await self._is_index_ready(len(query)):
            total = await self._passages.count_documents({**where, "embedding": {"$ne": None}})
            return await self._native(where, query, offset, limit, total), total
        return await self._fallback(where, query, offset, limit)

    async def _native(
        self, where: dict[str, Any], query: Sequence[float], offset: int, limit: int, total: int
    ) -> list[tuple[str, float]]:
        if limit <= 0 or offset >= total:
            return []
        stage: dict[str, Any] = {
            "index": _index_name(len(query)),
            "path": "embedding",
            "queryVector": [float(x) for x in query],
            "filter": where,
            "limit": offset + limit,
        }
        if total <= EXACT_SEARCH_LIMIT:
            stage["exact"] = True
        else:
            stage["numCandidates"] = min(_MAX_CANDIDATES, max(100, 10 * (offset + limit)))
        pipeline: list[dict[str, Any]] = [
            {"$vectorSearch": stage},
            {"$project": {"_id": 1, "score": {"$meta": "vectorSearchScore"}}},
            {"$skip": offset},
        ]
        rows = await (await self._passages.aggregate(pipeline)).to_list()
        # Atlas reports cosine as (1 + cos) / 2; hand back the cosine itself, as the fallback does.
        return [(row["_id"], 2.0 * float(row["score"]) - 1.0) for row in rows]

    async def _fallback(
        self, where: dict[str, Any], query: Sequence[float], offset: int, limit: int
    ) -> tuple[list[tuple[str, float]], int]:
        wanted = unit_vector(query)
        ids: list[str] = []
        rows: list[np.ndarray[Any, np.dtype[np.float32]]] = []
        skipped = 0
        cursor = self._passages.find({**where, "embedding": {"$ne": None}}, {"embedding": 1}).sort("seq", 1)
        async for doc in cursor:
            value = doc.get("embedding")
            if isinstance(value, Binary) and value.subtype == 9 and len(value) == 2 + 4 * len(wanted):
                rows.append(np.frombuffer(value, dtype="<f4", offset=2))
                ids.append(doc["_id"])
            else:
                skipped += 1
        if skipped:
            _log.warning(
                "skipped %d passages whose %r embedding is malformed or of another size",
                skipped,
                where["embedding_model"],
            )
        if not rows:
            return [], 0
        scores = np.vstack(rows) @ wanted  # stored vectors are unit vectors already
        # Best first; ties newest first (ids are in seq order, so a higher index is newer).
        order = np.lexsort((-np.arange(len(ids)), -scores))
        page = order[offset : offset + max(limit, 0)]
        return [(ids[i], float(scores[i])) for i in page], len(ids)

    async def _is_index_ready(self, dims: int) -> bool:
        if dims in self._ready:
            return True
        if time.monotonic() - self._checked_at.get(dims, -_RECHECK_S) < _RECHECK_S:
            return False
        self._checked_at[dims] = time.monotonic()
        name = _index_name(dims)
        try:
            found = await (await self._passages.list_search_indexes(name)).to_list()
            if not found:
                definition = {
                    "fields": [
                        {"type": "vector", "path": "embedding", "numDimensions": dims, "similarity": "cosine"},
                        {"type": "filter", "path": "agent_id"},
                        {"type": "filter", "path": "embedding_model"},
                        {"type": "filter", "path": "seq"},
                    ]
                }
                await self._passages.create_search_index(SearchIndexModel(definition, name=name, type="vectorSearch"))
                _log.info("creating vector search index %s; numpy fallback until it is queryable", name)
                return False
        except OperationFailure as error:
            _log.warning("vector search index %s unavailable (%s); using the numpy fallback", name, error)
            return False
        if found[0].get("queryable") is True:
            self._ready.add(dims)
            return True
        return False


def _index_name(dims: int) -> str:
    return f"membot_passages_vector_{dims}"
