"""`MongoPolicyStore`: the `PolicyStore` half of `MongoStore` (routing policies and the admin audit log).
Collections and indexes are in `schema`.

- Policies: one document per (scope, channel) under the unique `policies_by_key`; a server's own
  policy has `channel: null`, which a unique index holds like any other value (one per scope)
  and which sorts before every string (so `list_policies` is one index-ordered read). Every
  operation is one single-document command; `set_policy` is an upsert, and two first upserts
  of one key at once (one loses on the unique index) end with the later values stored.
- Audit: an entry is one insert, numbered first by a counter in `meta`, so entries with the same
  `at` read back newest inserted first. `delete_agent` does not touch the log: it outlives a
  reset of the agents it names.
"""

from __future__ import annotations

import contextlib
import logging
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any, get_args

from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from bot.errors import StoreError
from bot.memory.mongo import schema
from bot.memory.mongo.schema import AUDIT, JOINED_THREADS, META, POLICIES, to_us
from bot.memory.policy_store import AuditEntry, Policy, RoutingMode

__all__ = ["MongoPolicyStore"]

_log = logging.getLogger(__name__)

_MODES: frozenset[str] = frozenset(get_args(RoutingMode))
_NEWEST_FIRST = [("at_us", -1), ("num", -1)]


def _key(scope: str, channel: str | None) -> dict[str, Any]:
    """The filter of one policy (`channel: None` also matches a document without the field)."""
    return {"scope": scope, "channel": channel}


class MongoPolicyStore:
    """`PolicyStore` on the database of `MongoStore`, which supplies `_coll` and `_translate`."""

    def _coll(self, name: str) -> AsyncCollection[dict[str, Any]]:
        raise NotImplementedError

    def _translate(self, action: str) -> AbstractContextManager[None]:
        raise NotImplementedError

    # -- policies ---------------------------------------------------------------------------
    async def get_policy(self, scope: str, channel: str | None) -> Policy | None:
        with self._translate("get_policy"):
            doc = await self._coll(POLICIES).find_one(_key(scope, channel))
        return None if doc is None else schema.decode(POLICIES, doc, Policy)

    async def list_policies(self, scope: str) -> list[Policy]:
        with self._translate("list_policies"):
            docs = await self._coll(POLICIES).find({"scope": scope}).sort([("channel", 1)]).to_list()
        return [p for d in docs if (p := schema.decode(POLICIES, d, Policy)) is not None]

    async def list_policy_scopes(self) -> list[str]:
        with self._translate("list_policy_scopes"):
            scopes = await self._coll(POLICIES).distinct("scope")
        return sorted(str(s) for s in scopes)

    async def set_policy(self, policy: Policy) -> None:
        if policy.mode not in _MODES:
            raise StoreError(f"unknown routing mode {policy.mode!r}")
        values = {
            "mode": policy.mode,
            "persona": policy.persona,
            "human": policy.human,
            "proactive_channel": policy.proactive_channel,
            "updated_at_us": to_us(policy.updated_at),
            "updated_by": policy.updated_by,
        }
        key = _key(policy.scope, policy.channel)  # an upsert copies both fields into the new document
        with self._translate("set_policy"):
            try:
                await self._coll(POLICIES).update_one(key, {"$set": values}, upsert=True)
            except DuplicateKeyError:  # two first sets at once: the document exists now
                await self._coll(POLICIES).update_one(key, {"$set": values})

    async def delete_policy(self, scope: str, channel: str | None) -> bool:
        with self._translate("delete_policy"):
            result = await self._coll(POLICIES).delete_one(_key(scope, channel))
        return result.deleted_count > 0

    # -- joined threads ---------------------------------------------------------------------
    async def add_joined_thread(self, scope: str, thread: str) -> None:
        key = {"scope": scope, "thread": thread}
        # Two first adds at once: one upsert loses on the unique index, and the thread is remembered anyway.
        with self._translate("add_joined_thread"), contextlib.suppress(DuplicateKeyError):
            await self._coll(JOINED_THREADS).update_one(
                key, {"$setOnInsert": {"joined_at_us": to_us(datetime.now(UTC))}}, upsert=True
            )

    async def has_joined_thread(self, scope: str, thread: str) -> bool:
        with self._translate("has_joined_thread"):
            found = await self._coll(JOINED_THREADS).find_one({"scope": scope, "thread": thread}, {"_id": 1})
        return found is not None

    async def list_joined_threads(self) -> list[tuple[str, str]]:
        with self._translate("list_joined_threads"):
            cursor = self._coll(JOINED_THREADS).find({}, {"_id": 0, "scope": 1, "thread": 1})
            docs = await cursor.sort([("scope", 1), ("thread", 1)]).to_list()
        return [(str(d["scope"]), str(d["thread"])) for d in docs if "scope" in d and "thread" in d]

    # -- audit ------------------------------------------------------------------------------
    async def append_audit(self, entry: AuditEntry) -> None:
        with self._translate("append_audit"):
            counter = await self._coll(META).find_one_and_update(
                {"_id": "audit"}, {"$inc": {"appended": 1}}, upsert=True, return_document=ReturnDocument.AFTER
            )
            await self._coll(AUDIT).insert_one(
                {
                    "num": int((counter or {}).get("appended", 0)),
                    "at_us": to_us(entry.at),
                    "scope": entry.scope,
                    "actor_id": entry.actor_id,
                    "actor_name": entry.actor_name,
                    "action": entry.action,
                    "agent_id": entry.agent_id,
                    "detail": entry.detail,
                }
            )

    async def list_audit(
        self, *, scope: str | None = None, agent_id: str | None = None, limit: int = 50
    ) -> list[AuditEntry]:
        if limit <= 0:  # limit(0) would mean no limit at all
            return []
        query = ({} if scope is None else {"scope": scope}) | ({} if agent_id is None else {"agent_id": agent_id})
        with self._translate("list_audit"):
            docs = await self._coll(AUDIT).find(query).sort(_NEWEST_FIRST).limit(limit).to_list()
        return [e for d in docs if (e := schema.decode(AUDIT, d, AuditEntry)) is not None]
