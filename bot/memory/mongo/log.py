"""Each agent's two append-only logs in MongoDB (messages, passages): seqs, atomic appends, bm25.

All-or-nothing appends. With transactions (replica set, sharded cluster) an append is one
transaction. A standalone server has none, so the documents make it safe instead: an agent's
`counters` hold a watermark, `<log>_committed`, and readers only see seqs at or below it. An
append
1. allocates its seqs with `$inc` on `<log>_allocated` (find_one_and_update),
2. deletes whatever an earlier failed append left in that range (invisible, above the watermark),
3. inserts its documents (ordered), then runs `also` (write_block's compare-and-set, which
   leaves a `pending` marker naming the batch on the block),
4. moves the watermark in one conditional update: the commit point.
A failure before 4 leaves only invisible documents. The next write to that agent settles it:
rolled back, or forward when the block already carries the batch's marker and every message of
the batch is there (so an edit is never kept without its record in recall, nor the reverse).
This needs one writer per agent at a time, which the runtime's lease provides (and the store's
per-agent lock within a process); a second writer gets a StoreError, never a torn log.

Fencing (`WRITE_FENCE`, see `runtime`): a fenced write passes its lease token, and every
update of the agent document it makes (settling, allocating, committing, truncating, rolling back)
carries `fence <= token` in its filter, so a writer whose lease was taken over is refused
(`LeaseLostError`) at the commit point itself. `gate` is the check for writes that do not end in
an update of the agent document.

Text search is FTS5's bm25 (k1 1.2, b 0.75, speaker name and context weighted 0.5), computed on the server
over the documents that hold a query term (a multikey index on (agent_id, keys, seq)), with the
agent's document count and term count from `counters` and each term's document frequency from
an index count. Statistics are the agent's own; SQLite's FTS5 uses the whole table's, so the two
stores rank alike exactly when the store holds one agent, and nearly so otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any

from pymongo import AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from bot.errors import LeaseLostError, NotFoundError, StoreError
from bot.memory.mongo import schema
from bot.memory.mongo.schema import AGENTS, BLOCKS, LogKind
from bot.memory.text_terms import BM25_B, BM25_K1, bm25_idf, query_terms

__all__ = ["HIDDEN_FIELDS", "AgentLogs", "Also", "fenced"]

_log = logging.getLogger(__name__)

#: Search fields no reader needs back.
HIDDEN_FIELDS = {
    "terms": 0, "name_terms": 0, "context_terms": 0, "keys": 0, "batch": 0, "embedding": 0, "terms_version": 0,
}  # fmt: skip
#: FTS5 column weights of the SQLite store: content, speaker name, context (the message before).
CONTENT_WEIGHT, NAME_WEIGHT, CONTEXT_WEIGHT = 1.0, 0.5, 0.5
_COUNTERS = [f"{log}_{c}" for log in ("messages", "passages") for c in ("allocated", "committed", "count", "length")]

#: Work to do inside an append's unit (the session when in a transaction, and the batch marker).
type Also = Callable[[AsyncClientSession | None, dict[str, Any]], Awaitable[None]]


def fenced(token: int | None) -> dict[str, Any]:
    """The filter on an agent document that a write under lease `token` may change (none: unfenced).
    `$not`/`$gt` rather than `$lte`, so a document without a `fence` (never leased) matches."""
    return {} if token is None else {"fence": {"$not": {"$gt": token}}}


class AgentLogs:
    """Appends, reads of the watermark, truncation and bm25 search over the agents' logs."""

    def __init__(
        self, client: AsyncMongoClient[dict[str, Any]], db: AsyncDatabase[dict[str, Any]], *, use_transactions: bool
    ) -> None:
        self._client, self._db, self._use_transactions = client, db, use_transactions

    @property
    def uses_transactions(self) -> bool:
        return self._use_transactions

    async def atomically[T](self, work: Callable[[AsyncClientSession | None], Awaitable[T]]) -> T:
        """Run `work` in a transaction when the deployment has them, else directly."""
        if not self._use_transactions:
            return await work(None)

        async def in_session(session: AsyncClientSession) -> T:
            return await work(session)

        async with self._client.start_session() as session:
            return await session.with_transaction(in_session)

    async def counters(self, agent_id: str) -> dict[str, int] | None:
        """The agent's counters, None for an unknown agent; malformed ones are rebuilt (with a warning)."""
        doc = await self._db[AGENTS].find_one({"_id": agent_id}, {"counters": 1})
        if doc is None:
            return None
        counters = doc.get("counters")
        if isinstance(counters, dict) and all(type(counters.get(k)) is int for k in _COUNTERS):
            return {k: counters[k] for k in _COUNTERS}
        _log.warning("agent %r had malformed counters; rebuilding them from its documents", agent_id)
        return await schema.rebuild_counters(self._db, agent_id)

    async def watermark(self, kind: LogKind, agent_id: str) -> int:
        """The highest seq readers may see (0 for an unknown agent)."""
        counters = await self.counters(agent_id)
        return 0 if counters is None else counters[f"{kind}_committed"]

    async def check_fence(self, agent_id: str, token: int | None, session: AsyncClientSession | None = None) -> None:
        """Raise NotFoundError for an unknown agent, LeaseLostError when its fence is past `token`."""
        doc = await self._db[AGENTS].find_one({"_id": agent_id}, {"fence": 1}, session=session)
        if doc is None:
            raise NotFoundError(f"no agent with id {agent_id!r}")
        fence = doc.get("fence")
        if token is not None and isinstance(fence, int) and fence > token:
            raise LeaseLostError(f"agent {agent_id!r}: a write under lease token {token}; the current one is {fence}")

    async def gate(self, agent_id: str, token: int | None, session: AsyncClientSession | None) -> None:
        """The fence check of a write that does not end in an update of the agent document.

        In a transaction it is an update (`fence_gate` + 1) filtered on the fence, so a new holder
        raising the fence meanwhile makes one of the two conflict: exact. Without one it is a read
        just before the write, which a takeover can still slip between (see `runtime`)."""
        if session is None or token is None:
            await self.check_fence(agent_id, token)
            return
        passed = await self._db[AGENTS].update_one(
            {"_id": agent_id, **fenced(token)}, {"$inc": {"fence_gate": 1}}, session=session
        )
        if passed.matched_count != 1:
            await self.check_fence(agent_id, token, session)
            raise StoreError(f"agent {agent_id!r}: the fence check found no agent document to update")

    async def append(
        self,
        kind: LogKind,
        agent_id: str,
        docs: list[dict[str, Any]],
        also: Also | None = None,
        *,
        fence: int | None = None,
    ) -> int:
        """Append `docs` (and run `also`) all or nothing, under lease token `fence` when given;
        returns the first seq."""
        agents, coll = self._db[AGENTS], self._db[kind]
        n, batch = len(docs), uuid.uuid4().hex
        allocated, committed = f"counters.{kind}_allocated", f"counters.{kind}_committed"
        await self.settle(kind, agent_id, fence=fence)
        progress = {"first": 0, "also_done": False}

        async def work(session: AsyncClientSession | None) -> int:
            doc = await agents.find_one_and_update(
                {"_id": agent_id, **fenced(fence)},
                {"$inc": {allocated: n}},
                projection={"counters": 1},
                return_document=ReturnDocument.AFTER,
                session=session,
            )
            if doc is None:
                await self.check_fence(agent_id, fence, session)
                raise StoreError(f"agent {agent_id!r}: its document changed during the write; retry")
            last = int(doc["counters"][f"{kind}_allocated"])
            first = last - n + 1
            if first != int(doc["counters"][f"{kind}_committed"]) + 1:
                await agents.update_one({"_id": agent_id, allocated: last}, {"$inc": {allocated: -n}}, session=session)
                raise StoreError(f"another write to agent {agent_id!r} is in progress; retry")
            progress["first"] = first
            await coll.delete_many({"agent_id": agent_id, "seq": {"$gte": first}}, session=session)
            for offset, d in enumerate(docs):
                d.update(seq=first + offset, batch=batch)
            await coll.insert_many(docs, ordered=True, session=session)
            if also is not None:
                if session is None and fence is not None:
                    # Once `also` has run its edit is visible (settle() completes it forward), so the
                    # last fence check of a standalone server is here, right before it.
                    await self.check_fence(agent_id, fence)
                await also(session, {"batch": batch, "first": first, "last": last})
                progress["also_done"] = True
            length = sum(int(d["length"]) for d in docs)
            done = await agents.update_one(
                {"_id": agent_id, allocated: last, committed: first - 1, **({} if also else fenced(fence))},
                {"$set": {committed: last}, "$inc": {f"counters.{kind}_count": n, f"counters.{kind}_length": length}},
                session=session,
            )
            if done.modified_count != 1:
                await self.check_fence(agent_id, fence, session)
                raise StoreError(f"another write to agent {agent_id!r} moved its {kind} log; retry")
            return first

        try:
            return await self.atomically(work)
        except Exception:
            first = progress["first"]
            if not self._use_transactions and first and not progress["also_done"]:
                with suppress(PyMongoError):  # the server may be gone: settle() finishes this later
                    await agents.update_one(
                        {"_id": agent_id, allocated: first + n - 1, committed: first - 1, **fenced(fence)},
                        {"$set": {allocated: first - 1}},
                    )
            raise

    async def settle(self, kind: LogKind, agent_id: str, *, fence: int | None = None) -> None:
        """Finish or undo an append that was interrupted before its commit (standalone servers);
        under lease token `fence`, only while that token is current."""
        counters = await self.counters(agent_id)
        if counters is None:
            raise NotFoundError(f"no agent {agent_id!r}")
        last, done = counters[f"{kind}_allocated"], counters[f"{kind}_committed"]
        if last == done:
            return
        agents, prefix = self._db[AGENTS], f"counters.{kind}"
        unchanged = {"_id": agent_id, f"{prefix}_allocated": last, f"{prefix}_committed": done, **fenced(fence)}
        marker = None
        if kind == "messages":
            query = {"agent_id": agent_id, "pending.first": done + 1, "pending.last": last}
            marker = await self._db[BLOCKS].find_one(query, {"pending": 1})
        if marker is not None:
            batch = {"agent_id": agent_id, "seq": {"$gt": done, "$lte": last}, "batch": marker["pending"]["batch"]}
            n, length = await self._stats(kind, batch)
            if n == last - done:
                _log.warning("agent %r: completing a write_block interrupted before its commit", agent_id)
                await agents.update_one(
                    unchanged,
                    {"$set": {f"{prefix}_committed": last}, "$inc": {f"{prefix}_count": n, f"{prefix}_length": length}},
                )
                return
        _log.warning("agent %r: rolling back an append to %s interrupted before its commit", agent_id, kind)
        await agents.update_one(unchanged, {"$set": {f"{prefix}_allocated": done}})

    async def _stats(
        self, kind: LogKind, match: dict[str, Any], session: AsyncClientSession | None = None
    ) -> tuple[int, int]:
        group = {"$group": {"_id": None, "n": {"$sum": 1}, "len": {"$sum": "$length"}}}
        rows = await (await self._db[kind].aggregate([{"$match": match}, group], session=session)).to_list()
        return (int(rows[0]["n"]), int(rows[0]["len"])) if rows else (0, 0)

    async def truncate(self, kind: LogKind, agent_id: str, from_seq: int, *, fence: int | None = None) -> int:
        """Delete the documents with seq >= from_seq; the watermark moves first (the commit point, under
        lease token `fence` when given), so a crash only hides the rest."""
        await self.settle(kind, agent_id, fence=fence)
        top = await self.watermark(kind, agent_id)
        n, length = await self._stats(kind, {"agent_id": agent_id, "seq": {"$gte": from_seq, "$lte": top}})
        new_top, prefix = min(top, max(from_seq - 1, 0)), f"counters.{kind}"
        updated = await self._db[AGENTS].update_one(
            {"_id": agent_id, f"{prefix}_allocated": top, f"{prefix}_committed": top, **fenced(fence)},
            {
                "$set": {f"{prefix}_allocated": new_top, f"{prefix}_committed": new_top},
                "$inc": {f"{prefix}_count": -n, f"{prefix}_length": -length},
            },
        )
        if updated.matched_count != 1:
            await self.check_fence(agent_id, fence)
            if new_top != top:
                raise StoreError(f"another write to agent {agent_id!r} moved its {kind} log; retry")
        await self._db[kind].delete_many({"agent_id": agent_id, "seq": {"$gte": from_seq}})
        return n

    async def delete_matching(
        self, kind: LogKind, agent_id: str, match: dict[str, Any], *, fence: int | None = None
    ) -> int:
        """Delete the visible documents that match `match`, wherever they are in the log (the seqs of
        the rest, and the watermark, are unchanged); returns how many.

        The counters' count and length are *set* to those of the documents that stay, in one
        conditional update (the commit point, under lease token `fence` when given), then the
        documents go: in one transaction when the deployment has them. Without one, a crash in
        between leaves documents the counters no longer count; running the delete again removes
        them and sets the counters right (absolute values, never a second decrement)."""
        await self.settle(kind, agent_id, fence=fence)
        agents, prefix = self._db[AGENTS], f"counters.{kind}"
        top = await self.watermark(kind, agent_id)
        visible = {"agent_id": agent_id, "seq": {"$lte": top}}
        doomed = {**visible, **match}

        async def work(session: AsyncClientSession | None) -> int:
            n, _ = await self._stats(kind, doomed, session)
            if n == 0:
                await self.check_fence(agent_id, fence, session)
                return 0
            kept, length = await self._stats(kind, {**visible, "$nor": [match]}, session)
            updated = await agents.update_one(
                {"_id": agent_id, f"{prefix}_allocated": top, f"{prefix}_committed": top, **fenced(fence)},
                {"$set": {f"{prefix}_count": kept, f"{prefix}_length": length}},
                session=session,
            )
            if updated.matched_count != 1:
                await self.check_fence(agent_id, fence, session)
                raise StoreError(f"another write to agent {agent_id!r} moved its {kind} log; retry")
            await self._db[kind].delete_many(doomed, session=session)
            return n

        return await self.atomically(work)

    async def search(
        self, kind: LogKind, agent_id: str, query: str, offset: int, limit: int, match: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], int]:
        """The page of documents best first by bm25 (ties newest first), with `_score`, and the total."""
        terms = query_terms(query)
        counters = await self.counters(agent_id) if terms else None
        if counters is None or counters[f"{kind}_count"] <= 0:
            return [], 0
        coll, top = self._db[kind], counters[f"{kind}_committed"]
        n_docs = counters[f"{kind}_count"]
        avgdl = max(counters[f"{kind}_length"], 1) / n_docs
        visible = {"agent_id": agent_id, "seq": {"$lte": top}}
        distinct = list(dict.fromkeys(terms))
        counts = await asyncio.gather(*(coll.count_documents({**visible, "keys": t}) for t in distinct))
        hits = dict(zip(distinct, counts, strict=True))
        # One share per query term, repeats included: FTS5 scores each phrase of the MATCH string.
        shares = [_bm25_share(t, bm25_idf(n_docs, hits[t]), avgdl) for t in terms]
        page: list[dict[str, Any]] = [
            {"$addFields": {"_score": {"$add": [0.0, *shares]}}},
            {"$sort": {"_score": -1, "seq": -1}},
            {"$skip": max(offset, 0)},
            {"$limit": max(limit, 1)},
            {"$project": HIDDEN_FIELDS},
        ]
        pipeline = [
            {"$match": {**visible, "keys": {"$in": distinct}, **match}},
            {"$facet": {"total": [{"$count": "n"}], "page": page}},
        ]
        result = (await (await coll.aggregate(pipeline)).to_list())[0]
        total = int(result["total"][0]["n"]) if result["total"] else 0
        return (result["page"] if limit > 0 else []), total


def _bm25_share(term: str, idf: float, avgdl: float) -> dict[str, Any]:
    """One query term's share of FTS5's bm25 for a document, as an aggregation expression."""

    def count(field: str) -> dict[str, Any]:
        terms = {"$ifNull": [f"${field}", []]}  # passages stored before version 3 have no context_terms
        return {"$size": {"$filter": {"input": terms, "as": "t", "cond": {"$eq": ["$$t", {"$literal": term}]}}}}

    weighted = ((CONTENT_WEIGHT, "terms"), (NAME_WEIGHT, "name_terms"), (CONTEXT_WEIGHT, "context_terms"))
    freq = {"$add": [{"$multiply": [weight, count(field)]} for weight, field in weighted]}
    # idf * ((f * (k1 + 1)) / (f + k1 * (1 - b + b * D / avgdl))), in FTS5's order of operations.
    norm = {"$add": [1 - BM25_B, {"$divide": [{"$multiply": [BM25_B, "$length"]}, avgdl]}]}
    share = {"$divide": [{"$multiply": ["$$f", BM25_K1 + 1.0]}, {"$add": ["$$f", {"$multiply": [BM25_K1, norm]}]}]}
    return {"$let": {"vars": {"f": freq}, "in": {"$multiply": [idf, share]}}}
