"""`SQLitePolicyStore`: the `PolicyStore` half of `SQLiteStore` (routing policies and the admin audit log).

The tables are in `schema` (schema version 2). As in `runtime`, each method is one
synchronous function run on the store's worker thread by `_run`, which `SQLiteStore` provides.

- Policies: a server's own policy is stored with channel NULL, so a channel is never confused
  with it whatever its id (even ''). NULLs are distinct in a UNIQUE index: `policies_key (scope,
  channel)` keeps one policy per channel, the partial `policies_server (scope) WHERE channel IS
  NULL` one per server, and `set_policy` is one upsert that conflicts with either. Lookups
  match the channel with `IS` (NULL IS NULL is true), which seeks in `policies_key` like `=`.
  NULL sorts first, so `ORDER BY channel` lists the server's own before its channels'.
- Audit: rows in insertion order (`num`, AUTOINCREMENT, never reused). Each index ends in `at`
  with the rowid implicitly after it, so "newest first, ties newest inserted first" is one
  backward index scan, with no sort. The log names agents by id without a foreign key, and
  `delete_agent` leaves it alone: it outlives the agents it mentions.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from typing import cast, get_args

from bot.errors import StoreError
from bot.memory.policy_store import AuditEntry, Policy, RoutingMode
from bot.memory.sqlite.runtime import Mode
from bot.memory.sqlite.schema import as_text, from_us, opt_str, to_us

__all__ = ["SQLitePolicyStore"]

_log = logging.getLogger(__name__)

_MODES: frozenset[str] = frozenset(get_args(RoutingMode))
_POLICY_COLUMNS = "scope, channel, mode, persona, human, proactive_channel, updated_at, updated_by"
_AUDIT_COLUMNS = "at, scope, actor_id, actor_name, action, agent_id, detail"


def _policy_from_row(row: sqlite3.Row) -> Policy | None:
    try:
        mode = row["mode"]
        if mode not in _MODES:
            raise ValueError(f"unknown routing mode {mode!r}")
        scope = row["scope"]
        if not isinstance(scope, str):
            raise TypeError(f"scope is {type(scope).__name__}, not text")
        return Policy(
            scope=scope,
            channel=opt_str(row["channel"]),
            mode=cast(RoutingMode, mode),
            persona=opt_str(row["persona"]),
            human=opt_str(row["human"]),
            proactive_channel=opt_str(row["proactive_channel"]),
            updated_at=from_us(row["updated_at"]),
            updated_by=opt_str(row["updated_by"]),
        )
    except (TypeError, ValueError, OverflowError) as exc:
        _log.warning("policy %r/%r: skipping an unreadable row (%s)", row["scope"], row["channel"], exc)
        return None


def _audit_from_row(row: sqlite3.Row) -> AuditEntry | None:
    try:
        return AuditEntry(
            at=from_us(row["at"]),
            scope=opt_str(row["scope"]),
            actor_id=as_text(row["actor_id"]),
            actor_name=as_text(row["actor_name"]),
            action=as_text(row["action"]),
            agent_id=opt_str(row["agent_id"]),
            detail=as_text(row["detail"]),
        )
    except (TypeError, ValueError, OverflowError) as exc:
        _log.warning("audit entry %r: skipping an unreadable row (%s)", row["num"], exc)
        return None


class SQLitePolicyStore:
    """`PolicyStore` on the SQLite file of `SQLiteStore`, which supplies `_run`."""

    async def _run[T](self, mode: Mode, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work` on the store's worker thread, alone on the connection, inside a transaction of `mode`."""
        raise NotImplementedError

    # -- policies ---------------------------------------------------------------------------
    async def get_policy(self, scope: str, channel: str | None) -> Policy | None:
        def read(conn: sqlite3.Connection) -> Policy | None:
            sql = f"SELECT {_POLICY_COLUMNS} FROM policies WHERE scope = ? AND channel IS ?"
            row = conn.execute(sql, (scope, channel)).fetchone()
            return None if row is None else _policy_from_row(row)

        return await self._run("autocommit", read)

    async def list_policies(self, scope: str) -> list[Policy]:
        def read(conn: sqlite3.Connection) -> list[Policy]:
            sql = f"SELECT {_POLICY_COLUMNS} FROM policies WHERE scope = ? ORDER BY channel"
            rows = conn.execute(sql, (scope,)).fetchall()
            return [policy for row in rows if (policy := _policy_from_row(row)) is not None]

        return await self._run("autocommit", read)

    async def list_policy_scopes(self) -> list[str]:
        def read(conn: sqlite3.Connection) -> list[str]:
            return [str(row[0]) for row in conn.execute("SELECT DISTINCT scope FROM policies ORDER BY scope")]

        return await self._run("autocommit", read)

    async def set_policy(self, policy: Policy) -> None:
        if policy.mode not in _MODES:
            raise StoreError(f"unknown routing mode {policy.mode!r}")

        def write(conn: sqlite3.Connection) -> None:
            # No conflict target: the row may clash on policies_key (a channel) or policies_server.
            conn.execute(
                f"INSERT INTO policies ({_POLICY_COLUMNS}) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT DO UPDATE SET "
                "mode = excluded.mode, persona = excluded.persona, human = excluded.human, "
                "proactive_channel = excluded.proactive_channel, "
                "updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                (
                    policy.scope, policy.channel, policy.mode, policy.persona, policy.human,
                    policy.proactive_channel, to_us(policy.updated_at), policy.updated_by,
                ),
            )  # fmt: skip

        await self._run("write", write)

    async def delete_policy(self, scope: str, channel: str | None) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            sql = "DELETE FROM policies WHERE scope = ? AND channel IS ?"
            return conn.execute(sql, (scope, channel)).rowcount > 0

        return await self._run("write", delete)

    # -- joined threads ---------------------------------------------------------------------
    async def add_joined_thread(self, scope: str, thread: str) -> None:
        def write(conn: sqlite3.Connection) -> None:
            sql = "INSERT INTO joined_threads (scope, thread, joined_at) VALUES (?,?,?) ON CONFLICT DO NOTHING"
            conn.execute(sql, (scope, thread, to_us(datetime.now(UTC))))

        await self._run("write", write)

    async def has_joined_thread(self, scope: str, thread: str) -> bool:
        def read(conn: sqlite3.Connection) -> bool:
            sql = "SELECT 1 FROM joined_threads WHERE scope = ? AND thread = ?"
            return conn.execute(sql, (scope, thread)).fetchone() is not None

        return await self._run("autocommit", read)

    async def list_joined_threads(self) -> list[tuple[str, str]]:
        def read(conn: sqlite3.Connection) -> list[tuple[str, str]]:
            rows = conn.execute("SELECT scope, thread FROM joined_threads ORDER BY scope, thread")
            return [(str(row[0]), str(row[1])) for row in rows]

        return await self._run("autocommit", read)

    # -- audit ------------------------------------------------------------------------------
    async def append_audit(self, entry: AuditEntry) -> None:
        def append(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"INSERT INTO audit ({_AUDIT_COLUMNS}) VALUES (?,?,?,?,?,?,?)",
                (
                    to_us(entry.at), entry.scope, entry.actor_id, entry.actor_name, entry.action,
                    entry.agent_id, entry.detail,
                ),
            )  # fmt: skip

        await self._run("write", append)

    async def list_audit(
        self, *, scope: str | None = None, agent_id: str | None = None, limit: int = 50
    ) -> list[AuditEntry]:
        if limit <= 0:
            return []
        filters = {"scope": scope, "agent_id": agent_id}
        where = " AND ".join(f"{column} = ?" for column, value in filters.items() if value is not None)
        params = [value for value in filters.values() if value is not None]
        sql = (
            f"SELECT num, {_AUDIT_COLUMNS} FROM audit {'WHERE ' + where if where else ''} "
            "ORDER BY at DESC, num DESC LIMIT ?"
        )

        def read(conn: sqlite3.Connection) -> list[AuditEntry]:
            rows = conn.execute(sql, (*params, limit)).fetchall()
            return [entry for row in rows if (entry := _audit_from_row(row)) is not None]

        return await self._run("autocommit", read)
