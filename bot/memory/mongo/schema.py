"""The MongoDB layout of the memory store: collections, indexes, document shapes, migrations.

Collections (one database, `membot` by default)::

    meta      {_id: "schema", version, terms_version, updated_at}
    meta      {_id: "agents", created: n}   (creation order of agents)
    meta      {_id: "inbox", received: n}   (arrival order of inbox entries)
    meta      {_id: "audit", appended: n}   (insertion order of audit entries)
    agents    {_id: agent id, num: creation order, <AgentRecord fields>, counters: {...}, fence, fence_gate}
    blocks    {agent_id, label, value, limit, version, updated_at_us, pending?: {batch, first, last}}
    messages  {agent_id, seq, role, content, ..., context, terms, name_terms, context_terms, keys, length, batch,
               embedding?, embedding_model?}   (embedding: recall search by meaning)
    passages  {_id: passage id, agent_id, seq, text, embedding (BinData float32), embedding_model, ...}
    inbox     {_id: entry id, num, agent_id, keys?: [...], payload, received_at_us, status, attempts, replies, error}
    leases    {_id: agent id, owner, token, expires_at_us, fenced}
    heartbeats {_id: agent id, due_at_us, claimed_by, claimed_until_us, last_fired_at_us, scope, budget_day, tokens_spent}
    policies  {scope, channel (null: the server's own), mode, persona, human, updated_at_us, updated_by}
    audit     {num, at_us, scope, actor_id, actor_name, action, agent_id, detail}
    joined_threads {scope, thread, joined_at_us}   (threads the bot was mentioned in)
    usage     {day, scope, channel, agent_id, user_id, model, prompt_tokens, completion_tokens, calls}
    budgets   {key, day, reset_tokens, is_notified}   (daily token budgets per server or user)

Ids are only ever values (`_id`, `agent_id`), never field names, so `$` and `.` in an id are safe.
Times are int64 microseconds since the Unix epoch in `*_us` fields: BSON dates keep milliseconds
only, and the store must hand back exactly the datetime it was given.

`counters` in an agent document drive seq allocation and crash-safe appends (see `mongo.py`):
`<log>_allocated` is the last seq handed out, `<log>_committed` the last one readers may see,
`<log>_count`/`<log>_length` the document count and term count bm25 needs. `<log>` is
`messages` or `passages` (passages get a per-agent seq too: insertion order and the watermark).
`fence` mirrors the agent's lease token (`runtime` explains the fencing); `fence_gate`
counts fence checks made in transactions (a write, so it conflicts with a new holder's).

An inbox entry's keys sit in its own `keys` array under a unique multikey index: a single-document
insert is atomic with its index keys, so an entry is stored with all its keys or not at all. The
array is left out when an entry has no keys (the index is sparse, so keyless entries never clash).

A policy's key is (scope, channel) under a unique index. A unique index holds null like any value,
so it also allows one server policy (channel null) per scope; null sorts before every string, so
the index serves "the server's own first, then its channels by id". Audit entries sort newest
first with ties by `num` (the `meta` counter), newest inserted first; `delete_agent` leaves them.

`SCHEMA_VERSION` here is MongoDB's own (the SQLite file has its own in `sqlite_schema`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError
from pymongo import ASCENDING, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from bot.memory.policy_store import AuditEntry, Policy, RoutingMode
from bot.memory.runtime_store import HeartbeatState, InboxEntry, InboxStatus
from bot.memory.store import (
    AgentRecord,
    CoreBlock,
    MessageRole,
    NewMessage,
    NewPassage,
    Passage,
    StoredMessage,
    StoredToolCall,
)
from bot.memory.text_terms import CONTEXT_ROLES, TEXT_TERMS_VERSION, index_terms, message_contexts

__all__ = [
    "AGENTS",
    "AUDIT",
    "BLOCKS",
    "BUDGETS",
    "HEARTBEATS",
    "INBOX",
    "INDEXES",
    "LEASES",
    "MESSAGES",
    "META",
    "PASSAGES",
    "POLICIES",
    "SCHEMA_DOC_ID",
    "SCHEMA_VERSION",
    "USAGE",
    "IndexSpec",
    "LogKind",
    "agent_document",
    "decode",
    "from_us",
    "message_document",
    "migrate",
    "passage_document",
    "rebuild_counters",
    "text_fields",
    "to_us",
]

_log = logging.getLogger(__name__)

META, AGENTS, BLOCKS, MESSAGES, PASSAGES = "meta", "agents", "blocks", "messages", "passages"
INBOX, LEASES, HEARTBEATS = "inbox", "leases", "heartbeats"
POLICIES, AUDIT, JOINED_THREADS = "policies", "audit", "joined_threads"
USAGE, BUDGETS = "usage", "budgets"
SCHEMA_DOC_ID = "schema"
#: The version of this layout; `open()` refuses a database with a newer one. 2 added the runtime
#: collections (inbox, leases, heartbeats), the agent's `fence`, the platform-id index, and the
#: routing policies and admin audit log. 3 indexes each message with its context (the message
#: before it: `context_terms`) and adds recall messages' embeddings (`embedding`, `embedding_model`).
SCHEMA_VERSION = 3
LogKind = Literal["messages", "passages"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def to_us(moment: datetime) -> int:
    """Microseconds since the epoch; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _US


def from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


@dataclass(frozen=True, slots=True, kw_only=True)
class IndexSpec:
    """One index the store's queries need (the tests check each query against these)."""

    collection: str
    name: str
    keys: tuple[tuple[str, int], ...]
    is_unique: bool = False
    #: Leaves out documents without the first key field (keyless inbox entries).
    is_sparse: bool = False


INDEXES: tuple[IndexSpec, ...] = (
    IndexSpec(collection=AGENTS, name="agents_by_name", keys=(("name", ASCENDING),), is_unique=True),
    IndexSpec(collection=AGENTS, name="agents_by_conversation", keys=(("conversation_key", 1), ("num", 1))),
    IndexSpec(collection=AGENTS, name="agents_by_creation", keys=(("created_at_us", 1), ("num", 1))),
    IndexSpec(collection=BLOCKS, name="blocks_by_label", keys=(("agent_id", 1), ("label", 1)), is_unique=True),
    IndexSpec(collection=MESSAGES, name="messages_by_seq", keys=(("agent_id", 1), ("seq", 1)), is_unique=True),
    IndexSpec(collection=MESSAGES, name="messages_by_time", keys=(("agent_id", 1), ("created_at_us", 1), ("seq", 1))),
    # Multikey: one key per distinct term; `seq` last so the watermark bound stays in the index.
    IndexSpec(collection=MESSAGES, name="messages_by_term", keys=(("agent_id", 1), ("keys", 1), ("seq", 1))),
    # Recall messages embedded by one model (hybrid search), and those not yet embedded by it.
    IndexSpec(
        collection=MESSAGES, name="messages_by_model", keys=(("agent_id", 1), ("embedding_model", 1), ("seq", 1))
    ),
    IndexSpec(collection=PASSAGES, name="passages_by_seq", keys=(("agent_id", 1), ("seq", 1)), is_unique=True),
    IndexSpec(collection=PASSAGES, name="passages_by_term", keys=(("agent_id", 1), ("keys", 1), ("seq", 1))),
    IndexSpec(
        collection=PASSAGES, name="passages_by_model", keys=(("agent_id", 1), ("embedding_model", 1), ("seq", 1))
    ),
    # recorded_platform_ids: `seq` last so the watermark bound stays in the index.
    IndexSpec(
        collection=MESSAGES,
        name="messages_by_platform_id",
        keys=(("agent_id", 1), ("platform_message_id", 1), ("seq", 1)),
    ),
    IndexSpec(collection=INBOX, name="inbox_by_key", keys=(("keys", 1),), is_unique=True, is_sparse=True),
    IndexSpec(collection=INBOX, name="inbox_by_status", keys=(("status", 1), ("received_at_us", 1), ("num", 1))),
    IndexSpec(
        collection=INBOX,
        name="inbox_by_agent",
        keys=(("agent_id", 1), ("status", 1), ("received_at_us", 1), ("num", 1)),
    ),
    IndexSpec(collection=HEARTBEATS, name="heartbeats_by_due", keys=(("due_at_us", 1), ("_id", 1))),
    IndexSpec(collection=HEARTBEATS, name="heartbeats_by_scope_day", keys=(("scope", 1), ("budget_day", 1))),
    IndexSpec(collection=POLICIES, name="policies_by_key", keys=(("scope", 1), ("channel", 1)), is_unique=True),
    # list_audit, newest first: unfiltered, for one server, for one agent (and, by the server's, for both).
    IndexSpec(collection=AUDIT, name="audit_by_time", keys=(("at_us", -1), ("num", -1))),
    IndexSpec(collection=AUDIT, name="audit_by_scope", keys=(("scope", 1), ("at_us", -1), ("num", -1))),
    IndexSpec(collection=AUDIT, name="audit_by_agent", keys=(("agent_id", 1), ("at_us", -1), ("num", -1))),
    # add_joined_thread / has_joined_thread (a new collection: `open()` creates it, no migration).
    IndexSpec(
        collection=JOINED_THREADS, name="joined_threads_by_key", keys=(("scope", 1), ("thread", 1)), is_unique=True
    ),
    # Token usage (see `usage`; new collections: `open()` creates them, no migration). One
    # document per key, which also orders reports; a server's day is its prefix (day, scope).
    IndexSpec(
        collection=USAGE,
        name="usage_by_key",
        keys=(("day", 1), ("scope", 1), ("channel", 1), ("agent_id", 1), ("user_id", 1), ("model", 1)),
        is_unique=True,
    ),
    IndexSpec(collection=USAGE, name="usage_by_user", keys=(("user_id", 1), ("day", 1))),
    IndexSpec(collection=BUDGETS, name="budgets_by_key", keys=(("key", 1), ("day", 1)), is_unique=True),
)


# -- documents read back: validated, a bad one is skipped with a warning -------------------------


class _Doc(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class _AgentDoc(_Doc):
    id: str
    name: str
    conversation_key: str | None = None
    persona_template: str
    human_template: str
    model: str
    created_at_us: int
    updated_at_us: int
    summary: str = ""
    context_start_seq: int = 1
    is_pressure_warned: bool = False
    last_user_message_at_us: int | None = None
    is_paused: bool = False
    heartbeats_paused_until_us: int | None = None
    version: int = 1


class _BlockDoc(_Doc):
    agent_id: str
    label: str
    value: str
    limit: int
    version: int
    updated_at_us: int


class _ToolCallDoc(_Doc):
    id: str
    name: str
    arguments: str


class _MessageDoc(_Doc):
    agent_id: str
    seq: int
    role: MessageRole
    content: str
    created_at_us: int
    tokens: int
    speaker_id: str | None = None
    speaker_name: str | None = None
    platform_message_id: str | None = None
    tool_calls: list[_ToolCallDoc] = []
    tool_call_id: str | None = None
    tool_name: str | None = None
    context: str | None = None


class _PassageDoc(_Doc):
    id: str
    agent_id: str
    text: str
    created_at_us: int
    embedding_model: str | None = None


class _InboxDoc(_Doc):
    id: str
    keys: list[str] = []
    agent_id: str
    payload: str
    received_at_us: int
    status: InboxStatus
    attempts: int
    replies: list[str] = []
    error: str | None = None


class _HeartbeatDoc(_Doc):
    agent_id: str
    due_at_us: int | None = None
    last_fired_at_us: int | None = None
    scope: str | None = None
    budget_day: str | None = None
    tokens_spent: int = 0


class _PolicyDoc(_Doc):
    scope: str
    channel: str | None = None
    mode: RoutingMode
    persona: str | None = None
    human: str | None = None
    proactive_channel: str | None = None
    updated_at_us: int
    updated_by: str | None = None


class _AuditDoc(_Doc):
    at_us: int
    scope: str | None = None
    actor_id: str
    actor_name: str
    action: str
    agent_id: str | None = None
    detail: str = ""


_TIME_FIELDS = (
    "created_at",
    "updated_at",
    "last_user_message_at",
    "heartbeats_paused_until",
    "received_at",
    "due_at",
    "last_fired_at",
    "at",
)


def _times(values: dict[str, Any]) -> dict[str, Any]:
    """`*_us` ints back to datetimes, under the record's field names."""
    out = dict(values)
    for name in _TIME_FIELDS:
        if f"{name}_us" in out:
            us = out.pop(f"{name}_us")
            out[name] = None if us is None else from_us(us)
    return out


def _to_agent(doc: dict[str, Any]) -> AgentRecord:
    return AgentRecord(**_times(_AgentDoc.model_validate({**doc, "id": doc.get("_id")}).model_dump()))


def _to_block(doc: dict[str, Any]) -> CoreBlock:
    return CoreBlock(**_times(_BlockDoc.model_validate(doc).model_dump()))


def _to_message(doc: dict[str, Any]) -> StoredMessage:
    parsed = _MessageDoc.model_validate(doc)
    values = _times(parsed.model_dump(exclude={"tool_calls"}))
    calls = tuple(StoredToolCall(id=c.id, name=c.name, arguments=c.arguments) for c in parsed.tool_calls)
    return StoredMessage(**values, tool_calls=calls)


def _to_passage(doc: dict[str, Any]) -> Passage:
    score = doc.get("score")
    values = _times(_PassageDoc.model_validate({**doc, "id": doc.get("_id")}).model_dump())
    return Passage(**values, score=float(score) if isinstance(score, (int, float)) else None)


def _to_inbox_entry(doc: dict[str, Any]) -> InboxEntry:
    parsed = _InboxDoc.model_validate({**doc, "id": doc.get("_id")})
    values = _times(parsed.model_dump(exclude={"keys", "replies"}))
    return InboxEntry(**values, keys=tuple(parsed.keys), replies=tuple(parsed.replies))


def _to_heartbeat(doc: dict[str, Any]) -> HeartbeatState:
    return HeartbeatState(**_times(_HeartbeatDoc.model_validate({**doc, "agent_id": doc.get("_id")}).model_dump()))


def _to_policy(doc: dict[str, Any]) -> Policy:
    return Policy(**_times(_PolicyDoc.model_validate(doc).model_dump()))


def _to_audit_entry(doc: dict[str, Any]) -> AuditEntry:
    return AuditEntry(**_times(_AuditDoc.model_validate(doc).model_dump()))


_DECODERS: dict[str, Any] = {
    AGENTS: _to_agent,
    BLOCKS: _to_block,
    MESSAGES: _to_message,
    PASSAGES: _to_passage,
    INBOX: _to_inbox_entry,
    HEARTBEATS: _to_heartbeat,
    POLICIES: _to_policy,
    AUDIT: _to_audit_entry,
}


def decode[T](collection: str, doc: dict[str, Any], kind: type[T]) -> T | None:
    """The record in `doc`, or None with a warning when someone edited it into the wrong shape."""
    try:
        record = _DECODERS[collection](doc)
    except (ValidationError, TypeError, ValueError, OverflowError) as error:
        # Never log the content: the ids and the broken fields are enough to find it.
        fields = sorted({str(e["loc"][0]) for e in error.errors()} if isinstance(error, ValidationError) else set())
        _log.warning(
            "skipping a malformed %s document _id=%r agent_id=%r (bad fields: %s)",
            collection,
            doc.get("_id"),
            doc.get("agent_id"),
            ", ".join(fields) or type(error).__name__,
        )
        return None
    assert isinstance(record, kind)
    return record


# -- documents written ---------------------------------------------------------------------------


def agent_document(agent: AgentRecord) -> dict[str, Any]:
    doc: dict[str, Any] = {"_id": agent.id}
    for name in _AgentDoc.model_fields:
        if name == "id":
            continue
        base = name.removesuffix("_us")
        value = getattr(agent, base)
        doc[name] = (None if value is None else to_us(value)) if name.endswith("_us") else value
    doc["counters"] = {
        f"{log}_{c}": 0 for log in ("messages", "passages") for c in ("allocated", "committed", "count", "length")
    }
    doc["fence"] = 0
    return doc


def text_fields(text: str | None, name: str | None = None, context: str | None = None) -> dict[str, Any]:
    """The search fields of one document: its terms, the speaker's terms, the terms of its context
    (the message before, `text_terms.message_contexts`), the distinct keys, the length."""
    terms = index_terms(text)
    name_terms = index_terms(name)
    context_terms = index_terms(context)
    return {
        "terms": terms,
        "name_terms": name_terms,
        "context_terms": context_terms,
        "keys": sorted({*terms, *name_terms, *context_terms}),
        "length": len(terms) + len(name_terms) + len(context_terms),
        "terms_version": TEXT_TERMS_VERSION,
    }


def message_document(agent_id: str, m: NewMessage) -> dict[str, Any]:
    """A new message as stored, without its seq (the append assigns it)."""
    return {
        "agent_id": agent_id,
        "role": m.role,
        "content": m.content,
        "created_at_us": to_us(m.created_at),
        "tokens": m.tokens,
        "speaker_id": m.speaker_id,
        "speaker_name": m.speaker_name,
        "platform_message_id": m.platform_message_id,
        "tool_calls": [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in m.tool_calls],
        "tool_call_id": m.tool_call_id,
        "tool_name": m.tool_name,
        "context": m.context,
        **text_fields(m.content, m.speaker_name, m.context),
    }


def passage_document(agent_id: str, passage_id: str, p: NewPassage, embedding: dict[str, Any]) -> dict[str, Any]:
    """A new passage as stored, without its seq; `embedding` holds the encoded vector fields."""
    return {
        "_id": passage_id,
        "agent_id": agent_id,
        "text": p.text,
        "created_at_us": to_us(p.created_at),
        "embedding_model": p.embedding_model,
        **embedding,
        **text_fields(p.text),
    }


# -- migrations ----------------------------------------------------------------------------------


async def _reindex_text(db: AsyncDatabase[dict[str, Any]]) -> None:
    """Recompute the terms of documents indexed by an older tokenizer (or none: version 0).

    Messages are re-indexed all together, each agent's in seq order: a message's context is the
    message before it, stale or not."""
    batch: list[UpdateOne] = []
    previous: tuple[object, str | None] = (None, None)  # (agent id, its last searched text)
    projection = {"agent_id": 1, "role": 1, "content": 1, "speaker_name": 1, "context": 1}
    async for doc in db[MESSAGES].find({}, projection).sort([("agent_id", ASCENDING), ("seq", ASCENDING)]):
        text, name, role = doc.get("content"), doc.get("speaker_name"), doc.get("role")
        text = text if isinstance(text, str) else ""
        context = doc.get("context")
        if "context" not in doc:  # stored before version 3: the message before, by the same rule as new ones
            before = previous[1] if previous[0] == doc.get("agent_id") else None
            (context,) = message_contexts(before, [(role if isinstance(role, str) else "", text)])
        if role in CONTEXT_ROLES and text:
            previous = (doc.get("agent_id"), text)
        context = context if isinstance(context, str) else None
        fields = text_fields(text, name if isinstance(name, str) else None, context) | {"context": context}
        batch.append(UpdateOne({"_id": doc["_id"]}, {"$set": fields}))
        if len(batch) >= 1000:
            await db[MESSAGES].bulk_write(batch, ordered=False)
            batch = []
    if batch:
        await db[MESSAGES].bulk_write(batch, ordered=False)
        batch = []
    async for doc in db[PASSAGES].find({"terms_version": {"$ne": TEXT_TERMS_VERSION}}, {"text": 1}):
        text = doc.get("text")
        batch.append(UpdateOne({"_id": doc["_id"]}, {"$set": text_fields(text if isinstance(text, str) else None)}))
        if len(batch) >= 1000:
            await db[PASSAGES].bulk_write(batch, ordered=False)
            batch = []
    if batch:
        await db[PASSAGES].bulk_write(batch, ordered=False)


async def rebuild_counters(db: AsyncDatabase[dict[str, Any]], agent_id: str) -> dict[str, int]:
    """Derive an agent's counters from the documents it has, store and return them (a repair)."""
    counters: dict[str, int] = {}
    for log in ("messages", "passages"):
        stats = await (
            await db[log].aggregate(
                [
                    {"$match": {"agent_id": agent_id}},
                    {"$group": {"_id": None, "n": {"$sum": 1}, "last": {"$max": "$seq"}, "len": {"$sum": "$length"}}},
                ]
            )
        ).to_list()
        row = stats[0] if stats else {}
        last = row.get("last")
        last = last if isinstance(last, int) else 0
        counters |= {
            f"{log}_allocated": last,
            f"{log}_committed": last,
            f"{log}_count": int(row.get("n") or 0),
            f"{log}_length": int(row.get("len") or 0),
        }
    await db[AGENTS].update_one({"_id": agent_id}, {"$set": {"counters": counters}})
    return counters


async def _migrate_0_to_1(db: AsyncDatabase[dict[str, Any]]) -> None:
    """Version 0 (pre-release builds, or documents restored by hand): no terms, no counters."""
    await _reindex_text(db)
    async for agent in db[AGENTS].find({}, {"_id": 1}):
        await rebuild_counters(db, agent["_id"])


async def _migrate_1_to_2(db: AsyncDatabase[dict[str, Any]]) -> None:
    """Version 2: the runtime collections, the platform-id index, the policies and the audit log
    (`open()` creates every index of `INDEXES` before migrating), and a `fence` in every agent document."""
    await db[AGENTS].update_many({"fence": {"$exists": False}}, {"$set": {"fence": 0}})


async def _migrate_2_to_3(db: AsyncDatabase[dict[str, Any]]) -> None:
    """Version 3: every message's terms again, now with its context, and the counters' term counts
    (bm25's document lengths) to match; `open()` creates the message-embedding index."""
    await _reindex_text(db)
    async for agent in db[AGENTS].find({}, {"_id": 1}):
        await rebuild_counters(db, agent["_id"])


#: Migration from version N to N + 1, keyed by N; each must be safe to run again if interrupted.
MIGRATIONS = {0: _migrate_0_to_1, 1: _migrate_1_to_2, 2: _migrate_2_to_3}


async def migrate(db: AsyncDatabase[dict[str, Any]], *, from_version: int, to_version: int) -> None:
    for version in range(from_version, to_version):
        _log.info("migrating the MongoDB memory store from schema %d to %d", version, version + 1)
        await MIGRATIONS[version](db)
        await db[META].update_one({"_id": SCHEMA_DOC_ID}, {"$set": {"version": version + 1}}, upsert=True)
    if from_version == to_version:
        # Same schema, older tokenizer: only the terms need rebuilding.
        meta = await db[META].find_one({"_id": SCHEMA_DOC_ID})
        if meta is not None and meta.get("terms_version") != TEXT_TERMS_VERSION:
            _log.info("re-indexing search terms (tokenizer version %s)", TEXT_TERMS_VERSION)
            await _reindex_text(db)
    await db[META].update_one(
        {"_id": SCHEMA_DOC_ID}, {"$set": {"version": to_version, "terms_version": TEXT_TERMS_VERSION}}, upsert=True
    )
