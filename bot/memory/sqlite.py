"""`SQLiteStore`: the embedded `MemoryStore`, one aiosqlite connection in WAL mode.

Recall search is FTS5 over `messages_fts` (see `sqlite_schema` for the layout). An agent's
messages are one rowid range, so FTS5 itself filters by agent (and, by rowid arithmetic, by
role). Terms are OR-ed and ranked by bm25() (speaker name weighted half of content), ties
newest first. bm25() costs a few µs per matching row, so on huge histories its work is
bounded: matches are ranked in windows of the `rank_window` newest (the first window, then
the next, ...). When a query has no more than `rank_window` matches in that agent's history
(nearly every real query) the order is exactly bm25's; totals are always exact.

Every operation runs under one `asyncio.Lock`: the single connection has a single
transaction, and callers must neither interleave inside it nor see its uncommitted state.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import aiosqlite
import numpy as np

from bot.errors import NotFoundError, StoreError, VersionConflictError
from bot.memory.sqlite_schema import (
    INSERT_MESSAGE,
    INSERT_PASSAGE,
    ROLE_CODES,
    SEQ_BITS,
    agent_from_row,
    agent_to_row,
    block_from_row,
    from_us,
    match_expression,
    message_from_row,
    message_rowid_range,
    message_to_row,
    passage_from_row,
    passage_rowid_range,
    passage_to_row,
    prepare_schema,
    to_us,
    unit_vector_bytes,
    vars_of,
)
from bot.memory.store import (
    AgentRecord,
    AgentUpdate,
    CoreBlock,
    MessageRole,
    NewMessage,
    NewPassage,
    Passage,
    StoredMessage,
)

__all__ = ["SQLiteStore"]

_log = logging.getLogger(__name__)

_LOW_MASK = (1 << SEQ_BITS) - 1
_MESSAGE_COLUMNS = (
    "id, seq, role, content, created_at, tokens, speaker_id, speaker_name, "
    "platform_message_id, tool_calls, tool_call_id, tool_name"
)
_PASSAGE_COLUMNS = "num, id, text, created_at, embedding_model"
_AGENT_FIELDS = {f.name for f in fields(AgentUpdate)}


class SQLiteStore:
    """`MemoryStore` in one SQLite file (see the module docstring for the search design)."""

    def __init__(self, path: Path, *, busy_timeout: float = 5.0, rank_window: int = 2_000) -> None:
        self._path = path
        self._busy_timeout = busy_timeout
        self._rank_window = max(1, rank_window)
        self._conn: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    # -- lifecycle --------------------------------------------------------------------------
    async def open(self) -> None:
        if self._conn is not None:
            return
        await asyncio.to_thread(self._path.parent.mkdir, parents=True, exist_ok=True)
        try:
            conn = await aiosqlite.connect(self._path, isolation_level=None, timeout=self._busy_timeout)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the SQLite store at {self._path}: {exc}") from exc
        try:
            conn.row_factory = sqlite3.Row
            await conn.execute("PRAGMA foreign_keys = ON")
            await conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            await prepare_schema(conn, self._path)
            await conn.execute("PRAGMA synchronous = NORMAL")  # WAL makes NORMAL crash-safe
        except sqlite3.Error as exc:
            await conn.close()
            raise StoreError(f"cannot prepare the SQLite store at {self._path}: {exc}") from exc
        except BaseException:
            await conn.close()
            raise
        self._conn = conn

    async def close(self) -> None:
        async with self._lock:
            if self._conn is not None:
                conn, self._conn = self._conn, None
                await conn.close()

    @asynccontextmanager
    async def _transaction(self, *, write: bool) -> AsyncIterator[aiosqlite.Connection]:
        """One transaction, alone on the connection; sqlite3 errors become StoreError."""
        async with self._lock:
            conn = self._conn
            if conn is None:
                raise StoreError("the SQLite store is not open")
            try:
                # IMMEDIATE takes the write lock up front, so read-then-write never deadlocks.
                await conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    yield conn
                except BaseException:
                    if conn.in_transaction:
                        await conn.execute("ROLLBACK")
                    raise
                await conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreError(f"SQLite store at {self._path}: {exc}") from exc

    @staticmethod
    async def _one(conn: aiosqlite.Connection, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row | None:
        async with conn.execute(sql, params) as cursor:
            return await cursor.fetchone()

    @staticmethod
    async def _all(conn: aiosqlite.Connection, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        return cast(list[sqlite3.Row], list(await conn.execute_fetchall(sql, params)))

    @classmethod
    async def _scalar(cls, conn: aiosqlite.Connection, sql: str, params: Iterable[Any] = ()) -> int:
        row = await cls._one(conn, sql, params)
        return int(row[0]) if row is not None and row[0] is not None else 0

    async def _count(self, table: str, agent_id: str) -> int:
        async with self._transaction(write=False) as conn:
            sql = f"SELECT count(*) FROM {table} WHERE agent_num = (SELECT num FROM agents WHERE id = ?)"
            return await self._scalar(conn, sql, (agent_id,))

    async def _agent_num(self, conn: aiosqlite.Connection, agent_id: str, *, required: bool) -> int | None:
        row = await self._one(conn, "SELECT num FROM agents WHERE id = ?", (agent_id,))
        if row is None and required:
            raise NotFoundError(f"no agent with id {agent_id!r}")
        return None if row is None else int(row[0])

    # -- agents -----------------------------------------------------------------------------
    async def create_agent(self, agent: AgentRecord, blocks: Sequence[CoreBlock]) -> None:
        async with self._transaction(write=True) as conn:
            row = agent_to_row(agent)
            try:
                cursor = await conn.execute(
                    f"INSERT INTO agents ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values())
                )
            except sqlite3.IntegrityError as exc:
                raise StoreError(f"an agent with id {agent.id!r} or name {agent.name!r} already exists") from exc
            await conn.executemany(
                'INSERT INTO core_blocks (agent_num, label, value, "limit", version, updated_at) VALUES (?,?,?,?,?,?)',
                [(cursor.lastrowid, b.label, b.value, b.limit, b.version, to_us(b.updated_at)) for b in blocks],
            )

    async def _agent_where(self, clause: str, value: object) -> AgentRecord | None:
        async with self._transaction(write=False) as conn:
            rows = await self._all(conn, f"SELECT * FROM agents WHERE {clause} ORDER BY num LIMIT 1", (value,))
        return agent_from_row(rows[0]) if rows else None

    async def get_agent(self, agent_id: str) -> AgentRecord | None:
        return await self._agent_where("id = ?", agent_id)

    async def get_agent_by_name(self, name: str) -> AgentRecord | None:
        return await self._agent_where("name = ?", name)

    async def get_agent_by_conversation(self, conversation_key: str) -> AgentRecord | None:
        return await self._agent_where("conversation_key = ?", conversation_key)

    async def list_agents(self, *, offset: int = 0, limit: int = 100) -> list[AgentRecord]:
        async with self._transaction(write=False) as conn:
            rows = await self._all(
                conn, "SELECT * FROM agents ORDER BY created_at, num LIMIT ? OFFSET ?", (max(limit, 0), max(offset, 0))
            )
        return [agent for agent in map(agent_from_row, rows) if agent is not None]

    async def update_agent(self, agent_id: str, update: AgentUpdate, *, expected_version: int) -> AgentRecord:
        changes: dict[str, object] = {}
        for name in _AGENT_FIELDS:
            value = getattr(update, name)
            if value is not None:
                changes[name] = to_us(value) if isinstance(value, datetime) else value
        async with self._transaction(write=True) as conn:
            row = await self._one(conn, "SELECT num, version FROM agents WHERE id = ?", (agent_id,))
            if row is None:
                raise NotFoundError(f"no agent with id {agent_id!r}")
            if row["version"] != expected_version:
                raise VersionConflictError(f"agent {agent_id!r} is at version {row['version']}, not {expected_version}")
            assignments = "".join(f"{name} = ?, " for name in changes)  # names come from AgentUpdate's fields
            await conn.execute(
                f"UPDATE agents SET {assignments}version = version + 1, updated_at = ? WHERE num = ?",
                (*changes.values(), to_us(datetime.now(UTC)), row["num"]),
            )
            rows = await self._all(conn, "SELECT * FROM agents WHERE num = ?", (row["num"],))
        agent = agent_from_row(rows[0])
        if agent is None:
            raise StoreError(f"agent {agent_id!r} was updated but its row is unreadable")
        return agent

    async def delete_agent(self, agent_id: str) -> None:
        async with self._transaction(write=True) as conn:
            await conn.execute("DELETE FROM agents WHERE id = ?", (agent_id,))  # cascades, triggers clean FTS

    # -- core memory ------------------------------------------------------------------------
    async def get_blocks(self, agent_id: str) -> list[CoreBlock]:
        async with self._transaction(write=False) as conn:
            rows = await self._all(
                conn,
                "SELECT b.* FROM core_blocks b JOIN agents a ON a.num = b.agent_num WHERE a.id = ? ORDER BY b.label",
                (agent_id,),
            )
        return [block for row in rows if (block := block_from_row(agent_id, row)) is not None]

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
        now = datetime.now(UTC)
        async with self._transaction(write=True) as conn:
            num = cast(int, await self._agent_num(conn, agent_id, required=True))
            row = await self._one(
                conn, "SELECT version FROM core_blocks WHERE agent_num = ? AND label = ?", (num, label)
            )
            if expected_version == 0:
                if row is not None:
                    raise VersionConflictError(f"block {label!r} of agent {agent_id!r} already exists")
            elif row is None:
                raise NotFoundError(f"agent {agent_id!r} has no block {label!r}")
            elif row["version"] != expected_version:
                raise VersionConflictError(
                    f"block {label!r} of agent {agent_id!r} is at version {row['version']}, not {expected_version}"
                )
            await conn.execute(
                'INSERT INTO core_blocks (agent_num, label, value, "limit", version, updated_at) VALUES (?,?,?,?,?,?) '
                'ON CONFLICT (agent_num, label) DO UPDATE SET value = excluded.value, "limit" = excluded."limit", '
                "version = excluded.version, updated_at = excluded.updated_at",
                (num, label, value, limit, expected_version + 1, to_us(now)),
            )
            await self._append(conn, num, agent_id, messages)
        return CoreBlock(
            agent_id=agent_id, label=label, value=value, limit=limit, version=expected_version + 1,
            updated_at=from_us(to_us(now)),
        )  # fmt: skip

    async def delete_blocks(self, agent_id: str) -> None:
        async with self._transaction(write=True) as conn:
            num = await self._agent_num(conn, agent_id, required=True)
            await conn.execute("DELETE FROM core_blocks WHERE agent_num = ?", (num,))

    # -- recall -----------------------------------------------------------------------------
    async def _append(
        self, conn: aiosqlite.Connection, num: int, agent_id: str, messages: Sequence[NewMessage]
    ) -> list[StoredMessage]:
        """Insert inside the caller's write transaction: seqs continue from the highest stored one."""
        if not messages:
            return []
        first = await self._scalar(conn, "SELECT max(seq) FROM messages WHERE agent_num = ?", (num,)) + 1
        if first + len(messages) > _LOW_MASK:
            raise StoreError(f"agent {agent_id!r} has run out of message sequence numbers")
        rows = [message_to_row(num, seq, m) for seq, m in enumerate(messages, start=first)]
        await conn.executemany(INSERT_MESSAGE, rows)
        return [
            StoredMessage(agent_id=agent_id, seq=seq, **{**vars_of(m), "created_at": from_us(to_us(m.created_at))})
            for seq, m in enumerate(messages, start=first)
        ]

    async def append_messages(self, agent_id: str, messages: Sequence[NewMessage]) -> list[StoredMessage]:
        async with self._transaction(write=True) as conn:
            num = cast(int, await self._agent_num(conn, agent_id, required=True))
            return await self._append(conn, num, agent_id, messages)

    @classmethod
    async def _messages(
        cls, conn: aiosqlite.Connection, agent_id: str, where: str, params: Sequence[Any], tail: str
    ) -> list[StoredMessage]:
        rows = await cls._all(
            conn,
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE agent_num = (SELECT num FROM agents WHERE id = ?) "
            f"AND {where} {tail}",
            (agent_id, *params),
        )
        return [m for row in rows if (m := message_from_row(agent_id, row)) is not None]

    async def get_messages(self, agent_id: str, *, from_seq: int = 1, limit: int | None = None) -> list[StoredMessage]:
        tail = f"ORDER BY seq LIMIT {-1 if limit is None else max(limit, 0)}"
        async with self._transaction(write=False) as conn:
            return await self._messages(conn, agent_id, "seq >= ?", (from_seq,), tail)

    async def get_messages_before(self, agent_id: str, *, before_seq: int, limit: int) -> list[StoredMessage]:
        async with self._transaction(write=False) as conn:
            page = await self._messages(
                conn, agent_id, "seq < ?", (before_seq,), f"ORDER BY seq DESC LIMIT {max(limit, 0)}"
            )
        return page[::-1]

    async def delete_messages_from(self, agent_id: str, from_seq: int) -> int:
        async with self._transaction(write=True) as conn:
            num = await self._agent_num(conn, agent_id, required=True)
            cursor = await conn.execute("DELETE FROM messages WHERE agent_num = ? AND seq >= ?", (num, from_seq))
            return cursor.rowcount

    async def count_messages(self, agent_id: str) -> int:
        return await self._count("messages", agent_id)

    async def _ranked(
        self, conn: aiosqlite.Connection, fts: str, weights: str, match: str, bounds: tuple[int, int], extra: str,
        offset: int, limit: int,
    ) -> tuple[list[sqlite3.Row], int]:  # fmt: skip
        """(rowid, bm25) rows of one page, best first then newest first, and the total number of matches."""
        scan = f"FROM {fts} WHERE {fts} MATCH ? AND rowid BETWEEN ? AND ? {extra}"
        params = (match, *bounds)
        total = await self._scalar(conn, f"SELECT count(*) {scan}", params)
        end, window, page = min(offset + limit, total), self._rank_window, []
        for tier in range(offset // window, (end - 1) // window + 1) if offset < end else ():
            first = tier * window  # overall position of this window's first match
            rows = await self._all(
                conn,
                f"SELECT id, score FROM (SELECT rowid AS id, bm25({fts}, {weights}) AS score {scan} "
                f"ORDER BY rowid DESC LIMIT {window} OFFSET {first}) "  # skipped rows never reach bm25()
                f"ORDER BY score, id DESC LIMIT {end - first}",
                params,
            )
            page.extend(rows[max(0, offset - first) :])
        return page, total

    async def search_messages(
        self, agent_id: str, query: str, *, offset: int = 0, limit: int = 5, roles: Sequence[MessageRole] = ("user", "assistant")
    ) -> tuple[list[StoredMessage], int]:  # fmt: skip
        match = match_expression(query)
        codes = sorted({ROLE_CODES[r] for r in roles if r in ROLE_CODES})
        if match is None or not codes:
            return [], 0
        extra = "" if len(codes) == len(ROLE_CODES) else f"AND (rowid & 3) IN ({', '.join(map(str, codes))})"
        async with self._transaction(write=False) as conn:
            num = await self._agent_num(conn, agent_id, required=False)
            if num is None:
                return [], 0
            bounds = message_rowid_range(num)
            ranked, total = await self._ranked(
                conn, "messages_fts", "1.0, 0.5", match, bounds, extra, max(offset, 0), limit
            )
            ids = [int(r["id"]) for r in ranked]
            rows = await self._all(
                conn, f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id IN ({','.join('?' * len(ids))})", ids
            )
        by_id = {int(row["id"]): row for row in rows}
        page = [message_from_row(agent_id, by_id[i]) for i in ids if i in by_id]
        return [m for m in page if m is not None], total

    async def messages_between(
        self, agent_id: str, start: datetime, end: datetime, *, offset: int = 0, limit: int = 5,
        roles: Sequence[MessageRole] = ("user", "assistant"),
    ) -> tuple[list[StoredMessage], int]:  # fmt: skip
        wanted = sorted(set(roles))
        where = f"created_at >= ? AND created_at < ? AND role IN ({','.join('?' * len(wanted))})"
        params = (to_us(start), to_us(end), *wanted)
        async with self._transaction(write=False) as conn:
            total = await self._scalar(
                conn,
                f"SELECT count(*) FROM messages WHERE agent_num = (SELECT num FROM agents WHERE id = ?) AND {where}",
                (agent_id, *params),
            )
            if total == 0 or limit <= 0:
                return [], total
            tail = f"ORDER BY created_at, seq LIMIT {limit} OFFSET {max(offset, 0)}"
            return await self._messages(conn, agent_id, where, params, tail), total

    # -- archival ---------------------------------------------------------------------------
    async def insert_passages(self, agent_id: str, passages: Sequence[NewPassage]) -> list[str]:
        async with self._transaction(write=True) as conn:
            num = cast(int, await self._agent_num(conn, agent_id, required=True))
            lo, hi = passage_rowid_range(num)
            first = max(
                lo, await self._scalar(conn, "SELECT max(num) FROM passages WHERE num BETWEEN ? AND ?", (lo, hi))
            )
            if first + len(passages) >= hi:
                raise StoreError(f"agent {agent_id!r} has run out of passage numbers")
            rows = [passage_to_row(num, first + 1 + i, p) for i, p in enumerate(passages)]
            await conn.executemany(INSERT_PASSAGE, rows)
        return [str(row[1]) for row in rows]

    async def _passages(self, agent_id: str, where: str, params: Sequence[Any]) -> list[Passage]:
        async with self._transaction(write=False) as conn:
            rows = await self._all(
                conn,
                f"SELECT {_PASSAGE_COLUMNS} FROM passages WHERE agent_num = (SELECT num FROM agents WHERE id = ?) "
                f"{where} ORDER BY num LIMIT ? OFFSET ?",
                (agent_id, *params),
            )
        return [p for row in rows if (p := passage_from_row(agent_id, row, None)) is not None]

    async def list_passages(self, agent_id: str, *, offset: int = 0, limit: int = 100) -> list[Passage]:
        return await self._passages(agent_id, "", (max(limit, 0), max(offset, 0)))

    async def count_passages(self, agent_id: str) -> int:
        return await self._count("passages", agent_id)

    async def _passages_by_num(
        self, conn: aiosqlite.Connection, agent_id: str, nums: Sequence[int], scores: Sequence[float]
    ) -> list[Passage]:
        sql = f"SELECT {_PASSAGE_COLUMNS} FROM passages WHERE num IN ({','.join('?' * len(nums))})"
        by_num = {int(r["num"]): r for r in await self._all(conn, sql, nums)}
        page = (passage_from_row(agent_id, by_num[n], s) for n, s in zip(nums, scores, strict=True) if n in by_num)
        return [p for p in page if p is not None]

    async def search_passages_text(
        self, agent_id: str, query: str, *, offset: int = 0, limit: int = 5
    ) -> tuple[list[Passage], int]:
        match = match_expression(query)
        if match is None:
            return [], 0
        async with self._transaction(write=False) as conn:
            num = await self._agent_num(conn, agent_id, required=False)
            if num is None:
                return [], 0
            bounds = passage_rowid_range(num)
            ranked, total = await self._ranked(conn, "passages_fts", "1.0", match, bounds, "", max(offset, 0), limit)
            nums, scores = [int(r["id"]) for r in ranked], [-float(r["score"]) for r in ranked]
            page = await self._passages_by_num(conn, agent_id, nums, scores)
        return page, total

    async def search_passages_vector(
        self, agent_id: str, embedding: Sequence[float], *, embedding_model: str, offset: int = 0, limit: int = 5
    ) -> tuple[list[Passage], int]:
        query = np.frombuffer(unit_vector_bytes(embedding), dtype=np.float32)
        async with self._transaction(write=False) as conn:
            rows = await self._all(
                conn,
                "SELECT num, embedding FROM passages WHERE agent_num = (SELECT num FROM agents WHERE id = ?) "
                "AND embedding_model = ? AND embedding IS NOT NULL ORDER BY num",
                (agent_id, embedding_model),
            )
            good = [r for r in rows if isinstance(r["embedding"], bytes) and len(r["embedding"]) == query.nbytes]
            if len(good) < len(rows):
                _log.warning("agent %r: %d passage embedding(s) of %r have the wrong size; skipped",
                             agent_id, len(rows) - len(good), embedding_model)  # fmt: skip
            total, k = len(good), min(len(good), max(offset, 0) + max(limit, 0))
            if k == 0 or offset >= total:
                return [], total
            matrix = np.frombuffer(b"".join(r["embedding"] for r in good), dtype=np.float32).reshape(total, -1)
            scores = matrix @ query
            nums = np.fromiter((int(r["num"]) for r in good), dtype=np.int64, count=total)
            top = np.argpartition(-scores, k - 1)[:k] if k < total else np.arange(total)
            best = top[np.lexsort((-nums[top], -scores[top]))][offset:k]  # best first, ties newest first
            page = await self._passages_by_num(conn, agent_id, nums[best].tolist(), scores[best].tolist())
        return page, total

    async def passages_without_embedding(self, agent_id: str, embedding_model: str, *, limit: int) -> list[Passage]:
        where = "AND (embedding IS NULL OR embedding_model IS NOT ?)"
        return await self._passages(agent_id, where, (embedding_model, max(limit, 0), 0))

    async def set_passage_embedding(self, passage_id: str, embedding: Sequence[float], embedding_model: str) -> None:
        vector = unit_vector_bytes(embedding)
        async with self._transaction(write=True) as conn:
            cursor = await conn.execute(
                "UPDATE passages SET embedding = ?, embedding_model = ?, dims = ? WHERE id = ?",
                (vector, embedding_model, len(embedding), passage_id),
            )
            if cursor.rowcount == 0:
                raise NotFoundError(f"no passage with id {passage_id!r}")

    async def delete_passages(self, agent_id: str) -> int:
        async with self._transaction(write=True) as conn:
            num = await self._agent_num(conn, agent_id, required=True)
            cursor = await conn.execute("DELETE FROM passages WHERE agent_num = ?", (num,))
            return cursor.rowcount
