"""`MongoRuntimeStore`: the `RuntimeStore` half of `MongoStore` (inbox, leases, heartbeat schedule),
and how `MongoStore` fences memory writes. Collections and indexes are in `schema`.

Every operation here is one single-document atomic command, so none needs a transaction:

- Inbox: an entry and its keys are one document (`keys` under a unique multikey index), so
  `inbox_put` is one insert that stores the entry with every key or, when any key is taken,
  nothing. Arrival order (for ties in `received_at`) is a counter in `meta`.
- Leases: one document per agent that survives release (its expiry is set to the epoch), so the
  fencing token only grows while the agent exists. `lease_acquire` is one `findAndModify` that
  matches a lease that is ours or expired, upserting a first one; a concurrent first claim loses
  on the unique `_id` and gets None, as does a claim of a lease another holds. It returns the
  document as it was, from which the new token and `taken_over_from` follow.
- Schedule: one document per agent; `claim_due_heartbeats` claims one due document per
  `findAndModify`, earliest first, so replicas claiming at once get disjoint sets.

Fencing. `lease_acquire` copies a token it hands out into the agent document's `fence` ($max)
before returning it, so by the time a new holder can read or write, the fence stands. A memory
write under `WRITE_FENCE` for that agent is then refused (`LeaseLostError`) when `fence > token`:

- With transactions (replica sets): the check runs inside the write's transaction and is itself
  an update of the agent document (the append's allocation, `update_agent`, or `gate`), so a
  takeover that raises the fence meanwhile write-conflicts with it. Exact.
- Standalone: writes whose commit point is an update of the agent document carry `fence <= token`
  in that update's filter (appends, `update_agent`, truncation): exact as well. The others (a
  block's compare-and-set, `delete_blocks`, `set_passage_embedding`, and the block edit of a
  `write_block` with messages, after which the watermark must follow) check the fence with a read
  right before their one write. Residual window: a takeover landing between that read and that
  write lets one stale write through. A block write still needs the version it read, so it can
  never overwrite an edit the new holder made; it can only land before the new holder's first.
- If copying the fence fails, `lease_acquire` raises and the new holder does not run; its next
  claim (same owner, same token) copies it again (`fenced` in the lease records the last copy).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from bot.errors import LeaseLostError
from bot.memory.mongo import schema
from bot.memory.mongo.log import AgentLogs
from bot.memory.mongo.schema import AGENTS, HEARTBEATS, INBOX, LEASES, META, from_us, to_us
from bot.memory.runtime_store import WRITE_FENCE, DueHeartbeat, HeartbeatState, InboxEntry, InboxStatus, Lease

__all__ = ["MongoRuntimeStore", "fence_token"]

_log = logging.getLogger(__name__)

#: `expires_at_us` of a released lease: long past, so anyone may take it; the token stays.
_RELEASED_AT_US = 0
_FINISHED: list[InboxStatus] = ["done", "failed"]
_NO_CLAIM = {"claimed_by": None, "claimed_until_us": None}


def fence_token(agent_id: str) -> int | None:
    """The lease token the current turn writes `agent_id`'s memory under, if any."""
    fence = WRITE_FENCE.get()
    return fence.token if fence is not None and fence.agent_id == agent_id else None


def _utc_day(moment: datetime) -> str:
    return moment.astimezone(UTC).date().isoformat()


def _is_key_clash(error: DuplicateKeyError) -> bool:
    details = error.details or {}
    return "keys" in (details.get("keyPattern") or details.get("keyValue") or {})


class MongoRuntimeStore:
    """`RuntimeStore` on the database of `MongoStore`, which supplies the plumbing below."""

    def _coll(self, name: str) -> AsyncCollection[dict[str, Any]]:
        raise NotImplementedError

    def _translate(self, action: str) -> AbstractContextManager[None]:
        raise NotImplementedError

    @property
    def _logs(self) -> AgentLogs:
        raise NotImplementedError

    async def _delete_runtime_docs(self, agent_id: str) -> None:
        """Part of `delete_agent`: the agent's inbox entries (their keys are in them), lease and schedule."""
        await self._coll(INBOX).delete_many({"agent_id": agent_id})
        await self._coll(LEASES).delete_one({"_id": agent_id})
        await self._coll(HEARTBEATS).delete_one({"_id": agent_id})

    async def _lease_token(self, agent_id: str, session: AsyncClientSession | None = None) -> int:
        """The agent's current lease token (0 when never leased): `create_agent` starts its fence there."""
        doc = await self._coll(LEASES).find_one({"_id": agent_id}, {"token": 1}, session=session)
        token = None if doc is None else doc.get("token")
        return token if isinstance(token, int) else 0

    # -- inbox ----------------------------------------------------------------------------
    async def inbox_put(self, entry: InboxEntry) -> bool:
        keys = list(dict.fromkeys(entry.keys))
        with self._translate("inbox_put"):
            counter = await self._coll(META).find_one_and_update(
                {"_id": "inbox"}, {"$inc": {"received": 1}}, upsert=True, return_document=ReturnDocument.AFTER
            )
            doc = {
                "_id": entry.id,
                "num": int((counter or {}).get("received", 0)),
                "agent_id": entry.agent_id,
                "payload": entry.payload,
                "received_at_us": to_us(entry.received_at),
                "status": entry.status,
                "attempts": entry.attempts,
                "replies": list(entry.replies),
                "error": entry.error,
            } | ({"keys": keys} if keys else {})
            try:
                await self._coll(INBOX).insert_one(doc)
            except DuplicateKeyError as error:
                if _is_key_clash(error):
                    return False
                raise
        return True

    async def inbox_pending(self, *, agent_id: str | None = None, limit: int = 100) -> list[InboxEntry]:
        if limit <= 0:
            return []
        query = {"status": "pending"} | ({} if agent_id is None else {"agent_id": agent_id})
        with self._translate("inbox_pending"):
            cursor = self._coll(INBOX).find(query).sort([("received_at_us", 1), ("num", 1)]).limit(limit)
            docs = await cursor.to_list()
        return [e for d in docs if (e := schema.decode(INBOX, d, InboxEntry)) is not None]

    async def inbox_record_reply(self, entry_id: str, reply_id: str) -> None:
        with self._translate("inbox_record_reply"):
            await self._coll(INBOX).update_one({"_id": entry_id}, {"$push": {"replies": reply_id}})

    async def inbox_finish(self, entry_ids: Sequence[str], *, status: InboxStatus, error: str | None = None) -> None:
        if not entry_ids:
            return
        with self._translate("inbox_finish"):
            await self._coll(INBOX).update_many(
                {"_id": {"$in": list(entry_ids)}}, {"$set": {"status": status, "error": error}, "$inc": {"attempts": 1}}
            )

    async def inbox_prune(self, *, older_than: datetime) -> int:
        with self._translate("inbox_prune"):
            result = await self._coll(INBOX).delete_many(
                {"status": {"$in": _FINISHED}, "received_at_us": {"$lt": to_us(older_than)}}
            )
        return result.deleted_count

    # -- leases -----------------------------------------------------------------------------
    async def lease_acquire(self, agent_id: str, owner: str, *, now: datetime, expires_at: datetime) -> Lease | None:
        is_ours = {"$eq": ["$owner", {"$literal": owner}]}
        with self._translate("lease_acquire"):
            try:
                # Ours: the token stays. Expired (or new: no token yet): a new holder, token + 1.
                before = await self._coll(LEASES).find_one_and_update(
                    {"_id": agent_id, "$or": [{"owner": owner}, {"expires_at_us": {"$lte": to_us(now)}}]},
                    [
                        {
                            "$set": {
                                "token": {"$cond": [is_ours, "$token", {"$add": [{"$ifNull": ["$token", 0]}, 1]}]},
                                "owner": {"$literal": owner},
                                "expires_at_us": to_us(expires_at),
                            }
                        }
                    ],
                    upsert=True,
                    # The document as it was: None when this claim inserted the first lease (a
                    # miss with the `_id` taken is a DuplicateKeyError). The new token follows
                    # from it as the update computes it, and it names the previous holder.
                    return_document=ReturnDocument.BEFORE,
                )
            except DuplicateKeyError:
                return None  # another owner holds it (or claimed the first lease at the same moment)
            taken_over_from: str | None = None
            if before is None:
                token = 1
            elif before["owner"] == owner:
                token = int(before["token"])
            else:
                token = int(before.get("token") or 0) + 1
                if before.get("expires_at_us") != _RELEASED_AT_US:
                    taken_over_from = str(before["owner"])  # it expired unreleased: a takeover
            # The update leaves `fenced` alone, so the old document's is the current one.
            if before is None or before.get("fenced") != token:
                await self._raise_fence(agent_id, token)
        return Lease(
            agent_id=agent_id,
            owner=owner,
            token=token,
            expires_at=from_us(to_us(expires_at)),
            taken_over_from=taken_over_from,
        )

    async def _raise_fence(self, agent_id: str, token: int) -> None:
        """Copy a new token into the agent's fence, then note in the lease that it was copied."""
        copied = await self._coll(AGENTS).update_one({"_id": agent_id}, {"$max": {"fence": token}})
        if copied.matched_count == 1:
            await self._coll(LEASES).update_one({"_id": agent_id, "token": token}, {"$set": {"fenced": token}})

    async def lease_renew(self, lease: Lease, *, expires_at: datetime) -> Lease | None:
        with self._translate("lease_renew"):
            renewed = await self._coll(LEASES).update_one(
                {"_id": lease.agent_id, "owner": lease.owner, "token": lease.token},
                {"$set": {"expires_at_us": to_us(expires_at)}},
            )
        if renewed.matched_count != 1:
            return None
        return Lease(
            agent_id=lease.agent_id, owner=lease.owner, token=lease.token, expires_at=from_us(to_us(expires_at))
        )

    async def lease_release(self, lease: Lease) -> None:
        with self._translate("lease_release"):
            await self._coll(LEASES).update_one(
                {"_id": lease.agent_id, "owner": lease.owner, "token": lease.token},
                {"$set": {"expires_at_us": _RELEASED_AT_US}},
            )

    async def lease_check(self, agent_id: str, token: int) -> None:
        with self._translate("lease_check"):
            current = await self._lease_token(agent_id)
        if current > token:
            raise LeaseLostError(f"agent {agent_id!r}: lease token {token} is stale; the current one is {current}")

    # -- schedule ---------------------------------------------------------------------------
    async def schedule_heartbeat(self, agent_id: str, *, due_at: datetime, scope: str | None = None) -> None:
        fields: dict[str, Any] = {"due_at_us": to_us(due_at), **_NO_CLAIM}
        if scope is not None:
            fields["scope"] = scope
        on_insert: dict[str, Any] = {"last_fired_at_us": None, "budget_day": None, "tokens_spent": 0}
        if scope is None:
            on_insert["scope"] = None
        update = {"$set": fields, "$setOnInsert": on_insert}
        with self._translate("schedule_heartbeat"):
            try:
                await self._coll(HEARTBEATS).update_one({"_id": agent_id}, update, upsert=True)
            except DuplicateKeyError:  # two first schedules at once: the document exists now
                await self._coll(HEARTBEATS).update_one({"_id": agent_id}, {"$set": update["$set"]})

    async def cancel_heartbeat(self, agent_id: str) -> None:
        with self._translate("cancel_heartbeat"):
            await self._coll(HEARTBEATS).update_one({"_id": agent_id}, {"$set": {"due_at_us": None, **_NO_CLAIM}})

    async def heartbeat_state(self, agent_id: str) -> HeartbeatState | None:
        with self._translate("heartbeat_state"):
            doc = await self._coll(HEARTBEATS).find_one({"_id": agent_id})
        return None if doc is None else schema.decode(HEARTBEATS, doc, HeartbeatState)

    async def reflection_tokens_spent(self, scope: str, *, day: str) -> int:
        pipeline: list[dict[str, Any]] = [
            {"$match": {"scope": scope, "budget_day": day}},
            {"$group": {"_id": None, "tokens": {"$sum": "$tokens_spent"}}},
        ]
        with self._translate("reflection_tokens_spent"):
            async for row in await self._coll(HEARTBEATS).aggregate(pipeline):
                return int(row["tokens"])
        return 0

    async def claim_due_heartbeats(
        self, owner: str, *, now: datetime, claim_until: datetime, limit: int
    ) -> list[DueHeartbeat]:
        now_us = to_us(now)
        claimed: list[DueHeartbeat] = []
        with self._translate("claim_due_heartbeats"):
            while len(claimed) < limit:
                doc = await self._coll(HEARTBEATS).find_one_and_update(
                    {
                        # `$ne: None` is for test servers that order null below numbers; MongoDB does not.
                        "due_at_us": {"$ne": None, "$lte": now_us},
                        "$or": [{"claimed_until_us": None}, {"claimed_until_us": {"$lte": now_us}}],
                        # A claim that is already over (claim_until <= now) must not be taken twice.
                        "_id": {"$nin": [d.agent_id for d in claimed]},
                    },
                    {"$set": {"claimed_by": owner, "claimed_until_us": to_us(claim_until)}},
                    sort=[("due_at_us", 1), ("_id", 1)],
                    projection={"due_at_us": 1},
                    return_document=ReturnDocument.AFTER,
                )
                if doc is None:
                    break
                claimed.append(DueHeartbeat(agent_id=doc["_id"], due_at=from_us(doc["due_at_us"]), claimed_by=owner))
        return claimed

    async def finish_heartbeat(self, heartbeat: DueHeartbeat, *, fired_at: datetime, tokens: int) -> None:
        # Every expression reads the document as it was. A due time that moved since the claim is
        # a reschedule: it stays, and so does any claim on it (the reschedule dropped ours).
        is_unmoved = {"$eq": ["$due_at_us", to_us(heartbeat.due_at)]}
        day = _utc_day(fired_at)

        def unless_moved(field: str) -> dict[str, Any]:
            return {"$cond": [is_unmoved, None, f"${field}"]}

        stage = {
            "due_at_us": unless_moved("due_at_us"),
            "claimed_by": unless_moved("claimed_by"),
            "claimed_until_us": unless_moved("claimed_until_us"),
            "last_fired_at_us": to_us(fired_at),
            "tokens_spent": {
                "$cond": [{"$eq": ["$budget_day", day]}, {"$add": [{"$ifNull": ["$tokens_spent", 0]}, tokens]}, tokens]
            },
            "budget_day": day,
        }
        with self._translate("finish_heartbeat"):
            await self._coll(HEARTBEATS).update_one({"_id": heartbeat.agent_id}, [{"$set": stage}])
