"""`MongoStore`: the memory store on MongoDB (standalone, replica set, sharded cluster or Atlas).

Six modules, one noun each: this one (connection, errors, agents and blocks, the protocol's
methods); `schema` (collections, indexes, document shapes, migrations); `log` (seq
allocation, all-or-nothing appends with or without transactions, bm25 text search);
`vectors` (`$vectorSearch` or the numpy fallback); `runtime` (inbox, leases, heartbeat
schedule, and how memory writes are fenced); `policy` (routing policies, the audit log).
`docs/mongodb.md` is the operator's guide.

Every memory write of an agent made under `WRITE_FENCE` for it is refused with `LeaseLostError`
when another replica has since taken the agent's lease (exactly with transactions; on a
standalone server with the small window `runtime` describes).

Every pymongo error leaves as a StoreError naming the host and database (never the password);
pymongo's retryable reads and writes run first, so a blip in a turn is absorbed and a lost
server fails the call after its retry (bounded by `connect_timeout_s`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
from pymongo import AsyncMongoClient, ReturnDocument, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (
    ConfigurationError,
    ConnectionFailure,
    DuplicateKeyError,
    InvalidURI,
    OperationFailure,
    PyMongoError,
)

from bot.errors import NotFoundError, SchemaVersionError, StoreError, VersionConflictError
from bot.memory.mongo import schema
from bot.memory.mongo.log import HIDDEN_FIELDS, AgentLogs, fenced
from bot.memory.mongo.policy import MongoPolicyStore
from bot.memory.mongo.runtime import MongoRuntimeStore, fence_token
from bot.memory.mongo.schema import AGENTS, BLOCKS, MESSAGES, META, PASSAGES, SCHEMA_DOC_ID, SCHEMA_VERSION
from bot.memory.mongo.usage import MongoUsageStore
from bot.memory.mongo.vectors import VectorSearch, embedding_value, unit_vector
from bot.memory.runtime_store import WRITE_FENCE
from bot.memory.store import (
    AgentRecord,
    AgentUpdate,
    CoreBlock,
    MessageRole,
    MessageSize,
    NewMessage,
    NewPassage,
    Passage,
    RecallStats,
    StoredMessage,
    key_prefix_bound,
)

__all__ = ["MongoStore"]

_log = logging.getLogger(__name__)

_UNAUTHORIZED = {13, 8000}  # Unauthorized; Atlas's "user is not allowed to do action"
_AUTH_FAILED = 18


def _hosts(uri: str) -> str:
    """The host list of a URI, never its credentials."""
    rest = uri.split("://", 1)[-1]
    return rest.split("/", 1)[0].split("?", 1)[0].rsplit("@", 1)[-1] or "(no host)"


def _now_us() -> int:
    return schema.to_us(datetime.now(UTC))


class MongoStore(MongoRuntimeStore, MongoPolicyStore, MongoUsageStore):
    """A `MemoryStore`, `RuntimeStore` and `PolicyStore` on MongoDB through pymongo's asyncio client."""

    def __init__(
        self,
        uri: str,
        *,
        database: str = "membot",
        connect_timeout_s: float = 10.0,
        wait_for_server_s: float = 0.0,
        transactions: Literal["auto", "always", "never"] = "auto",
        vector_search: Literal["auto", "native", "fallback"] = "auto",
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        """`connect_timeout_s` bounds server selection; `wait_for_server_s` retries (with backoff) a
        server that is down at `open()`. `transactions="auto"` uses them on replica sets and sharded
        clusters, `"always"` also on a server that says it is standalone. `client_options` go to
        AsyncMongoClient as they are (TLS files, pool sizes, event listeners)."""
        self._uri, self._hosts, self._database = uri, _hosts(uri), database
        self._connect_timeout_s, self._wait_for_server_s = connect_timeout_s, wait_for_server_s
        self._transactions_mode, self._vector_mode = transactions, vector_search
        self._client_options = dict(client_options or {})
        self._client: AsyncMongoClient[dict[str, Any]] | None = None
        self._state: tuple[AgentLogs, VectorSearch] | None = None
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    # -- lifecycle --------------------------------------------------------------------------
    @property
    def uses_transactions(self) -> bool:
        return self._state is not None and self._state[0].uses_transactions

    @property
    def vector_search_mode(self) -> Literal["native", "fallback"]:
        return self._vectors.mode

    async def open(self) -> None:
        timeout_ms = int(self._connect_timeout_s * 1000)
        options: dict[str, Any] = {
            "serverSelectionTimeoutMS": timeout_ms,
            "connectTimeoutMS": timeout_ms,
            "appname": "membot",
        }
        try:
            self._client = AsyncMongoClient(self._uri, **(options | self._client_options))
        except (InvalidURI, ConfigurationError, ValueError, TypeError) as error:
            raise StoreError(f"invalid MongoDB URI for {self._hosts}: {error}") from None
        try:
            await self._wait_for_server(self._client)
            with self._translate("open"):
                hello = await self._client.admin.command("hello")
                is_cluster = "setName" in hello or hello.get("msg") == "isdbgrid"
                use_transactions = self._transactions_mode == "always" or (
                    self._transactions_mode == "auto" and is_cluster
                )
                version = await self._check_schema(self._db)
                for spec in schema.INDEXES:
                    await self._db[spec.collection].create_index(
                        list(spec.keys), name=spec.name, unique=spec.is_unique, sparse=spec.is_sparse
                    )
                await schema.migrate(self._db, from_version=version, to_version=SCHEMA_VERSION)
                vectors = await VectorSearch.detect(self._db[PASSAGES], mode=self._vector_mode)
            self._state = (AgentLogs(self._client, self._db, use_transactions=use_transactions), vectors)
            _log.info(
                "MongoDB memory store open on %s/%s (transactions: %s; archival vector search: %s)",
                self._hosts,
                self._database,
                "yes" if use_transactions else "no, watermark appends",
                vectors.mode,
            )
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        client, self._client, self._state = self._client, None, None
        if client is not None:
            await client.close()

    async def _wait_for_server(self, client: AsyncMongoClient[dict[str, Any]]) -> None:
        deadline, delay = time.monotonic() + self._wait_for_server_s, 0.25
        while True:
            try:
                with self._translate("connect"):
                    await client.admin.command("ping")
                return
            except StoreError as error:
                if not isinstance(error.__cause__, ConnectionFailure) or time.monotonic() + delay > deadline:
                    raise
                _log.warning("MongoDB at %s is not reachable yet; retrying in %.1f s", self._hosts, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _check_schema(self, db: AsyncDatabase[dict[str, Any]]) -> int:
        """The stored schema version (0: data without one); refuses a newer one before any write."""
        meta = await db[META].find_one({"_id": SCHEMA_DOC_ID})
        if meta is None:
            return 0 if await db[AGENTS].find_one({}, {"_id": 1}) is not None else SCHEMA_VERSION
        version = meta.get("version")
        if type(version) is not int:
            raise StoreError(f"MongoDB database {self._database!r}: the meta document has no valid schema version")
        if version > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"MongoDB database {self._database!r} on {self._hosts} has memory schema version {version}, newer "
                f"than this membot understands ({SCHEMA_VERSION}); upgrade membot. Nothing was changed."
            )
        return version

    # -- plumbing ---------------------------------------------------------------------------
    @property
    def _db(self) -> AsyncDatabase[dict[str, Any]]:
        if self._client is None:
            raise StoreError("the MongoDB store is not open")
        return self._client[self._database]

    @property
    def _logs(self) -> AgentLogs:
        if self._state is None:
            raise StoreError("the MongoDB store is not open")
        return self._state[0]

    @property
    def _vectors(self) -> VectorSearch:
        if self._state is None:
            raise StoreError("the MongoDB store is not open")
        return self._state[1]

    def _coll(self, name: str) -> AsyncCollection[dict[str, Any]]:
        return self._db[name]

    @contextmanager
    def _translate(self, action: str) -> Iterator[None]:
        """pymongo's errors as StoreError, naming the host and the database, never a password."""
        try:
            yield
        except PyMongoError as error:
            where = f"MongoDB at {self._hosts} (database {self._database!r})"
            if isinstance(error, DuplicateKeyError):
                message = f"{action}: duplicate key {(error.details or {}).get('keyValue', '')}"
            elif isinstance(error, OperationFailure) and error.code in _UNAUTHORIZED:
                message = f"{action}: the user may not do this on {where}; it needs the readWrite role"
            elif isinstance(error, OperationFailure) and (
                error.code == _AUTH_FAILED or "authentication failed" in str(error).lower()
            ):
                message = f"{action}: authentication failed for {where}; check the user and password in the URI"
            elif isinstance(error, ConnectionFailure):
                message = f"{action}: {where} is unreachable ({type(error).__name__}), even after retrying"
            else:
                message = f"{action} failed on {where}: {error}"
            raise StoreError(message) from error

    def _lock(self, agent_id: str) -> asyncio.Lock:
        """Serialises one agent's writes within this process (the watermark protocol needs one writer)."""
        lock = self._locks.get(agent_id)
        if lock is None:
            lock = self._locks[agent_id] = asyncio.Lock()
        return lock

    async def _require_agent(self, agent_id: str) -> None:
        if await self._logs.counters(agent_id) is None:
            raise NotFoundError(f"no agent with id {agent_id!r}")

    # -- agents -----------------------------------------------------------------------------
    async def create_agent(self, agent: AgentRecord, blocks: Sequence[CoreBlock]) -> None:
        block_docs = [
            {"agent_id": agent.id, "label": b.label, "value": b.value, "limit": b.limit, "version": b.version}
            | {"updated_at_us": schema.to_us(b.updated_at)}
            for b in blocks
        ]

        async def work(session: AsyncClientSession | None) -> None:
            for field, value in (("_id", agent.id), ("name", agent.name)):
                if await self._coll(AGENTS).find_one({field: value}, {"_id": 1}, session=session) is not None:
                    raise StoreError(f"an agent with id {agent.id!r} or name {agent.name!r} already exists")
            # Leftovers of an interrupted delete_agent of the same id: no agent owns them.
            for name in (BLOCKS, MESSAGES, PASSAGES):
                await self._coll(name).delete_many({"agent_id": agent.id}, session=session)
            if block_docs:
                await self._coll(BLOCKS).insert_many(block_docs, ordered=True, session=session)
            # Creation order breaks ties in created_at, as the SQLite store's AUTOINCREMENT does.
            counter = await self._coll(META).find_one_and_update(
                {"_id": "agents"},
                {"$inc": {"created": 1}},
                upsert=True,
                return_document=ReturnDocument.AFTER,
                session=session,
            )
            # A lease taken before the agent existed (or left by a delete cut short) fences it from the start.
            fence = await self._lease_token(agent.id, session)
            doc = schema.agent_document(agent) | {"num": int((counter or {}).get("created", 0)), "fence": fence}
            await self._coll(AGENTS).insert_one(doc, session=session)  # the commit point

        async with self._lock(agent.id):
            with self._translate("create_agent"):
                await self._logs.atomically(work)

    async def _find_agent(self, query: dict[str, Any], *, is_unique: bool = True) -> AgentRecord | None:
        with self._translate("get_agent"):
            # Several agents may share a conversation key: the oldest wins, as in the SQLite store.
            doc = await self._coll(AGENTS).find_one(query, sort=None if is_unique else [("num", 1)])
        return None if doc is None else schema.decode(AGENTS, doc, AgentRecord)

    async def get_agent(self, agent_id: str) -> AgentRecord | None:
        return await self._find_agent({"_id": agent_id})

    async def get_agent_by_name(self, name: str) -> AgentRecord | None:
        return await self._find_agent({"name": name})

    async def get_agent_by_conversation(self, conversation_key: str) -> AgentRecord | None:
        return await self._find_agent({"conversation_key": conversation_key}, is_unique=False)

    async def list_agents(
        self, *, offset: int = 0, limit: int = 100, key_prefix: str | None = None
    ) -> list[AgentRecord]:
        if limit <= 0:
            return []
        with self._translate("list_agents"):
            cursor = self._coll(AGENTS).find(_key_range(key_prefix)).sort([("created_at_us", 1), ("num", 1)])
            docs = await cursor.skip(max(offset, 0)).limit(limit).to_list()
        return [a for d in docs if (a := schema.decode(AGENTS, d, AgentRecord)) is not None]

    async def message_sizes(self, agent_id: str, *, from_seq: int) -> list[MessageSize]:
        with self._translate("message_sizes"):
            top = await self._logs.watermark("messages", agent_id)
            pipeline: list[dict[str, Any]] = [
                {"$match": {"agent_id": agent_id, "seq": {"$gte": from_seq, "$lte": top}}},
                {"$sort": {"seq": 1}},
                {"$project": {"_id": 0, "seq": 1, "role": 1, "tokens": 1, "chars": {"$strLenCP": "$content"}}},
            ]
            docs = await (await self._coll(MESSAGES).aggregate(pipeline)).to_list()
        return [
            MessageSize(seq=int(d["seq"]), role=d["role"], tokens=int(d.get("tokens") or 0), chars=int(d["chars"]))
            for d in docs
            if d.get("role") in ("system", "user", "assistant", "tool")
        ]

    async def count_agents(self, *, key_prefix: str | None = None) -> int:
        with self._translate("count_agents"):
            return await self._coll(AGENTS).count_documents(_key_range(key_prefix))

    async def recall_stats(self, agent_ids: Sequence[str]) -> dict[str, RecallStats]:
        # The count is the agent's counter; the newest message one probe of messages_by_seq.
        ids = list(dict.fromkeys(agent_ids))
        with self._translate("recall_stats"):
            found = await self._coll(AGENTS).find({"_id": {"$in": ids}}, {"_id": 1}).to_list()

            async def stats_of(agent_id: str) -> RecallStats:
                counters = await self._logs.counters(agent_id)
                top = 0 if counters is None else counters["messages_committed"]
                newest = await self._coll(MESSAGES).find_one(
                    {"agent_id": agent_id, "seq": {"$lte": top}}, {"created_at_us": 1}, sort=[("seq", -1)]
                )
                return RecallStats(
                    message_count=0 if counters is None else counters["messages_count"],
                    last_message_at=schema.from_us(int(newest["created_at_us"])) if newest else None,
                )

            known = [str(doc["_id"]) for doc in found]
            return dict(zip(known, await asyncio.gather(*(stats_of(a) for a in known)), strict=True))

    async def update_agent(self, agent_id: str, update: AgentUpdate, *, expected_version: int) -> AgentRecord:
        changes: dict[str, Any] = {"updated_at_us": _now_us()}
        for field in fields(AgentUpdate):
            value = getattr(update, field.name)
            if isinstance(value, datetime):
                changes[f"{field.name}_us"] = schema.to_us(value)
            elif value is not None:
                changes[field.name] = value
        token = fence_token(agent_id)
        with self._translate("update_agent"):
            doc = await self._coll(AGENTS).find_one_and_update(
                {"_id": agent_id, "version": expected_version, **fenced(token)},
                {"$set": changes, "$inc": {"version": 1}},
                return_document=ReturnDocument.AFTER,
            )
            if doc is None:
                await self._logs.check_fence(agent_id, token)
                current = await self._coll(AGENTS).find_one({"_id": agent_id}, {"version": 1})
                if current is None:
                    raise NotFoundError(f"no agent with id {agent_id!r}")
                raise VersionConflictError(
                    f"agent {agent_id!r} is at version {current.get('version')}, not {expected_version}"
                )
        record = schema.decode(AGENTS, doc, AgentRecord)
        if record is None:
            raise StoreError(f"agent {agent_id!r} was updated but is stored in a malformed shape (see the warning)")
        return record

    async def delete_agent(self, agent_id: str) -> None:
        async with self._lock(agent_id):
            with self._translate("delete_agent"):
                # The agent document first: without it the rest is unreachable, and create_agent
                # clears such leftovers should the id come back.
                await self._coll(AGENTS).delete_one({"_id": agent_id})
                for name in (BLOCKS, MESSAGES, PASSAGES):
                    await self._coll(name).delete_many({"agent_id": agent_id})
                await self._delete_runtime_docs(agent_id)  # the audit log stays: it outlives a reset

    # -- core memory ------------------------------------------------------------------------
    async def get_blocks(self, agent_id: str) -> list[CoreBlock]:
        with self._translate("get_blocks"):
            docs = await self._coll(BLOCKS).find({"agent_id": agent_id}).sort("label", 1).to_list()
        return [b for d in docs if (b := schema.decode(BLOCKS, d, CoreBlock)) is not None]

    async def write_block(
        self,
        agent_id: str,
        label: str,
        value: str,
        *,
        limit: int,
        expected_version: int,
        messages: Sequence[NewMessage] = (),
    ) -> CoreBlock:
        now_us, written, token = _now_us(), [0], fence_token(agent_id)

        async def set_block(session: AsyncClientSession | None, marker: dict[str, Any] | None) -> None:
            blocks = self._coll(BLOCKS)
            values = {"value": value, "limit": limit, "updated_at_us": now_us} | ({"pending": marker} if marker else {})
            if expected_version == 0:
                try:
                    await blocks.insert_one(
                        {"agent_id": agent_id, "label": label, "version": 1, **values}, session=session
                    )
                except DuplicateKeyError:
                    raise VersionConflictError(f"block {label!r} of agent {agent_id!r} already exists") from None
            elif (
                await blocks.update_one(
                    {"agent_id": agent_id, "label": label, "version": expected_version},
                    {"$set": values, "$inc": {"version": 1}},
                    session=session,
                )
            ).matched_count == 0:
                current = await blocks.find_one({"agent_id": agent_id, "label": label}, {"version": 1}, session=session)
                if current is None:
                    raise NotFoundError(f"agent {agent_id!r} has no block {label!r}")
                raise VersionConflictError(
                    f"block {label!r} of agent {agent_id!r} is at version {current.get('version')}, not {expected_version}"
                )
            written[0] = expected_version + 1

        async def set_block_fenced(session: AsyncClientSession | None) -> None:
            await self._logs.gate(agent_id, token, session)
            await set_block(session, None)

        async with self._lock(agent_id):
            with self._translate("write_block"):
                if messages:
                    docs = [schema.message_document(agent_id, m) for m in messages]
                    await self._logs.append("messages", agent_id, docs, set_block, fence=token)
                elif token is not None:
                    await self._logs.atomically(set_block_fenced)
                else:
                    await self._require_agent(agent_id)
                    await set_block(None, None)
        return CoreBlock(
            agent_id=agent_id,
            label=label,
            value=value,
            limit=limit,
            version=written[0],
            updated_at=schema.from_us(now_us),
        )

    async def delete_blocks(self, agent_id: str) -> None:
        token = fence_token(agent_id)

        async def delete(session: AsyncClientSession | None) -> None:
            await self._logs.gate(agent_id, token, session)
            await self._coll(BLOCKS).delete_many({"agent_id": agent_id}, session=session)

        with self._translate("delete_blocks"):
            if token is None:
                await delete(None)
            else:
                await self._logs.atomically(delete)

    # -- recall -----------------------------------------------------------------------------
    async def append_messages(self, agent_id: str, messages: Sequence[NewMessage]) -> list[StoredMessage]:
        async with self._lock(agent_id):
            with self._translate("append_messages"):
                if not messages:
                    await self._require_agent(agent_id)
                    return []
                docs = [schema.message_document(agent_id, m) for m in messages]
                first = await self._logs.append("messages", agent_id, docs, fence=fence_token(agent_id))
        values = ({f.name: getattr(m, f.name) for f in fields(NewMessage)} for m in messages)
        # Round-trip the time through the stored form, as a later read would return it.
        return [
            StoredMessage(
                **(v | {"created_at": schema.from_us(schema.to_us(v["created_at"]))}), agent_id=agent_id, seq=first + i
            )
            for i, v in enumerate(values)
        ]

    async def _messages(
        self, query: dict[str, Any], sort: list[tuple[str, int]], skip: int, limit: int | None
    ) -> list[StoredMessage]:
        cursor = self._coll(MESSAGES).find(query, HIDDEN_FIELDS).sort(sort).skip(max(skip, 0))
        docs = await (cursor.limit(limit) if limit is not None else cursor).to_list()
        return [m for d in docs if (m := schema.decode(MESSAGES, d, StoredMessage)) is not None]

    async def get_messages(self, agent_id: str, *, from_seq: int = 1, limit: int | None = None) -> list[StoredMessage]:
        if limit is not None and limit <= 0:
            return []
        with self._translate("get_messages"):
            top = await self._logs.watermark("messages", agent_id)
            return await self._messages(
                {"agent_id": agent_id, "seq": {"$gte": from_seq, "$lte": top}}, [("seq", 1)], 0, limit
            )

    async def get_messages_before(self, agent_id: str, *, before_seq: int, limit: int) -> list[StoredMessage]:
        if limit <= 0:
            return []
        with self._translate("get_messages_before"):
            top = await self._logs.watermark("messages", agent_id)
            query = {"agent_id": agent_id, "seq": {"$lt": min(before_seq, top + 1)}}
            return (await self._messages(query, [("seq", -1)], 0, limit))[::-1]

    async def delete_messages_from(self, agent_id: str, from_seq: int) -> int:
        async with self._lock(agent_id):
            with self._translate("delete_messages_from"):
                return await self._logs.truncate("messages", agent_id, from_seq, fence=fence_token(agent_id))

    async def delete_messages_before(self, agent_id: str, before_seq: int) -> int:
        async with self._lock(agent_id):
            with self._translate("delete_messages_before"):
                # Under $and: the log adds its own `seq` bound (the watermark) beside this one.
                match = {"$and": [{"seq": {"$lt": before_seq}}]}
                return await self._logs.delete_matching("messages", agent_id, match, fence=fence_token(agent_id))

    async def delete_messages_by_speaker(self, agent_id: str, speaker_id: str) -> int:
        async with self._lock(agent_id):
            with self._translate("delete_messages_by_speaker"):
                match = {"speaker_id": speaker_id}
                return await self._logs.delete_matching("messages", agent_id, match, fence=fence_token(agent_id))

    async def recorded_platform_ids(self, agent_id: str, platform_message_ids: Sequence[str]) -> set[str]:
        if not platform_message_ids:
            return set()
        with self._translate("recorded_platform_ids"):
            top = await self._logs.watermark("messages", agent_id)
            query = {
                "agent_id": agent_id,
                "platform_message_id": {"$in": list(dict.fromkeys(platform_message_ids))},
                "seq": {"$lte": top},
            }
            docs = await self._coll(MESSAGES).find(query, {"_id": 0, "platform_message_id": 1}).to_list()
        return {pid for d in docs if isinstance(pid := d.get("platform_message_id"), str)}

    async def count_messages(self, agent_id: str) -> int:
        with self._translate("count_messages"):
            counters = await self._logs.counters(agent_id)
        return 0 if counters is None else counters["messages_count"]

    async def search_messages(
        self,
        agent_id: str,
        query: str,
        *,
        offset: int = 0,
        limit: int = 5,
        roles: Sequence[MessageRole] = ("user", "assistant"),
        from_seq: int = 1,
        before_seq: int | None = None,
    ) -> tuple[list[StoredMessage], int]:
        with self._translate("search_messages"):
            match: dict[str, Any] = {"role": {"$in": list(roles)}}
            if from_seq > 1 or before_seq is not None:
                # Narrows the matches only: bm25's statistics stay the whole history's, as FTS5's do.
                bounds = {"$gte": from_seq} | ({} if before_seq is None else {"$lt": before_seq})
                match["$and"] = [{"seq": bounds}]
            docs, total = await self._logs.search("messages", agent_id, query, offset, limit, match)
        return [m for d in docs if (m := schema.decode(MESSAGES, d, StoredMessage)) is not None], total

    async def messages_between(
        self,
        agent_id: str,
        start: datetime,
        end: datetime,
        *,
        offset: int = 0,
        limit: int = 5,
        roles: Sequence[MessageRole] = ("user", "assistant"),
        from_seq: int = 1,
        before_seq: int | None = None,
    ) -> tuple[list[StoredMessage], int]:
        with self._translate("messages_between"):
            top = await self._logs.watermark("messages", agent_id)
            query = {
                "agent_id": agent_id,
                "created_at_us": {"$gte": schema.to_us(start), "$lt": schema.to_us(end)},
                "seq": {"$gte": from_seq, "$lte": top} | ({} if before_seq is None else {"$lt": before_seq}),
                "role": {"$in": list(roles)},
            }
            total = await self._coll(MESSAGES).count_documents(query)
            if limit <= 0 or total == 0:
                return [], total
            return await self._messages(query, [("created_at_us", 1), ("seq", 1)], offset, limit), total

    # -- recall embeddings (hybrid search) ------------------------------------------------------
    async def messages_without_embedding(
        self, agent_id: str, embedding_model: str, *, limit: int
    ) -> list[StoredMessage]:
        with self._translate("messages_without_embedding"):
            top = await self._logs.watermark("messages", agent_id)
            query = {
                "agent_id": agent_id,
                "seq": {"$lte": top},
                "role": {"$in": ["user", "assistant"]},
                "content": {"$ne": ""},
                "$or": [{"embedding_model": {"$ne": embedding_model}}, {"embedding": None}],
            }
            return await self._messages(query, [("seq", 1)], 0, max(limit, 0)) if limit > 0 else []

    async def set_message_embeddings(
        self, agent_id: str, embedding_model: str, embeddings: Sequence[tuple[int, Sequence[float]]]
    ) -> None:
        values = [(seq, embedding_value(vector)) for seq, vector in embeddings]
        async with self._lock(agent_id):
            with self._translate("set_message_embeddings"):
                await self._logs.check_fence(agent_id, fence_token(agent_id))
                if not values:
                    return
                top = await self._logs.watermark("messages", agent_id)
                await self._coll(MESSAGES).bulk_write(
                    [
                        UpdateOne(
                            {"agent_id": agent_id, "seq": seq, "$and": [{"seq": {"$lte": top}}]},
                            {"$set": {"embedding_model": embedding_model, **value}},
                        )
                        for seq, value in values
                    ],
                    ordered=False,
                )

    async def search_messages_vector(
        self,
        agent_id: str,
        embedding: Sequence[float],
        *,
        embedding_model: str,
        offset: int = 0,
        limit: int = 5,
        roles: Sequence[MessageRole] = ("user", "assistant"),
    ) -> tuple[list[StoredMessage], int]:
        query_vector = unit_vector(embedding)
        with self._translate("search_messages_vector"):
            top = await self._logs.watermark("messages", agent_id)
            query = {
                "agent_id": agent_id,
                "embedding_model": embedding_model,
                "seq": {"$lte": top},
                "role": {"$in": list(roles)},
            }
            docs = await self._coll(MESSAGES).find(query, {"seq": 1, "embedding": 1}).to_list()
            vectors = [(int(d["seq"]), v) for d in docs if (v := VectorSearch.vector_of(d)) is not None]
            good = [(seq, v) for seq, v in vectors if len(v) == len(query_vector)]
            total, k = len(good), min(len(good), max(offset, 0) + max(limit, 0))
            if k == 0 or offset >= total:
                return [], total
            scores = np.asarray([v for _, v in good], dtype=np.float32) @ query_vector
            seqs = np.asarray([seq for seq, _ in good], dtype=np.int64)
            best = np.lexsort((-seqs, -scores))[offset:k]  # best first, ties newest first
            wanted = seqs[best].tolist()
            found = await self._messages({"agent_id": agent_id, "seq": {"$in": wanted}}, [("seq", 1)], 0, None)
        by_seq = {m.seq: m for m in found}
        return [by_seq[seq] for seq in wanted if seq in by_seq], total

    # -- archival ---------------------------------------------------------------------------
    async def insert_passages(self, agent_id: str, passages: Sequence[NewPassage]) -> list[str]:
        ids = [uuid.uuid4().hex for _ in passages]
        # As in the SQLite store, an embedding without its model's name is not kept: nothing could find it.
        docs = [
            schema.passage_document(agent_id, pid, p, embedding_value(p.embedding if p.embedding_model else None))
            for pid, p in zip(ids, passages, strict=True)
        ]
        async with self._lock(agent_id):
            with self._translate("insert_passages"):
                if not docs:
                    await self._require_agent(agent_id)
                    return []
                await self._logs.append("passages", agent_id, docs, fence=fence_token(agent_id))
        return ids

    async def _passages(self, query: dict[str, Any], skip: int, limit: int) -> list[Passage]:
        cursor = self._coll(PASSAGES).find(query, HIDDEN_FIELDS).sort("seq", 1).skip(max(skip, 0)).limit(limit)
        return [p for d in await cursor.to_list() if (p := schema.decode(PASSAGES, d, Passage)) is not None]

    async def list_passages(self, agent_id: str, *, offset: int = 0, limit: int = 100) -> list[Passage]:
        if limit <= 0:
            return []
        with self._translate("list_passages"):
            top = await self._logs.watermark("passages", agent_id)
            return await self._passages({"agent_id": agent_id, "seq": {"$lte": top}}, offset, limit)

    async def passage_embeddings(self, passage_ids: Sequence[str]) -> dict[str, tuple[str, tuple[float, ...]]]:
        """The embedding model and (unit) vector of each of these passages that has one; for migration."""
        with self._translate("passage_embeddings"):
            query = {"_id": {"$in": list(passage_ids)}, "embedding": {"$ne": None}}
            docs = await self._coll(PASSAGES).find(query, {"embedding": 1, "embedding_model": 1}).to_list()
        return {
            d["_id"]: (d["embedding_model"], vector)
            for d in docs
            if isinstance(d.get("embedding_model"), str) and (vector := VectorSearch.vector_of(d)) is not None
        }

    async def count_passages(self, agent_id: str) -> int:
        with self._translate("count_passages"):
            counters = await self._logs.counters(agent_id)
        return 0 if counters is None else counters["passages_count"]

    async def search_passages_text(
        self, agent_id: str, query: str, *, offset: int = 0, limit: int = 5
    ) -> tuple[list[Passage], int]:
        with self._translate("search_passages_text"):
            docs, total = await self._logs.search("passages", agent_id, query, offset, limit, {})
        found = (schema.decode(PASSAGES, d | {"score": d.get("_score")}, Passage) for d in docs)
        return [p for p in found if p is not None], total

    async def search_passages_vector(
        self, agent_id: str, embedding: Sequence[float], *, embedding_model: str, offset: int = 0, limit: int = 5
    ) -> tuple[list[Passage], int]:
        with self._translate("search_passages_vector"):
            top = await self._logs.watermark("passages", agent_id)
            if top == 0:
                return [], 0
            ranked, total = await self._vectors.search(agent_id, top, embedding, embedding_model, max(offset, 0), limit)
            if not ranked:
                return [], total
            docs = (
                await self._coll(PASSAGES).find({"_id": {"$in": [pid for pid, _ in ranked]}}, HIDDEN_FIELDS).to_list()
            )
        by_id = {d["_id"]: d for d in docs}
        found = (schema.decode(PASSAGES, by_id[pid] | {"score": s}, Passage) for pid, s in ranked if pid in by_id)
        return [p for p in found if p is not None], total

    async def passages_without_embedding(self, agent_id: str, embedding_model: str, *, limit: int) -> list[Passage]:
        if limit <= 0:
            return []
        with self._translate("passages_without_embedding"):
            top = await self._logs.watermark("passages", agent_id)
            query = {
                "agent_id": agent_id,
                "seq": {"$lte": top},
                "$or": [{"embedding_model": {"$ne": embedding_model}}, {"embedding": None}],
            }
            return await self._passages(query, 0, limit)

    async def set_passage_embedding(self, passage_id: str, embedding: Sequence[float], embedding_model: str) -> None:
        update = {"$set": {"embedding_model": embedding_model, **embedding_value(embedding)}}
        fence, matched = WRITE_FENCE.get(), [0]

        async def write(session: AsyncClientSession | None) -> None:
            if fence is not None:  # the passage's agent, to compare with the fence's
                owner = await self._coll(PASSAGES).find_one({"_id": passage_id}, {"agent_id": 1}, session=session)
                if owner is not None and owner.get("agent_id") == fence.agent_id:
                    await self._logs.gate(fence.agent_id, fence.token, session)
            result = await self._coll(PASSAGES).update_one({"_id": passage_id}, update, session=session)
            matched[0] = result.matched_count

        with self._translate("set_passage_embedding"):
            await (write(None) if fence is None else self._logs.atomically(write))
        if matched[0] == 0:
            raise NotFoundError(f"no passage with id {passage_id!r}")

    async def delete_passages(self, agent_id: str) -> int:
        async with self._lock(agent_id):
            with self._translate("delete_passages"):
                return await self._logs.truncate("passages", agent_id, 1, fence=fence_token(agent_id))


def _key_range(key_prefix: str | None) -> dict[str, Any]:
    """The filter (on agents_by_conversation) for conversation keys starting with `key_prefix`."""
    if not key_prefix:
        return {}
    bound = key_prefix_bound(key_prefix)
    return {"conversation_key": {"$gte": key_prefix} | ({"$lt": bound} if bound is not None else {})}
