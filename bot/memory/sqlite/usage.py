"""`SQLiteUsageStore`: the `UsageStore` half of `SQLiteStore` (token usage and daily budgets).

The tables are in `schema` (schema version 6). As in `policy`, each method is one
synchronous function run on the store's worker thread by `_run`, which `SQLiteStore` provides.

- Usage: one row per (day, scope, channel, agent, user, model), '' standing for None in the key
  so the primary key makes `record_usage` one upsert adding to the counters. Days are ISO text
  (`2026-05-01`), which sorts and compares like the dates. A server's day is a seek on the
  primary key's prefix (day, scope); a user's day uses `usage_user (user_id, day)`.
- Budgets: one row per (key, day). `mark_budget_notified` is one conditional upsert, so of two
  replicas noticing at once only one sees a changed row.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Sequence
from datetime import date

from bot.memory.sqlite.runtime import Mode
from bot.memory.usage_store import GROUP_FIELDS, BudgetState, UsageGroup, UsageRecord

__all__ = ["SQLiteUsageStore"]

_log = logging.getLogger(__name__)

_KEY = "day, scope, channel, agent_id, user_id, model"
_COLUMNS = f"{_KEY}, prompt_tokens, completion_tokens, calls"


def _record_from_row(row: sqlite3.Row) -> UsageRecord | None:
    try:
        return UsageRecord(
            day=date.fromisoformat(row["day"]),
            scope=row["scope"] or None,
            channel=row["channel"] or None,
            agent_id=str(row["agent_id"]),
            user_id=row["user_id"] or None,
            model=str(row["model"]),
            prompt_tokens=int(row["prompt_tokens"]),
            completion_tokens=int(row["completion_tokens"]),
            calls=int(row["calls"]),
        )
    except (TypeError, ValueError) as exc:
        _log.warning("usage row of %r: skipping an unreadable row (%s)", row["day"], exc)
        return None


def _filters(since: date, until: date | None, scope: str | None, user_id: str | None) -> tuple[str, list[object]]:
    """The WHERE clause of a report: days from `since` to `until`, of one server and/or one user."""
    where = ["day >= ?"]
    params: list[object] = [since.isoformat()]
    for clause, value in (
        ("day <= ?", until.isoformat() if until else None),
        ("scope = ?", scope),
        ("user_id = ?", user_id),
    ):
        if value is not None:
            where.append(clause)
            params.append(value)
    return " AND ".join(where), params


class SQLiteUsageStore:
    """`UsageStore` on the SQLite file of `SQLiteStore`, which supplies `_run`."""

    async def _run[T](self, mode: Mode, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work` on the store's worker thread, alone on the connection, inside a transaction of `mode`."""
        raise NotImplementedError

    async def record_usage(self, record: UsageRecord) -> None:
        key = (
            record.day.isoformat(), record.scope or "", record.channel or "", record.agent_id,
            record.user_id or "", record.model,
        )  # fmt: skip

        def add(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"INSERT INTO usage ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?) "
                f"ON CONFLICT ({_KEY}) DO UPDATE SET "
                "prompt_tokens = prompt_tokens + excluded.prompt_tokens, "
                "completion_tokens = completion_tokens + excluded.completion_tokens, "
                "calls = calls + excluded.calls",
                (*key, record.prompt_tokens, record.completion_tokens, record.calls),
            )

        await self._run("write", add)

    async def list_usage(
        self, *, since: date, until: date | None = None, scope: str | None = None, user_id: str | None = None
    ) -> list[UsageRecord]:
        where, params = _filters(since, until, scope, user_id)
        sql = f"SELECT {_COLUMNS} FROM usage WHERE {where} ORDER BY {_KEY}"

        def read(conn: sqlite3.Connection) -> list[UsageRecord]:
            rows = conn.execute(sql, params).fetchall()
            return [record for row in rows if (record := _record_from_row(row)) is not None]

        return await self._run("autocommit", read)

    async def sum_usage(
        self,
        *,
        since: date,
        until: date | None = None,
        scope: str | None = None,
        user_id: str | None = None,
        agent_ids: Sequence[str] | None = None,
        by: Sequence[UsageGroup],
    ) -> list[UsageRecord]:
        where, params = _filters(since, until, scope, user_id)
        if agent_ids is not None:
            where += f" AND agent_id IN ({','.join('?' * len(agent_ids))})"
            params += list(agent_ids)
        kept = [column for group, column in GROUP_FIELDS.items() if group in by]
        # What is not grouped reads back blank, as `summarise` leaves it (a sum over days: date.min).
        blank = {"day": f"'{date.min.isoformat()}'"}
        picked = ", ".join(
            column if column in kept else f"{blank.get(column, "''")} AS {column}" for column in GROUP_FIELDS.values()
        )
        grouping = f"GROUP BY {', '.join(kept)} ORDER BY {', '.join(kept)}" if kept else "HAVING count(*) > 0"
        sql = (
            f"SELECT {picked}, sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens, "
            f"sum(calls) AS calls FROM usage WHERE {where} {grouping}"
        )

        def read(conn: sqlite3.Connection) -> list[UsageRecord]:
            return [
                record for row in conn.execute(sql, params).fetchall() if (record := _record_from_row(row)) is not None
            ]

        return await self._run("autocommit", read)

    async def tokens_spent(self, day: date, *, scope: str | None = None, user_id: str | None = None) -> int:
        if (scope is None) == (user_id is None):
            raise ValueError("tokens_spent: give exactly one of scope and user_id")
        column, value = ("scope", scope) if scope is not None else ("user_id", user_id)
        sql = f"SELECT sum(prompt_tokens + completion_tokens) FROM usage WHERE day = ? AND {column} = ?"

        def read(conn: sqlite3.Connection) -> int:
            row = conn.execute(sql, (day.isoformat(), value)).fetchone()
            return int(row[0] or 0)

        return await self._run("autocommit", read)

    async def delete_user_usage(self, user_id: str) -> int:
        def delete(conn: sqlite3.Connection) -> int:
            return conn.execute("DELETE FROM usage WHERE user_id = ?", (user_id,)).rowcount

        return await self._run("write", delete)

    async def budget_state(self, key: str, day: date) -> BudgetState:
        def read(conn: sqlite3.Connection) -> BudgetState:
            row = conn.execute(
                "SELECT reset_tokens, is_notified FROM budgets WHERE key = ? AND day = ?", (key, day.isoformat())
            ).fetchone()
            if row is None:
                return BudgetState()
            return BudgetState(reset_tokens=int(row[0]), is_notified=bool(row[1]))

        return await self._run("autocommit", read)

    async def mark_budget_notified(self, key: str, day: date) -> bool:
        def mark(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "INSERT INTO budgets (key, day, is_notified) VALUES (?, ?, 1) "
                "ON CONFLICT (key, day) DO UPDATE SET is_notified = 1 WHERE is_notified = 0",
                (key, day.isoformat()),
            )
            return cursor.rowcount > 0

        return await self._run("write", mark)

    async def reset_budget(self, key: str, day: date, *, reset_tokens: int) -> None:
        def reset(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO budgets (key, day, reset_tokens, is_notified) VALUES (?, ?, ?, 0) "
                "ON CONFLICT (key, day) DO UPDATE SET reset_tokens = excluded.reset_tokens, is_notified = 0",
                (key, day.isoformat(), reset_tokens),
            )

        await self._run("write", reset)
