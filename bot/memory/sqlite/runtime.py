"""`SQLiteRuntimeStore`: the `RuntimeStore` half of `SQLiteStore` (inbox, leases, heartbeat
schedule), and the fence check every memory write of `SQLiteStore` makes.

The tables are in `schema` (schema version 2). As in `store`, each method is one
synchronous function run on the store's worker thread by `_run`, which `SQLiteStore`
provides; writes run in BEGIN IMMEDIATE, so a read-then-write (the fence check and the write
it guards, a claim's select and update) holds the file's write lock throughout and no other
process can interleave.

- Inbox: an entry's keys go into `inbox_keys`, whose primary key refuses a key any entry
  holds. `inbox_put` looks for a taken key first and inserts nothing when it finds one.
- Leases: one row per agent that survives release (its expiry is set to the epoch), so the
  fencing token only ever grows while the agent exists. `lease_acquire` is one upsert,
  after a read of the previous holder in the same transaction (for `taken_over_from`).
- Fences: `_write_fenced` runs a memory write of an agent after `check_fence`, which compares
  the turn's `Fence` with the agent's lease token inside the write's transaction.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Literal, cast, get_args

from bot.errors import LeaseLostError
from bot.memory.runtime_store import WRITE_FENCE, DueHeartbeat, Fence, HeartbeatState, InboxEntry, InboxStatus, Lease
from bot.memory.sqlite.schema import from_us, opt_str, to_us

__all__ = ["Mode", "SQLiteRuntimeStore", "check_fence", "delete_runtime_rows"]

_log = logging.getLogger(__name__)

#: How `_run` wraps a call: no explicit transaction, a read transaction, or a write transaction.
type Mode = Literal["autocommit", "read", "write"]

_STATUSES: frozenset[str] = frozenset(get_args(InboxStatus))
_ENTRY_COLUMNS = "id, agent_id, keys, payload, received_at, status, attempts, replies, error"
#: `expires_at` of a released lease: long past, so anyone may take it; the row and its token stay.
_RELEASED_AT = 0


def check_fence(conn: sqlite3.Connection, agent_id: str, fence: Fence | None) -> None:
    """Inside a write transaction: raise `LeaseLostError` when `fence` is for this agent and the
    agent's lease has a newer token. No fence, a fence for another agent, or no lease: no check."""
    if fence is None or fence.agent_id != agent_id:
        return
    row = conn.execute("SELECT token FROM leases WHERE agent_id = ?", (agent_id,)).fetchone()
    if row is not None and int(row[0]) > fence.token:
        raise LeaseLostError(f"agent {agent_id!r}: write under lease token {fence.token}, the current one is {row[0]}")


def delete_runtime_rows(conn: sqlite3.Connection, agent_id: str) -> None:
    """Inside `delete_agent`'s transaction: the agent's inbox entries (their keys cascade), lease and schedule."""
    for table in ("inbox", "leases", "heartbeats"):
        conn.execute(f"DELETE FROM {table} WHERE agent_id = ?", (agent_id,))


def _strings(raw: object) -> tuple[str, ...]:
    items = json.loads(cast(str, raw))
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise ValueError("not a JSON list of strings")
    return tuple(items)


def _entry_from_row(row: sqlite3.Row) -> InboxEntry | None:
    try:
        status = row["status"]
        if status not in _STATUSES:
            raise ValueError(f"unknown status {status!r}")
        return InboxEntry(
            id=str(row["id"]),
            keys=_strings(row["keys"]),
            agent_id=str(row["agent_id"]),
            payload=str(row["payload"]),
            received_at=from_us(row["received_at"]),
            status=cast(InboxStatus, status),
            attempts=int(row["attempts"]),
            replies=_strings(row["replies"]),
            error=opt_str(row["error"]),
        )
    except (TypeError, ValueError, OverflowError) as exc:
        _log.warning("inbox entry %r: skipping an unreadable row (%s)", row["id"], exc)
        return None


def _opt_time(value: object) -> datetime | None:
    return None if value is None else from_us(value)


def _utc_day(moment: datetime) -> str:
    return moment.astimezone(UTC).date().isoformat()


class SQLiteRuntimeStore:
    """`RuntimeStore` on the SQLite file of `SQLiteStore`, which supplies `_run`."""

    async def _run[T](self, mode: Mode, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work` on the store's worker thread, alone on the connection, inside a transaction of `mode`."""
        raise NotImplementedError

    async def _write_fenced[T](self, agent_id: str, work: Callable[[sqlite3.Connection], T]) -> T:
        """A write of the agent's memory: `check_fence`, then `work`, in one write transaction."""
        fence = WRITE_FENCE.get()  # here, on the caller's task: the worker thread does not see its context

        def fenced(conn: sqlite3.Connection) -> T:
            check_fence(conn, agent_id, fence)
            return work(conn)

        return await self._run("write", fenced)

    # -- inbox ----------------------------------------------------------------------------
    async def inbox_put(self, entry: InboxEntry) -> bool:
        keys = list(dict.fromkeys(entry.keys))

        def put(conn: sqlite3.Connection) -> bool:
            marks = ",".join("?" * len(keys))
            if keys and conn.execute(f"SELECT 1 FROM inbox_keys WHERE key IN ({marks}) LIMIT 1", keys).fetchone():
                return False
            cursor = conn.execute(
                f"INSERT INTO inbox ({_ENTRY_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    entry.id, entry.agent_id, json.dumps(keys, ensure_ascii=False), entry.payload,
                    to_us(entry.received_at), entry.status, entry.attempts,
                    json.dumps(list(entry.replies), ensure_ascii=False), entry.error,
                ),
            )  # fmt: skip
            conn.executemany(
                "INSERT INTO inbox_keys (key, entry_num) VALUES (?, ?)", [(k, cursor.lastrowid) for k in keys]
            )
            return True

        return await self._run("write", put)

    async def inbox_pending(self, *, agent_id: str | None = None, limit: int = 100) -> list[InboxEntry]:
        of_agent = "" if agent_id is None else "agent_id = ? AND "
        sql = f"SELECT {_ENTRY_COLUMNS} FROM inbox WHERE {of_agent}status = 'pending' ORDER BY received_at, num LIMIT ?"
        params = (max(limit, 0),) if agent_id is None else (agent_id, max(limit, 0))

        def read(conn: sqlite3.Connection) -> list[InboxEntry]:
            rows = conn.execute(sql, params).fetchall()
            return [entry for row in rows if (entry := _entry_from_row(row)) is not None]

        return await self._run("autocommit", read)

    async def inbox_record_reply(self, entry_id: str, reply_id: str) -> None:
        def record(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE inbox SET replies = json_insert(replies, '$[#]', ?) WHERE id = ?", (reply_id, entry_id)
            )

        await self._run("write", record)

    async def inbox_finish(self, entry_ids: Sequence[str], *, status: InboxStatus, error: str | None = None) -> None:
        def finish(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE inbox SET status = ?, error = ?, attempts = attempts + 1 WHERE id = ?",
                [(status, error, entry_id) for entry_id in entry_ids],
            )

        await self._run("write", finish)

    async def inbox_prune(self, *, older_than: datetime) -> int:
        def prune(conn: sqlite3.Connection) -> int:  # keys go with their entries (ON DELETE CASCADE)
            sql = "DELETE FROM inbox WHERE status <> 'pending' AND received_at < ?"
            return conn.execute(sql, (to_us(older_than),)).rowcount

        return await self._run("write", prune)

    # -- leases -----------------------------------------------------------------------------
    async def lease_acquire(self, agent_id: str, owner: str, *, now: datetime, expires_at: datetime) -> Lease | None:
        def acquire(conn: sqlite3.Connection) -> Lease | None:
            # The previous holder, read under the same write lock as the upsert below.
            before = conn.execute("SELECT owner, expires_at FROM leases WHERE agent_id = ?", (agent_id,)).fetchone()
            # New row: token 1. Existing row: taken when ours (token kept) or expired (a new
            # holder: token + 1); otherwise the WHERE leaves it alone and nothing is returned.
            rows = conn.execute(
                "INSERT INTO leases (agent_id, owner, token, expires_at) VALUES (?, ?, 1, ?) "
                "ON CONFLICT (agent_id) DO UPDATE SET "
                "token = CASE WHEN leases.owner = excluded.owner THEN leases.token ELSE leases.token + 1 END, "
                "owner = excluded.owner, expires_at = excluded.expires_at "
                "WHERE leases.owner = excluded.owner OR leases.expires_at <= ? "
                "RETURNING token",
                (agent_id, owner, to_us(expires_at), to_us(now)),
            ).fetchall()
            if not rows:
                return None
            # Taken from another owner (so its lease had expired) that never released it.
            taken_over_from = (
                str(before[0]) if before is not None and before[0] != owner and before[1] != _RELEASED_AT else None
            )
            return Lease(
                agent_id=agent_id,
                owner=owner,
                token=int(rows[0][0]),
                expires_at=from_us(to_us(expires_at)),
                taken_over_from=taken_over_from,
            )

        return await self._run("write", acquire)

    async def lease_renew(self, lease: Lease, *, expires_at: datetime) -> Lease | None:
        def renew(conn: sqlite3.Connection) -> bool:
            sql = "UPDATE leases SET expires_at = ? WHERE agent_id = ? AND owner = ? AND token = ?"
            return conn.execute(sql, (to_us(expires_at), lease.agent_id, lease.owner, lease.token)).rowcount > 0

        if not await self._run("write", renew):
            return None
        return Lease(
            agent_id=lease.agent_id, owner=lease.owner, token=lease.token, expires_at=from_us(to_us(expires_at))
        )

    async def lease_release(self, lease: Lease) -> None:
        def release(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE leases SET expires_at = ? WHERE agent_id = ? AND owner = ? AND token = ?",
                (_RELEASED_AT, lease.agent_id, lease.owner, lease.token),
            )

        await self._run("write", release)

    async def lease_check(self, agent_id: str, token: int) -> None:
        await self._run("autocommit", lambda conn: check_fence(conn, agent_id, Fence(agent_id=agent_id, token=token)))

    # -- schedule ---------------------------------------------------------------------------
    async def schedule_heartbeat(self, agent_id: str, *, due_at: datetime, scope: str | None = None) -> None:
        def schedule(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO heartbeats (agent_id, due_at, scope) VALUES (?, ?, ?) ON CONFLICT (agent_id) DO UPDATE SET "
                "due_at = excluded.due_at, claimed_by = NULL, claimed_until = NULL, "
                "scope = coalesce(excluded.scope, heartbeats.scope)",
                (agent_id, to_us(due_at), scope),
            )

        await self._run("write", schedule)

    async def cancel_heartbeat(self, agent_id: str) -> None:
        def cancel(conn: sqlite3.Connection) -> None:
            sql = "UPDATE heartbeats SET due_at = NULL, claimed_by = NULL, claimed_until = NULL WHERE agent_id = ?"
            conn.execute(sql, (agent_id,))

        await self._run("write", cancel)

    async def heartbeat_state(self, agent_id: str) -> HeartbeatState | None:
        def read(conn: sqlite3.Connection) -> HeartbeatState | None:
            row = conn.execute(
                "SELECT due_at, last_fired_at, scope, budget_day, tokens_spent FROM heartbeats WHERE agent_id = ?",
                (agent_id,),
            ).fetchone()
            if row is None:
                return None
            return HeartbeatState(
                agent_id=agent_id,
                due_at=_opt_time(row["due_at"]),
                last_fired_at=_opt_time(row["last_fired_at"]),
                scope=opt_str(row["scope"]),
                budget_day=opt_str(row["budget_day"]),
                tokens_spent=int(row["tokens_spent"]),
            )

        return await self._run("autocommit", read)

    async def reflection_tokens_spent(self, scope: str, *, day: str) -> int:
        def read(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT coalesce(sum(tokens_spent), 0) FROM heartbeats WHERE scope = ? AND budget_day = ?", (scope, day)
            ).fetchone()
            return int(row[0])

        return await self._run("autocommit", read)

    async def claim_due_heartbeats(
        self, owner: str, *, now: datetime, claim_until: datetime, limit: int
    ) -> list[DueHeartbeat]:
        def claim(conn: sqlite3.Connection) -> list[DueHeartbeat]:
            rows = conn.execute(
                "SELECT agent_id, due_at FROM heartbeats WHERE due_at <= ? "
                "AND (claimed_until IS NULL OR claimed_until <= ?) ORDER BY due_at, agent_id LIMIT ?",
                (to_us(now), to_us(now), max(limit, 0)),
            ).fetchall()
            conn.executemany(
                "UPDATE heartbeats SET claimed_by = ?, claimed_until = ? WHERE agent_id = ?",
                [(owner, to_us(claim_until), row["agent_id"]) for row in rows],
            )
            return [DueHeartbeat(agent_id=r["agent_id"], due_at=from_us(r["due_at"]), claimed_by=owner) for r in rows]

        return await self._run("write", claim)

    async def finish_heartbeat(self, heartbeat: DueHeartbeat, *, fired_at: datetime, tokens: int) -> None:
        def finish(conn: sqlite3.Connection) -> None:
            # Right-hand sides read the row as it was. A due time that moved since the claim is a
            # reschedule: it stays, and so does any claim on it (the reschedule dropped ours).
            conn.execute(
                "UPDATE heartbeats SET "
                "due_at = CASE WHEN due_at = :due THEN NULL ELSE due_at END, "
                "claimed_by = CASE WHEN due_at = :due THEN NULL ELSE claimed_by END, "
                "claimed_until = CASE WHEN due_at = :due THEN NULL ELSE claimed_until END, "
                "last_fired_at = :fired, "
                "tokens_spent = CASE WHEN budget_day = :day THEN tokens_spent + :tokens ELSE :tokens END, "
                "budget_day = :day "
                "WHERE agent_id = :agent",
                {
                    "due": to_us(heartbeat.due_at), "fired": to_us(fired_at), "day": _utc_day(fired_at),
                    "tokens": tokens, "agent": heartbeat.agent_id,
                },
            )  # fmt: skip

        await self._run("write", finish)
