"""`MongoUsageStore`: the `UsageStore` half of `MongoStore` (token usage and daily budgets).
Collections and indexes are in `schema`.

- Usage: one document per (day, scope, channel, agent_id, user_id, model) under the unique
  `usage_by_key`; None is stored as null, which the index holds like any value and which sorts
  before every string, so reports read in index order. `record_usage` is one upsert with `$inc`;
  two first upserts of one key at once (one loses on the unique index) retry as an update.
  Days are ISO text (`2026-05-01`), which sorts and compares like the dates.
- Budgets: one document per (key, day) under the unique `budgets_by_key`. `mark_budget_notified`
  upserts only where the notice is not yet set: the unique index makes a second notifier's
  upsert fail, so exactly one caller gets True.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import date
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from bot.memory.mongo.schema import BUDGETS, USAGE
from bot.memory.usage_store import GROUP_FIELDS, BudgetState, UsageGroup, UsageRecord

__all__ = ["MongoUsageStore"]

_log = logging.getLogger(__name__)

_ORDER = [("day", 1), ("scope", 1), ("channel", 1), ("agent_id", 1), ("user_id", 1), ("model", 1)]


def _record(doc: dict[str, Any]) -> UsageRecord | None:
    try:
        return UsageRecord(
            day=date.fromisoformat(doc["day"]),
            scope=_opt_str(doc.get("scope")),
            channel=_opt_str(doc.get("channel")),
            agent_id=str(doc["agent_id"]),
            user_id=_opt_str(doc.get("user_id")),
            model=str(doc["model"]),
            prompt_tokens=int(doc.get("prompt_tokens", 0)),
            completion_tokens=int(doc.get("completion_tokens", 0)),
            calls=int(doc.get("calls", 0)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        _log.warning("skipping a malformed usage document _id=%r (%s)", doc.get("_id"), type(exc).__name__)
        return None


def _opt_str(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"expected text, found {type(value).__name__}")
    return value


def _filters(since: date, until: date | None, scope: str | None, user_id: str | None) -> dict[str, Any]:
    """The query of a report: days from `since` to `until`, of one server and/or one user."""
    days: dict[str, str] = {"$gte": since.isoformat()}
    if until is not None:
        days["$lte"] = until.isoformat()
    query: dict[str, Any] = {"day": days}
    if scope is not None:
        query["scope"] = scope
    if user_id is not None:
        query["user_id"] = user_id
    return query


class MongoUsageStore:
    """`UsageStore` on the database of `MongoStore`, which supplies `_coll` and `_translate`."""

    def _coll(self, name: str) -> AsyncCollection[dict[str, Any]]:
        raise NotImplementedError

    def _translate(self, action: str) -> AbstractContextManager[None]:
        raise NotImplementedError

    async def record_usage(self, record: UsageRecord) -> None:
        key = {
            "day": record.day.isoformat(),
            "scope": record.scope,
            "channel": record.channel,
            "agent_id": record.agent_id,
            "user_id": record.user_id,
            "model": record.model,
        }
        add = {
            "$inc": {
                "prompt_tokens": record.prompt_tokens,
                "completion_tokens": record.completion_tokens,
                "calls": record.calls,
            }
        }
        with self._translate("record_usage"):
            try:
                await self._coll(USAGE).update_one(key, add, upsert=True)
            except DuplicateKeyError:  # two first records of one key at once: the document exists now
                await self._coll(USAGE).update_one(key, add)

    async def list_usage(
        self, *, since: date, until: date | None = None, scope: str | None = None, user_id: str | None = None
    ) -> list[UsageRecord]:
        with self._translate("list_usage"):
            docs = await self._coll(USAGE).find(_filters(since, until, scope, user_id)).sort(_ORDER).to_list()
        return [r for doc in docs if (r := _record(doc)) is not None]

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
        kept = [field for group, field in GROUP_FIELDS.items() if group in by]
        match = _filters(since, until, scope, user_id)
        if agent_ids is not None:
            match["agent_id"] = {"$in": list(agent_ids)}
        pipeline: list[dict[str, Any]] = [
            {"$match": match},
            {
                "$group": {
                    "_id": {field: f"${field}" for field in kept},
                    "prompt_tokens": {"$sum": "$prompt_tokens"},
                    "completion_tokens": {"$sum": "$completion_tokens"},
                    "calls": {"$sum": "$calls"},
                }
            },
        ]
        if kept:
            pipeline.append({"$sort": {f"_id.{field}": 1 for field in kept}})
        with self._translate("sum_usage"):
            docs = await (await self._coll(USAGE).aggregate(pipeline)).to_list()
        blank = {
            "day": date.min.isoformat(),
            "scope": None,
            "channel": None,
            "agent_id": "",
            "user_id": None,
            "model": "",
        }
        records = (_record({**blank, **doc["_id"], **{k: v for k, v in doc.items() if k != "_id"}}) for doc in docs)
        return [r for r in records if r is not None]

    async def tokens_spent(self, day: date, *, scope: str | None = None, user_id: str | None = None) -> int:
        if (scope is None) == (user_id is None):
            raise ValueError("tokens_spent: give exactly one of scope and user_id")
        match = {"day": day.isoformat()} | ({"scope": scope} if scope is not None else {"user_id": user_id})
        pipeline: list[dict[str, Any]] = [
            {"$match": match},
            {"$group": {"_id": None, "tokens": {"$sum": {"$add": ["$prompt_tokens", "$completion_tokens"]}}}},
        ]
        with self._translate("tokens_spent"):
            rows = await (await self._coll(USAGE).aggregate(pipeline)).to_list()
        return int(rows[0].get("tokens") or 0) if rows else 0

    async def delete_user_usage(self, user_id: str) -> int:
        with self._translate("delete_user_usage"):
            result = await self._coll(USAGE).delete_many({"user_id": user_id})
        return result.deleted_count

    async def budget_state(self, key: str, day: date) -> BudgetState:
        with self._translate("budget_state"):
            doc = await self._coll(BUDGETS).find_one({"key": key, "day": day.isoformat()})
        if doc is None:
            return BudgetState()
        return BudgetState(reset_tokens=int(doc.get("reset_tokens") or 0), is_notified=doc.get("is_notified") is True)

    async def mark_budget_notified(self, key: str, day: date) -> bool:
        with self._translate("mark_budget_notified"):
            try:
                result = await self._coll(BUDGETS).update_one(
                    {"key": key, "day": day.isoformat(), "is_notified": {"$ne": True}},
                    {"$set": {"is_notified": True}, "$setOnInsert": {"reset_tokens": 0}},
                    upsert=True,
                )
            except DuplicateKeyError:  # the document exists and is already marked
                return False
        return result.modified_count > 0 or result.upserted_id is not None

    async def reset_budget(self, key: str, day: date, *, reset_tokens: int) -> None:
        with self._translate("reset_budget"):
            await self._coll(BUDGETS).update_one(
                {"key": key, "day": day.isoformat()},
                {"$set": {"reset_tokens": reset_tokens, "is_notified": False}},
                upsert=True,
            )
