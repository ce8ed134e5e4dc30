"""`SQLiteStore`: the embedded `MemoryStore` (and, through `SQLiteRuntimeStore` and
`SQLitePolicyStore`, `RuntimeStore` and `PolicyStore`), one stdlib sqlite3 connection in WAL mode.

Recall search is FTS5 over `messages_fts` (see `schema` for the layout). An agent's
messages are one rowid range, so FTS5 itself filters by agent (and, by rowid arithmetic, by
role). Terms are OR-ed and ranked by bm25() (speaker name and context weighted half of content), ties
newest first. bm25() costs a few µs per matching row, so on huge histories its work is
bounded: matches are ranked in windows of the `rank_window` newest (the first window, then
the next, ...). When a query has no more than `rank_window` matches in that agent's history
(nearly every real query) the order is exactly bm25's; totals are always exact.

Threading: the connection belongs to one worker thread (a one-thread executor) that opens, uses
and closes it. Each protocol method is one plain synchronous function (transaction, statements,
row decoding) run on that thread: one hand-off from the event loop per call. The worker runs calls
one at a time in submission order, so without any lock a transaction never interleaves with another
call and no caller sees another's uncommitted state. Writes run in BEGIN IMMEDIATE (the write lock
up front, so read-then-write never deadlocks); reads of several statements that must agree (a page
and its total) in one read transaction; single-statement reads in autocommit. A call cancelled
while it waits is dropped; one cancelled while it runs still commits or rolls back whole.

Every memory write of an agent runs through `_write_fenced` (see `runtime`): refused with
`LeaseLostError`, inside its transaction, when made under a lease another replica has since taken.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from array import array
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from bot.errors import NotFoundError, StoreError, VersionConflictError
from bot.memory.runtime_store import WRITE_FENCE
from bot.memory.sqlite.policy import SQLitePolicyStore
from bot.memory.sqlite.runtime import Mode, SQLiteRuntimeStore, check_fence, delete_runtime_rows
from bot.memory.sqlite.schema import (
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
    opt_str,
    passage_from_row,
    passage_rowid_range,
    passage_to_row,
    prepare_schema,
    to_us,
    unit_vector_bytes,
    vars_of,
)
from bot.memory.sqlite.usage import SQLiteUsageStore
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

__all__ = ["SQLiteStore"]

_log = logging.getLogger(__name__)

_LOW_MASK = (1 << SEQ_BITS) - 1
_MESSAGE_COLUMNS = (
    "id, seq, role, content, created_at, tokens, speaker_id, speaker_name, "
    "platform_message_id, tool_calls, tool_call_id, tool_name, context"
)
_OF_AGENT = "agent_num = (SELECT num FROM agents WHERE id = ?)"
_AGENT_MESSAGES = f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE {_OF_AGENT}"
_PASSAGE_COLUMNS = "num, id, text, created_at, embedding_model"
_AGENT_FIELDS = {f.name for f in fields(AgentUpdate)}
#: bm25() weights of messages_fts's columns: content, speaker name, context (the message before).
_MESSAGE_WEIGHTS = "1.0, 0.5, 0.5"
_BEGIN: dict[Mode, str | None] = {"autocommit": None, "read": "BEGIN", "write": "BEGIN IMMEDIATE"}


class SQLiteStore(SQLiteRuntimeStore, SQLitePolicyStore, SQLiteUsageStore):
    """`MemoryStore`, `RuntimeStore` and `PolicyStore` in one SQLite file (the module docstring has the design)."""

    def __init__(self, path: Path, *, busy_timeout: float = 5.0, rank_window: int = 2_000) -> None:
        self._path = path
        self._busy_timeout = busy_timeout
        self._rank_window = max(1, rank_window)
        self._conn: sqlite3.Connection | None = None  # touched on the worker thread only
        self._worker: ThreadPoolExecutor | None = None

    # -- lifecycle --------------------------------------------------------------------------
    async def open(self) -> None:
        if self._conn is not None:
            return
        worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="membot-sqlite")
        opening = worker.submit(self._connect)
        try:
            conn = await asyncio.wrap_future(opening)
        except BaseException:
            worker.submit(_close_opened, opening)  # runs after `_connect`, if open() was cancelled meanwhile
            worker.shutdown(wait=False)
            raise
        self._conn, self._worker = conn, worker

    def _connect(self) -> sqlite3.Connection:
        """On the worker thread: open the file, configure the connection, check and prepare the schema."""
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self._path, isolation_level=None, timeout=self._busy_timeout)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open the SQLite store at {self._path}: {exc}") from exc
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            prepare_schema(conn, self._path)
            conn.execute("PRAGMA synchronous = NORMAL")  # WAL makes NORMAL crash-safe
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(f"cannot prepare the SQLite store at {self._path}: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        return conn

    async def close(self) -> None:
        conn, worker = self._conn, self._worker
        self._conn = self._worker = None
        if conn is None or worker is None:
            return
        closing = worker.submit(conn.close)  # after every call already queued, on the connection's thread
        worker.shutdown(wait=False)  # the thread exits once its queue is empty
        await asyncio.shield(asyncio.wrap_future(closing))

    async def _run[T](self, mode: Mode, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work` on the worker thread, alone on the connection, inside a transaction of `mode`."""
        conn, worker = self._conn, self._worker
        if conn is None or worker is None:
            raise StoreError("the SQLite store is not open")
        return await asyncio.get_running_loop().run_in_executor(worker, self._transact, conn, _BEGIN[mode], work)

    def _transact[T](self, conn: sqlite3.Connection, begin: str | None, work: Callable[[sqlite3.Connection], T]) -> T:
        """On the worker thread: `begin`, `work`, COMMIT (ROLLBACK on any error); sqlite3 errors become StoreError."""
        try:
            if begin is None:
                return work(conn)
            conn.execute(begin)
            try:
                result = work(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite store at {self._path}: {exc}") from exc

    # -- statements (worker thread) ---------------------------------------------------------
    @staticmethod
    def _one(conn: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        return cast(sqlite3.Row | None, conn.execute(sql, params).fetchone())

    @staticmethod
    def _all(conn: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return conn.execute(sql, params).fetchall()

    @classmethod
    def _scalar(cls, conn: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> int:
        row = cls._one(conn, sql, params)
        return int(row[0]) if row is not None and row[0] is not None else 0

    @staticmethod
    def _agent_num(conn: sqlite3.Connection, agent_id: str, *, required: bool) -> int | None:
        row = conn.execute("SELECT num FROM agents WHERE id = ?", (agent_id,)).fetchone()
        if row is None and required:
            raise NotFoundError(f"no agent with id {agent_id!r}")
        return None if row is None else int(row[0])

    @classmethod
    def _decoded[R](
        cls, conn: sqlite3.Connection, sql: str, params: Sequence[Any], decode: Callable[[sqlite3.Row], R | None]
    ) -> list[R]:
        """The rows of one SELECT, decoded; rows that cannot be read (`decode` warns) are left out."""
        return [record for row in cls._all(conn, sql, params) if (record := decode(row)) is not None]

    async def _select[R](self, sql: str, params: Sequence[Any], decode: Callable[[sqlite3.Row], R | None]) -> list[R]:
        """A single-statement read: `_decoded` in autocommit."""
        return await self._run("autocommit", lambda conn: self._decoded(conn, sql, params, decode))

    async def _delete_rows(self, table: str, agent_id: str, where: str = "", params: Sequence[Any] = ()) -> int:
        """Delete the agent's rows of `table` (that match `where`); an unknown agent raises NotFoundError."""

        def delete(conn: sqlite3.Connection) -> int:
            num = self._agent_num(conn, agent_id, required=True)
            return conn.execute(f"DELETE FROM {table} WHERE agent_num = ? {where}", (num, *params)).rowcount

        return await self._write_fenced(agent_id, delete)

    async def _count(self, table: str, agent_id: str) -> int:
        sql = f"SELECT count(*) FROM {table} WHERE {_OF_AGENT}"
        return await self._run("autocommit", lambda conn: self._scalar(conn, sql, (agent_id,)))

    # -- agents -----------------------------------------------------------------------------
    async def create_agent(self, agent: AgentRecord, blocks: Sequence[CoreBlock]) -> None:
        def insert(conn: sqlite3.Connection) -> None:
            row = agent_to_row(agent)
            try:
                cursor = conn.execute(
                    f"INSERT INTO agents ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values())
                )
            except sqlite3.IntegrityError as exc:
                raise StoreError(f"an agent with id {agent.id!r} or name {agent.name!r} already exists") from exc
            conn.executemany(
                'INSERT INTO core_blocks (agent_num, label, value, "limit", version, updated_at) VALUES (?,?,?,?,?,?)',
                [(cursor.lastrowid, b.label, b.value, b.limit, b.version, to_us(b.updated_at)) for b in blocks],
            )

        await self._run("write", insert)

    async def _agent_where(self, clause: str, value: object) -> AgentRecord | None:
        sql = f"SELECT * FROM agents WHERE {clause} ORDER BY num LIMIT 1"
        agents = await self._select(sql, (value,), agent_from_row)
        return agents[0] if agents else None

    async def get_agent(self, agent_id: str) -> AgentRecord | None:
        return await self._agent_where("id = ?", agent_id)

    async def get_agent_by_name(self, name: str) -> AgentRecord | None:
        return await self._agent_where("name = ?", name)

    async def get_agent_by_conversation(self, conversation_key: str) -> AgentRecord | None:
        return await self._agent_where("conversation_key = ?", conversation_key)

    async def list_agents(
        self, *, offset: int = 0, limit: int = 100, key_prefix: str | None = None
    ) -> list[AgentRecord]:
        where, params = _key_range(key_prefix)
        sql = f"SELECT * FROM agents {where} ORDER BY created_at, num LIMIT ? OFFSET ?"
        return await self._select(sql, (*params, max(limit, 0), max(offset, 0)), agent_from_row)

    async def message_sizes(self, agent_id: str, *, from_seq: int) -> list[MessageSize]:
        sql = f"SELECT seq, role, tokens, length(content) FROM messages WHERE {_OF_AGENT} AND seq >= ? ORDER BY seq"

        def read(conn: sqlite3.Connection) -> list[MessageSize]:
            return [
                MessageSize(seq=int(seq), role=role, tokens=int(tokens or 0), chars=int(chars or 0))
                for seq, role, tokens, chars in conn.execute(sql, (agent_id, from_seq))
                if role in ROLE_CODES
            ]

        return await self._run("autocommit", read)

    async def count_agents(self, *, key_prefix: str | None = None) -> int:
        where, params = _key_range(key_prefix)
        return await self._run(
            "autocommit", lambda conn: self._scalar(conn, f"SELECT count(*) FROM agents {where}", params)
        )

    async def recall_stats(self, agent_ids: Sequence[str]) -> dict[str, RecallStats]:
        # Per agent: a count over the (agent_num, seq) index and one probe for the newest seq.
        ids = list(dict.fromkeys(agent_ids))

        def read(conn: sqlite3.Connection) -> dict[str, RecallStats]:
            stats: dict[str, RecallStats] = {}
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                rows = self._all(
                    conn,
                    "SELECT a.id, (SELECT count(*) FROM messages m WHERE m.agent_num = a.num), "
                    "(SELECT m.created_at FROM messages m WHERE m.agent_num = a.num ORDER BY m.seq DESC LIMIT 1) "
                    f"FROM agents a WHERE a.id IN ({','.join('?' * len(chunk))})",
                    chunk,
                )
                for agent_id, count, last in rows:
                    stats[agent_id] = RecallStats(
                        message_count=int(count), last_message_at=None if last is None else from_us(int(last))
                    )
            return stats

        return await self._run("read", read)

    async def update_agent(self, agent_id: str, update: AgentUpdate, *, expected_version: int) -> AgentRecord:
        changes: dict[str, object] = {}
        for name in _AGENT_FIELDS:
            value = getattr(update, name)
            if value is not None:
                changes[name] = to_us(value) if isinstance(value, datetime) else value

        def write(conn: sqlite3.Connection) -> AgentRecord:
            row = self._one(conn, "SELECT num, version FROM agents WHERE id = ?", (agent_id,))
            if row is None:
                raise NotFoundError(f"no agent with id {agent_id!r}")
            if row["version"] != expected_version:
                raise VersionConflictError(f"agent {agent_id!r} is at version {row['version']}, not {expected_version}")
            assignments = "".join(f"{name} = ?, " for name in changes)  # names come from AgentUpdate's fields
            conn.execute(
                f"UPDATE agents SET {assignments}version = version + 1, updated_at = ? WHERE num = ?",
                (*changes.values(), to_us(datetime.now(UTC)), row["num"]),
            )
            agent = agent_from_row(self._all(conn, "SELECT * FROM agents WHERE num = ?", (row["num"],))[0])
            if agent is None:
                raise StoreError(f"agent {agent_id!r} was updated but its row is unreadable")
            return agent

        return await self._write_fenced(agent_id, write)

    async def delete_agent(self, agent_id: str) -> None:
        def delete(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM agents WHERE id = ?", (agent_id,))  # cascades, triggers clean FTS
            delete_runtime_rows(conn, agent_id)  # the audit log stays: it outlives a reset

        await self._run("write", delete)

    # -- core memory ------------------------------------------------------------------------
    async def get_blocks(self, agent_id: str) -> list[CoreBlock]:
        sql = "SELECT b.* FROM core_blocks b JOIN agents a ON a.num = b.agent_num WHERE a.id = ? ORDER BY b.label"
        return await self._select(sql, (agent_id,), lambda row: block_from_row(agent_id, row))

    async def write_block(
        self, agent_id: str, label: str, value: str, *, limit: int, expected_version: int, messages: Sequence[NewMessage] = ()
    ) -> CoreBlock:  # fmt: skip
        now = datetime.now(UTC)

        def write(conn: sqlite3.Connection) -> None:
            num = cast(int, self._agent_num(conn, agent_id, required=True))
            row = self._one(conn, "SELECT version FROM core_blocks WHERE agent_num = ? AND label = ?", (num, label))
            if expected_version == 0:
                if row is not None:
                    raise VersionConflictError(f"block {label!r} of agent {agent_id!r} already exists")
            elif row is None:
                raise NotFoundError(f"agent {agent_id!r} has no block {label!r}")
            elif row["version"] != expected_version:
                raise VersionConflictError(
                    f"block {label!r} of agent {agent_id!r} is at version {row['version']}, not {expected_version}"
                )
            conn.execute(
                'INSERT INTO core_blocks (agent_num, label, value, "limit", version, updated_at) VALUES (?,?,?,?,?,?) '
                'ON CONFLICT (agent_num, label) DO UPDATE SET value = excluded.value, "limit" = excluded."limit", '
                "version = excluded.version, updated_at = excluded.updated_at",
                (num, label, value, limit, expected_version + 1, to_us(now)),
            )
            self._append(conn, num, agent_id, messages)

        await self._write_fenced(agent_id, write)
        return CoreBlock(
            agent_id=agent_id, label=label, value=value, limit=limit, version=expected_version + 1,
            updated_at=from_us(to_us(now)),
        )  # fmt: skip

    async def delete_blocks(self, agent_id: str) -> None:
        await self._delete_rows("core_blocks", agent_id)

    # -- recall -----------------------------------------------------------------------------
    @classmethod
    def _append(
        cls, conn: sqlite3.Connection, num: int, agent_id: str, messages: Sequence[NewMessage]
    ) -> list[StoredMessage]:
        """Insert inside the caller's write transaction: seqs continue from the agent's high-water
        mark (`agents.last_seq`), so a seq freed by deleting the newest messages is never reused."""
        if not messages:
            return []
        first = cls._scalar(conn, "SELECT last_seq FROM agents WHERE num = ?", (num,)) + 1
        if first + len(messages) > _LOW_MASK:
            raise StoreError(f"agent {agent_id!r} has run out of message sequence numbers")
        conn.executemany(INSERT_MESSAGE, [message_to_row(num, seq, m) for seq, m in enumerate(messages, start=first)])
        conn.execute("UPDATE agents SET last_seq = ? WHERE num = ?", (first + len(messages) - 1, num))
        return [
            StoredMessage(agent_id=agent_id, seq=seq, **{**vars_of(m), "created_at": from_us(to_us(m.created_at))})
            for seq, m in enumerate(messages, start=first)
        ]

    async def append_messages(self, agent_id: str, messages: Sequence[NewMessage]) -> list[StoredMessage]:
        def append(conn: sqlite3.Connection) -> list[StoredMessage]:
            num = cast(int, self._agent_num(conn, agent_id, required=True))
            return self._append(conn, num, agent_id, messages)

        return await self._write_fenced(agent_id, append)

    async def get_messages(self, agent_id: str, *, from_seq: int = 1, limit: int | None = None) -> list[StoredMessage]:
        sql = f"{_AGENT_MESSAGES} AND seq >= ? ORDER BY seq LIMIT {-1 if limit is None else max(limit, 0)}"
        return await self._select(sql, (agent_id, from_seq), lambda row: message_from_row(agent_id, row))

    async def get_messages_before(self, agent_id: str, *, before_seq: int, limit: int) -> list[StoredMessage]:
        sql = f"{_AGENT_MESSAGES} AND seq < ? ORDER BY seq DESC LIMIT {max(limit, 0)}"
        page = await self._select(sql, (agent_id, before_seq), lambda row: message_from_row(agent_id, row))
        return page[::-1]

    async def delete_messages_from(self, agent_id: str, from_seq: int) -> int:
        def truncate(conn: sqlite3.Connection) -> int:
            # A truncation winds the high-water mark back (the next message takes `from_seq`), like MongoDB's log.
            num = self._agent_num(conn, agent_id, required=True)
            deleted = conn.execute("DELETE FROM messages WHERE agent_num = ? AND seq >= ?", (num, from_seq)).rowcount
            conn.execute("UPDATE agents SET last_seq = min(last_seq, ?) WHERE num = ?", (max(from_seq - 1, 0), num))
            return deleted

        return await self._write_fenced(agent_id, truncate)

    async def delete_messages_before(self, agent_id: str, before_seq: int) -> int:
        return await self._delete_rows("messages", agent_id, "AND seq < ?", (before_seq,))

    async def delete_messages_by_speaker(self, agent_id: str, speaker_id: str) -> int:
        # The FTS triggers drop the rows from messages_fts; counts are count(*) over the rows.
        return await self._delete_rows("messages", agent_id, "AND speaker_id = ?", (speaker_id,))

    async def recorded_platform_ids(self, agent_id: str, platform_message_ids: Sequence[str]) -> set[str]:
        if not platform_message_ids:
            return set()
        sql = (
            f"SELECT DISTINCT platform_message_id FROM messages WHERE {_OF_AGENT} "
            "AND platform_message_id IN (SELECT value FROM json_each(?))"  # one parameter however many ids
        )
        return set(await self._select(sql, (agent_id, json.dumps(list(platform_message_ids))), lambda r: opt_str(r[0])))

    async def count_messages(self, agent_id: str) -> int:
        return await self._count("messages", agent_id)

    def _ranked(
        self, conn: sqlite3.Connection, fts: str, weights: str, match: str, bounds: tuple[int, int], extra: str,
        offset: int, limit: int,
    ) -> tuple[list[sqlite3.Row], int]:  # fmt: skip
        """(rowid, bm25) rows of one page, best first then newest first, and the total number of matches."""
        scan = f"FROM {fts} WHERE {fts} MATCH ? AND rowid BETWEEN ? AND ? {extra}"
        params = (match, *bounds)
        total = self._scalar(conn, f"SELECT count(*) {scan}", params)
        end, window, page = min(offset + limit, total), self._rank_window, []
        for tier in range(offset // window, (end - 1) // window + 1) if offset < end else ():
            first = tier * window  # overall position of this window's first match
            rows = self._all(
                conn,
                f"SELECT id, score FROM (SELECT rowid AS id, bm25({fts}, {weights}) AS score {scan} "
                f"ORDER BY rowid DESC LIMIT {window} OFFSET {first}) "  # skipped rows never reach bm25()
                f"ORDER BY score, id DESC LIMIT {end - first}",
                params,
            )
            page.extend(rows[max(0, offset - first) :])
        return page, total

    async def search_messages(
        self, agent_id: str, query: str, *, offset: int = 0, limit: int = 5,
        roles: Sequence[MessageRole] = ("user", "assistant"), from_seq: int = 1, before_seq: int | None = None,
    ) -> tuple[list[StoredMessage], int]:  # fmt: skip
        match = match_expression(query)
        codes = sorted({ROLE_CODES[r] for r in roles if r in ROLE_CODES})
        first, last = max(from_seq, 0), _LOW_MASK if before_seq is None else min(before_seq - 1, _LOW_MASK)
        if match is None or not codes or last < first:
            return [], 0
        extra = "" if len(codes) == len(ROLE_CODES) else f"AND (rowid & 3) IN ({', '.join(map(str, codes))})"

        def search(conn: sqlite3.Connection) -> tuple[list[StoredMessage], int]:
            num = self._agent_num(conn, agent_id, required=False)
            if num is None:
                return [], 0
            low, _high = message_rowid_range(num)
            # seq sits above the role's two bits: a seq range is a rowid range, so FTS5 skips the rest.
            bounds = (low | (first << 2), low | (last << 2) | 3)
            ranked, total = self._ranked(
                conn, "messages_fts", _MESSAGE_WEIGHTS, match, bounds, extra, max(offset, 0), limit
            )
            ids = [int(r["id"]) for r in ranked]
            rows = self._all(
                conn, f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id IN ({','.join('?' * len(ids))})", ids
            )
            by_id = {int(row["id"]): row for row in rows}
            page = [message_from_row(agent_id, by_id[i]) for i in ids if i in by_id]
            return [m for m in page if m is not None], total

        return await self._run("read", search)

    async def messages_between(
        self, agent_id: str, start: datetime, end: datetime, *, offset: int = 0, limit: int = 5,
        roles: Sequence[MessageRole] = ("user", "assistant"), from_seq: int = 1, before_seq: int | None = None,
    ) -> tuple[list[StoredMessage], int]:  # fmt: skip
        wanted = sorted(set(roles))
        where = f"created_at >= ? AND created_at < ? AND role IN ({','.join('?' * len(wanted))}) AND seq >= ?"
        params: tuple[object, ...] = (to_us(start), to_us(end), *wanted, from_seq)
        if before_seq is not None:
            where, params = f"{where} AND seq < ?", (*params, before_seq)

        def read(conn: sqlite3.Connection) -> tuple[list[StoredMessage], int]:
            total = self._scalar(
                conn, f"SELECT count(*) FROM messages WHERE {_OF_AGENT} AND {where}", (agent_id, *params)
            )
            if total == 0 or limit <= 0:
                return [], total
            sql = f"{_AGENT_MESSAGES} AND {where} ORDER BY created_at, seq LIMIT {limit} OFFSET {max(offset, 0)}"
            return self._decoded(conn, sql, (agent_id, *params), lambda row: message_from_row(agent_id, row)), total

        return await self._run("read", read)

    # -- recall embeddings (hybrid search) ------------------------------------------------------
    async def messages_without_embedding(
        self, agent_id: str, embedding_model: str, *, limit: int
    ) -> list[StoredMessage]:
        sql = (
            f"{_AGENT_MESSAGES} AND role IN ('user', 'assistant') AND content <> '' AND NOT EXISTS "
            "(SELECT 1 FROM message_embeddings e WHERE e.id = messages.id AND e.embedding_model = ?) "
            f"ORDER BY seq LIMIT {max(limit, 0)}"
        )
        return await self._select(sql, (agent_id, embedding_model), lambda row: message_from_row(agent_id, row))

    async def set_message_embeddings(
        self, agent_id: str, embedding_model: str, embeddings: Sequence[tuple[int, Sequence[float]]]
    ) -> None:
        vectors = {seq: unit_vector_bytes(vector) for seq, vector in embeddings}

        def write(conn: sqlite3.Connection) -> None:
            num = self._agent_num(conn, agent_id, required=True)
            if not vectors:
                return
            rows = self._all(
                conn,
                "SELECT id, seq FROM messages WHERE agent_num = ? AND seq IN (SELECT value FROM json_each(?))",
                (num, json.dumps(list(vectors))),
            )
            conn.executemany(
                "INSERT OR REPLACE INTO message_embeddings (id, agent_num, embedding_model, embedding) VALUES (?,?,?,?)",
                [(int(r["id"]), num, embedding_model, vectors[int(r["seq"])]) for r in rows],
            )

        await self._write_fenced(agent_id, write)

    async def search_messages_vector(
        self, agent_id: str, embedding: Sequence[float], *, embedding_model: str, offset: int = 0, limit: int = 5,
        roles: Sequence[MessageRole] = ("user", "assistant"),
    ) -> tuple[list[StoredMessage], int]:  # fmt: skip
        import numpy as np  # lazily, as in search_passages_vector

        query = np.frombuffer(unit_vector_bytes(embedding), dtype=np.float32)
        codes = sorted({ROLE_CODES[r] for r in roles if r in ROLE_CODES})
        if not codes:
            return [], 0

        def search(conn: sqlite3.Connection) -> tuple[list[StoredMessage], int]:
            rows = self._all(
                conn,
                f"SELECT id, embedding FROM message_embeddings WHERE {_OF_AGENT} AND embedding_model = ? "
                f"AND (id & 3) IN ({', '.join(map(str, codes))})",
                (agent_id, embedding_model),
            )
            good = [r for r in rows if isinstance(r["embedding"], bytes) and len(r["embedding"]) == query.nbytes]
            total, k = len(good), min(len(good), max(offset, 0) + max(limit, 0))
            if k == 0 or offset >= total:
                return [], total
            matrix = np.frombuffer(b"".join(r["embedding"] for r in good), dtype=np.float32).reshape(total, -1)
            scores = matrix @ query
            ids = np.fromiter((int(r["id"]) for r in good), dtype=np.int64, count=total)
            top = np.argpartition(-scores, k - 1)[:k] if k < total else np.arange(total)
            best = top[np.lexsort((-ids[top], -scores[top]))][offset:k]  # best first, ties newest first
            wanted = ids[best].tolist()
            sql = f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id IN ({','.join('?' * len(wanted))})"
            by_id = {int(row["id"]): row for row in self._all(conn, sql, wanted)}
            page = [message_from_row(agent_id, by_id[i]) for i in wanted if i in by_id]
            return [m for m in page if m is not None], total

        return await self._run("read", search)

    # -- archival ---------------------------------------------------------------------------
    async def insert_passages(self, agent_id: str, passages: Sequence[NewPassage]) -> list[str]:
        def insert(conn: sqlite3.Connection) -> list[str]:
            num = cast(int, self._agent_num(conn, agent_id, required=True))
            lo, hi = passage_rowid_range(num)
            first = max(lo, self._scalar(conn, "SELECT max(num) FROM passages WHERE num BETWEEN ? AND ?", (lo, hi)))
            if first + len(passages) >= hi:
                raise StoreError(f"agent {agent_id!r} has run out of passage numbers")
            rows = [passage_to_row(num, first + 1 + i, p) for i, p in enumerate(passages)]
            conn.executemany(INSERT_PASSAGE, rows)
            return [str(row[1]) for row in rows]

        return await self._write_fenced(agent_id, insert)

    async def _passages(self, agent_id: str, where: str, params: Sequence[Any]) -> list[Passage]:
        sql = f"SELECT {_PASSAGE_COLUMNS} FROM passages WHERE {_OF_AGENT} {where} ORDER BY num LIMIT ? OFFSET ?"
        return await self._select(sql, (agent_id, *params), lambda row: passage_from_row(agent_id, row, None))

    async def list_passages(self, agent_id: str, *, offset: int = 0, limit: int = 100) -> list[Passage]:
        return await self._passages(agent_id, "", (max(limit, 0), max(offset, 0)))

    async def count_passages(self, agent_id: str) -> int:
        return await self._count("passages", agent_id)

    @classmethod
    def _passages_by_num(
        cls, conn: sqlite3.Connection, agent_id: str, nums: Sequence[int], scores: Sequence[float]
    ) -> list[Passage]:
        sql = f"SELECT {_PASSAGE_COLUMNS} FROM passages WHERE num IN ({','.join('?' * len(nums))})"
        by_num = {int(r["num"]): r for r in cls._all(conn, sql, nums)}
        page = (passage_from_row(agent_id, by_num[n], s) for n, s in zip(nums, scores, strict=True) if n in by_num)
        return [p for p in page if p is not None]

    async def search_passages_text(
        self, agent_id: str, query: str, *, offset: int = 0, limit: int = 5
    ) -> tuple[list[Passage], int]:
        match = match_expression(query)
        if match is None:
            return [], 0

        def search(conn: sqlite3.Connection) -> tuple[list[Passage], int]:
            num = self._agent_num(conn, agent_id, required=False)
            if num is None:
                return [], 0
            bounds = passage_rowid_range(num)
            ranked, total = self._ranked(conn, "passages_fts", "1.0", match, bounds, "", max(offset, 0), limit)
            nums, scores = [int(r["id"]) for r in ranked], [-float(r["score"]) for r in ranked]
            return self._passages_by_num(conn, agent_id, nums, scores), total

        return await self._run("read", search)

    async def search_passages_vector(
        self, agent_id: str, embedding: Sequence[float], *, embedding_model: str, offset: int = 0, limit: int = 5
    ) -> tuple[list[Passage], int]:
        import numpy as np  # here, not at import: ~14 MB of RSS that stores without embeddings never need

        query = np.frombuffer(unit_vector_bytes(embedding), dtype=np.float32)

        def search(conn: sqlite3.Connection) -> tuple[list[Passage], int]:
            rows = self._all(
                conn,
                f"SELECT num, embedding FROM passages WHERE {_OF_AGENT} "
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
            return self._passages_by_num(conn, agent_id, nums[best].tolist(), scores[best].tolist()), total

        return await self._run("read", search)

    async def passages_without_embedding(self, agent_id: str, embedding_model: str, *, limit: int) -> list[Passage]:
        where = "AND (embedding IS NULL OR embedding_model IS NOT ?)"
        return await self._passages(agent_id, where, (embedding_model, max(limit, 0), 0))

    async def set_passage_embedding(self, passage_id: str, embedding: Sequence[float], embedding_model: str) -> None:
        vector, fence = unit_vector_bytes(embedding), WRITE_FENCE.get()  # no agent id yet: checked by hand

        def write(conn: sqlite3.Connection) -> None:
            if fence is not None:  # the passage's agent, to compare with the fence's
                sql = "SELECT a.id FROM passages p JOIN agents a ON a.num = p.agent_num WHERE p.id = ?"
                if (owner := self._one(conn, sql, (passage_id,))) is not None:
                    check_fence(conn, str(owner[0]), fence)
            cursor = conn.execute(
                "UPDATE passages SET embedding = ?, embedding_model = ?, dims = ? WHERE id = ?",
                (vector, embedding_model, len(embedding), passage_id),
            )
            if cursor.rowcount == 0:
                raise NotFoundError(f"no passage with id {passage_id!r}")

        await self._run("write", write)

    async def delete_passages(self, agent_id: str) -> int:
        return await self._delete_rows("passages", agent_id)

    async def passage_embeddings(self, passage_ids: Sequence[str]) -> dict[str, tuple[str, tuple[float, ...]]]:
        ids = json.dumps(list(passage_ids))

        def read(conn: sqlite3.Connection) -> dict[str, tuple[str, tuple[float, ...]]]:
            rows = conn.execute(
                "SELECT id, embedding_model, embedding FROM passages "
                "WHERE id IN (SELECT value FROM json_each(?)) AND embedding IS NOT NULL AND embedding_model IS NOT NULL",
                (ids,),
            ).fetchall()
            found: dict[str, tuple[str, tuple[float, ...]]] = {}
            for row in rows:
                vector = array("f")
                vector.frombytes(row[2])
                found[str(row[0])] = (str(row[1]), tuple(vector))
            return found

        return await self._run("autocommit", read)


def _close_opened(opening: Future[sqlite3.Connection]) -> None:
    """On the worker thread, after `_connect`: close the connection an abandoned open() made, if any."""
    if not opening.cancelled() and opening.exception() is None:
        opening.result().close()


def _key_range(key_prefix: str | None) -> tuple[str, tuple[str, ...]]:
    """The WHERE clause (on the agents_conversation index) for conversation keys starting with `key_prefix`."""
    if not key_prefix:
        return "", ()
    bound = key_prefix_bound(key_prefix)
    if bound is None:
        return "WHERE conversation_key >= ?", (key_prefix,)
    return "WHERE conversation_key >= ? AND conversation_key < ?", (key_prefix, bound)
