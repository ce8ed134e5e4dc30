"""The on-disk shape of `SQLiteStore`: DDL, migrations, the FTS5 query builder, row codecs.

Layout decisions (the "why" lives here, next to the DDL):

- Agents get a compact integer `num` (AUTOINCREMENT, so never reused) besides their opaque
  string id. Child tables key on `num`, which keeps indexes small and lets row ids carry it.
- A message's rowid is ``num << 34 | seq << 2 | role_code``. Each agent's messages are one
  contiguous rowid range in seq order, and FTS5 honours ``rowid BETWEEN lo AND hi`` (and
  ``ORDER BY rowid DESC``) by seeking inside its doclists: a recall search touches only that
  agent's matches, newest first. The role filter is ``rowid & 3``, arithmetic on the rowid
  FTS5 already returns, so no match is ever looked up in `messages` to be filtered. One
  range (not one per role) also means one FTS5 cursor, so bm25() computes its IDF once.
- A passage's rowid is ``num << 32 | n`` for the same reason (one range per agent).
- Both FTS5 tables are external-content tables over the real rows, kept in sync by triggers
  (which also fire on the ON DELETE CASCADE from `agents`), with the default `detail=full`:
  bm25() measured several times slower on `detail=column` tables.
- Times are INTEGER microseconds since the Unix epoch, UTC.
- Version 2 adds the runtime's coordination tables (`inbox`, `inbox_keys`, `leases`,
  `heartbeats`; see `runtime`). They key on the agent's string id with no foreign key
  to `agents`: an event may be stored for an agent that is being created or was just deleted,
  and `delete_agent` removes them explicitly. An entry's keys are a separate table so that one
  UNIQUE index refuses a key taken by any entry; they are also kept, in order, as JSON on the
  entry for reading back.
- Version 2 also holds the routing `policies` and the admin `audit` log (see `policy`).
  Neither refers to `agents`: the log must outlive the agents it names.
- Version 3 adds `agents.last_seq`, the highest message seq ever given to the agent. New
  messages continue from it, not from the highest seq still stored, so deleting the newest
  messages (a forgotten user, retention) never lets a seq be used twice: a reused seq below
  `context_start_seq` would hide the new message from the context. Only an explicit truncation
  (`delete_messages_from`: `/pop`, a recall reset) winds it back, as MongoDB's log does.
- Version 4 is for recall search. `messages.context` holds the text of the message before (the
  previous user or assistant message with text, cut to `CONTEXT_CHARS`), set on insert, and
  `messages_fts` indexes it as a third column weighted like the speaker: in a conversation the
  answer's words are often in the question it replies to. `message_embeddings` holds recall
  messages' vectors (one per message, unit float32, by model) for hybrid search; they go with
  their message (ON DELETE CASCADE).
- Version 5 adds `joined_threads`: the threads the bot was mentioned in (see `policy`).
- Version 6 adds LLM token `usage` per day, server, channel, agent, user and model, and the
  daily `budgets` state (see `usage`).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from bot.errors import SchemaVersionError, StoreError
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
from bot.memory.text_terms import CONTEXT_CHARS, STOP_WORDS

__all__ = [
    "INSERT_MESSAGE",
    "INSERT_PASSAGE",
    "MIGRATIONS",
    "ROLE_CODES",
    "SCHEMA_VERSION",
    "SEQ_BITS",
    "agent_from_row",
    "agent_to_row",
    "as_text",
    "block_from_row",
    "from_us",
    "match_expression",
    "message_from_row",
    "message_rowid",
    "message_rowid_range",
    "message_to_row",
    "opt_str",
    "passage_from_row",
    "passage_rowid_range",
    "passage_to_row",
    "prepare_schema",
    "to_us",
    "unit_vector_bytes",
    "vars_of",
]

_log = logging.getLogger(__name__)

#: Role bits at the bottom of a message rowid (two bits: four roles).
ROLE_CODES: dict[str, int] = {"system": 0, "user": 1, "assistant": 2, "tool": 3}
SEQ_BITS = 32
_LOW_MASK = (1 << SEQ_BITS) - 1

_TOKENIZER = "porter unicode61 remove_diacritics 2"

_SCHEMA_V1: tuple[str, ...] = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE agents (
        num INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL UNIQUE,
        conversation_key TEXT,
        persona_template TEXT NOT NULL,
        human_template TEXT NOT NULL,
        model TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        summary TEXT NOT NULL DEFAULT '',
        context_start_seq INTEGER NOT NULL DEFAULT 1,
        is_pressure_warned INTEGER NOT NULL DEFAULT 0,
        last_user_message_at INTEGER,
        is_paused INTEGER NOT NULL DEFAULT 0,
        heartbeats_paused_until INTEGER,
        version INTEGER NOT NULL DEFAULT 1
    )""",
    "CREATE INDEX agents_conversation ON agents (conversation_key)",
    "CREATE INDEX agents_created ON agents (created_at)",
    """CREATE TABLE core_blocks (
        agent_num INTEGER NOT NULL REFERENCES agents (num) ON DELETE CASCADE,
        label TEXT NOT NULL,
        value TEXT NOT NULL,
        "limit" INTEGER NOT NULL,
        version INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (agent_num, label)
    ) WITHOUT ROWID""",
    """CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        agent_num INTEGER NOT NULL REFERENCES agents (num) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        role TEXT NOT NULL,
        content TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        tokens INTEGER NOT NULL DEFAULT 0,
        speaker_id TEXT,
        speaker_name TEXT,
        platform_message_id TEXT,
        tool_calls TEXT,
        tool_call_id TEXT,
        tool_name TEXT
    )""",
    "CREATE UNIQUE INDEX messages_seq ON messages (agent_num, seq)",
    # Covers messages_between: range on created_at, order by (created_at, seq), role filter, count.
    "CREATE INDEX messages_time ON messages (agent_num, created_at, seq, role)",
    f"""CREATE VIRTUAL TABLE messages_fts USING fts5 (
        content, speaker_name, content='messages', content_rowid='id', tokenize='{_TOKENIZER}'
    )""",
    """CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
        INSERT INTO messages_fts (rowid, content, speaker_name) VALUES (new.id, new.content, new.speaker_name);
    END""",
    """CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
        INSERT INTO messages_fts (messages_fts, rowid, content, speaker_name)
        VALUES ('delete', old.id, old.content, old.speaker_name);
    END""",
    """CREATE TRIGGER messages_fts_update AFTER UPDATE OF id, content, speaker_name ON messages BEGIN
        INSERT INTO messages_fts (messages_fts, rowid, content, speaker_name)
        VALUES ('delete', old.id, old.content, old.speaker_name);
        INSERT INTO messages_fts (rowid, content, speaker_name) VALUES (new.id, new.content, new.speaker_name);
    END""",
    """CREATE TABLE passages (
        num INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        agent_num INTEGER NOT NULL REFERENCES agents (num) ON DELETE CASCADE,
        text TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        embedding BLOB,
        embedding_model TEXT,
        dims INTEGER
    )""",
    "CREATE INDEX passages_model ON passages (agent_num, embedding_model)",
    f"""CREATE VIRTUAL TABLE passages_fts USING fts5 (
        text, content='passages', content_rowid='num', tokenize='{_TOKENIZER}'
    )""",
    """CREATE TRIGGER passages_fts_insert AFTER INSERT ON passages BEGIN
        INSERT INTO passages_fts (rowid, text) VALUES (new.num, new.text);
    END""",
    """CREATE TRIGGER passages_fts_delete AFTER DELETE ON passages BEGIN
        INSERT INTO passages_fts (passages_fts, rowid, text) VALUES ('delete', old.num, old.text);
    END""",
    """CREATE TRIGGER passages_fts_update AFTER UPDATE OF num, text ON passages BEGIN
        INSERT INTO passages_fts (passages_fts, rowid, text) VALUES ('delete', old.num, old.text);
        INSERT INTO passages_fts (rowid, text) VALUES (new.num, new.text);
    END""",
)

_SCHEMA_V2: tuple[str, ...] = (
    # recorded_platform_ids. Most messages (the agent's own, function results) have no platform id.
    "CREATE INDEX messages_platform_id ON messages (agent_num, platform_message_id) "
    "WHERE platform_message_id IS NOT NULL",
    """CREATE TABLE inbox (
        num INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        agent_id TEXT NOT NULL,
        keys TEXT NOT NULL DEFAULT '[]',
        payload TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'failed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        replies TEXT NOT NULL DEFAULT '[]',
        error TEXT
    )""",
    # One agent's pending entries oldest first (ties by num, the implicit last column); delete_agent.
    "CREATE INDEX inbox_agent ON inbox (agent_id, status, received_at)",
    "CREATE INDEX inbox_pending ON inbox (received_at) WHERE status = 'pending'",
    "CREATE INDEX inbox_finished ON inbox (received_at) WHERE status <> 'pending'",
    """CREATE TABLE inbox_keys (
        key TEXT PRIMARY KEY,
        entry_num INTEGER NOT NULL REFERENCES inbox (num) ON DELETE CASCADE
    ) WITHOUT ROWID""",
    "CREATE INDEX inbox_keys_entry ON inbox_keys (entry_num)",
    """CREATE TABLE leases (
        agent_id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        token INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE heartbeats (
        agent_id TEXT PRIMARY KEY,
        due_at INTEGER,
        claimed_by TEXT,
        claimed_until INTEGER,
        last_fired_at INTEGER,
        scope TEXT,
        budget_day TEXT,
        tokens_spent INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID""",
    "CREATE INDEX heartbeats_due ON heartbeats (due_at) WHERE due_at IS NOT NULL",
    "CREATE INDEX heartbeats_scope_day ON heartbeats (scope, budget_day) WHERE scope IS NOT NULL",
    # A server's own policy has channel NULL. NULLs are distinct in a UNIQUE index, so policies_key
    # keeps one policy per channel and the partial policies_server one per server.
    """CREATE TABLE policies (
        scope TEXT NOT NULL,
        channel TEXT,
        mode TEXT NOT NULL CHECK (mode IN ('per_channel', 'per_user')),
        persona TEXT,
        human TEXT,
        proactive_channel TEXT,
        updated_at INTEGER NOT NULL,
        updated_by TEXT
    )""",
    # get/delete (channel matched with IS, which still seeks) and list_policies (NULL sorts first).
    "CREATE UNIQUE INDEX policies_key ON policies (scope, channel)",
    "CREATE UNIQUE INDEX policies_server ON policies (scope) WHERE channel IS NULL",
    """CREATE TABLE audit (
        num INTEGER PRIMARY KEY AUTOINCREMENT,
        at INTEGER NOT NULL,
        scope TEXT,
        actor_id TEXT NOT NULL,
        actor_name TEXT NOT NULL,
        action TEXT NOT NULL,
        agent_id TEXT,
        detail TEXT NOT NULL DEFAULT ''
    )""",
    # Newest first is each index scanned backwards: `at`, then the rowid (`num`), its implicit last column.
    "CREATE INDEX audit_scope ON audit (scope, at)",
    "CREATE INDEX audit_agent ON audit (agent_id, at)",
    "CREATE INDEX audit_time ON audit (at)",
)

_SCHEMA_V3: tuple[str, ...] = (
    "ALTER TABLE agents ADD COLUMN last_seq INTEGER NOT NULL DEFAULT 0",
    "UPDATE agents SET last_seq = coalesce((SELECT max(seq) FROM messages WHERE agent_num = agents.num), 0)",
)

_SEARCHED_ROLES = "('user', 'assistant')"

_SCHEMA_V4: tuple[str, ...] = (
    "ALTER TABLE messages ADD COLUMN context TEXT",
    "DROP TRIGGER messages_fts_insert",
    "DROP TRIGGER messages_fts_delete",
    "DROP TRIGGER messages_fts_update",
    "DROP TABLE messages_fts",
    # Each searched message's context: the previous searched message with text, of the same agent.
    f"""UPDATE messages SET context = previous.text FROM (
        SELECT id, substr(lag(content) OVER (PARTITION BY agent_num ORDER BY seq), 1, {CONTEXT_CHARS}) AS text
        FROM messages WHERE role IN {_SEARCHED_ROLES} AND content <> ''
    ) AS previous WHERE messages.id = previous.id""",
    f"""CREATE VIRTUAL TABLE messages_fts USING fts5 (
        content, speaker_name, context, content='messages', content_rowid='id', tokenize='{_TOKENIZER}'
    )""",
    """CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
        INSERT INTO messages_fts (rowid, content, speaker_name, context)
        VALUES (new.id, new.content, new.speaker_name, new.context);
    END""",
    """CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
        INSERT INTO messages_fts (messages_fts, rowid, content, speaker_name, context)
        VALUES ('delete', old.id, old.content, old.speaker_name, old.context);
    END""",
    """CREATE TRIGGER messages_fts_update AFTER UPDATE OF id, content, speaker_name, context ON messages BEGIN
        INSERT INTO messages_fts (messages_fts, rowid, content, speaker_name, context)
        VALUES ('delete', old.id, old.content, old.speaker_name, old.context);
        INSERT INTO messages_fts (rowid, content, speaker_name, context)
        VALUES (new.id, new.content, new.speaker_name, new.context);
    END""",
    "INSERT INTO messages_fts (messages_fts) VALUES ('rebuild')",
    """CREATE TABLE message_embeddings (
        id INTEGER PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
        agent_num INTEGER NOT NULL,
        embedding_model TEXT NOT NULL,
        embedding BLOB NOT NULL
    )""",
    "CREATE INDEX message_embeddings_model ON message_embeddings (agent_num, embedding_model, id)",
)

_SCHEMA_V5: tuple[str, ...] = (
    # Threads the bot was mentioned in (`PolicyStore.add_joined_thread`): it answers there
    # without a mention, across restarts. One row per thread; nothing refers to it.
    """CREATE TABLE joined_threads (
        scope TEXT NOT NULL,
        thread TEXT NOT NULL,
        joined_at INTEGER NOT NULL,
        PRIMARY KEY (scope, thread)
    ) WITHOUT ROWID""",
)

_SCHEMA_V6: tuple[str, ...] = (
    # LLM token usage (see `usage`): one row per UTC day, server, channel, agent, user and
    # model, its counters added to by each turn. '' stands for "none" in the key columns, so the
    # primary key (NULLs are distinct in it) makes each combination one row to upsert.
    """CREATE TABLE usage (
        day TEXT NOT NULL,
        scope TEXT NOT NULL,
        channel TEXT NOT NULL,
        agent_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        model TEXT NOT NULL,
        prompt_tokens INTEGER NOT NULL DEFAULT 0,
        completion_tokens INTEGER NOT NULL DEFAULT 0,
        calls INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (day, scope, channel, agent_id, user_id, model)
    ) WITHOUT ROWID""",
    # A user's spend of one day (per-user budgets); the primary key serves a server's and a report's.
    "CREATE INDEX usage_user ON usage (user_id, day)",
    # Daily budgets per server or user: tokens forgiven by an admin reset, and whether the
    # "budget reached" notice was sent (once per key and day, across replicas).
    """CREATE TABLE budgets (
        key TEXT NOT NULL,
        day TEXT NOT NULL,
        reset_tokens INTEGER NOT NULL DEFAULT 0,
        is_notified INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (key, day)
    ) WITHOUT ROWID""",
)

#: The version of this file's layout. SQLite's own: MongoDB versions its database separately
#: (`bot.memory.mongo.schema.SCHEMA_VERSION`), and neither store reads the other's number.
SCHEMA_VERSION = 6

#: Statements that take a database from version N (the key) to N + 1; 0 is an empty file.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    0: _SCHEMA_V1,
    1: _SCHEMA_V2,
    2: _SCHEMA_V3,
    3: _SCHEMA_V4,
    4: _SCHEMA_V5,
    5: _SCHEMA_V6,
}


def message_rowid_range(agent_num: int) -> tuple[int, int]:
    """The inclusive rowid range holding every message of one agent."""
    base = agent_num << (SEQ_BITS + 2)
    return base, base | (_LOW_MASK << 2) | 3


def message_rowid(agent_num: int, seq: int, role: str) -> int:
    return (agent_num << (SEQ_BITS + 2)) | (seq << 2) | ROLE_CODES[role]


def passage_rowid_range(agent_num: int) -> tuple[int, int]:
    """The inclusive rowid range holding every passage of one agent."""
    base = agent_num << SEQ_BITS
    return base, base | _LOW_MASK


def _found_version(conn: sqlite3.Connection, path: Path) -> int:
    """The schema version in the file: 0 for an empty database; reads only."""
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()}
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path} is not a SQLite database ({exc}); membot left it untouched") from exc
    if "meta" not in tables:
        if tables:
            raise StoreError(f"{path} is a SQLite database but not a membot store; membot left it untouched")
        return 0
    rows = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
    try:
        return int(rows[0][0])
    except (IndexError, TypeError, ValueError) as exc:
        raise StoreError(f"{path}: the meta table has no valid schema_version; membot left it untouched") from exc


def prepare_schema(conn: sqlite3.Connection, path: Path) -> None:
    """Check the file's schema version, then create or migrate it; refuse a newer one untouched.

    Synchronous: it runs on the store's worker thread, the only thread that uses `conn`.
    """
    found = _found_version(conn, path)
    if found > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{path}: store schema version {found} found, this membot understands {SCHEMA_VERSION}; upgrade membot"
        )
    # Only now may anything write to the file (WAL mode rewrites the header).
    conn.execute("PRAGMA journal_mode = WAL")
    if found == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = _found_version(conn, path)  # another process may have migrated meanwhile
        if found > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"{path}: store schema version {found} found, this membot understands {SCHEMA_VERSION}"
            )
        for version in range(found, SCHEMA_VERSION):
            if version not in MIGRATIONS:
                raise StoreError(f"{path}: no migration from schema version {version}; membot left it untouched")
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(SCHEMA_VERSION),),
        )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


# -- codecs between rows and records ---------------------------------------------------------
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
#: Dropped from queries (not from the index): the MongoDB store drops the same words.
_STOP_WORDS = STOP_WORDS
_MAX_QUERY_CHARS = 2_000
_MAX_QUERY_TERMS = 32


def to_us(value: datetime) -> int:
    """Microseconds since the epoch, UTC; a naive datetime is taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // _US


def from_us(value: object) -> datetime:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"expected epoch microseconds, found {type(value).__name__}")
    return _EPOCH + value * _US


def _is_token_char(char: str) -> bool:
    category = unicodedata.category(char)
    return category[0] in "LNM" or category == "Co"  # what unicode61 keeps inside a token


def match_expression(query: str) -> str | None:
    """An FTS5 MATCH string for free text: each word quoted, OR-ed; None when nothing is left.

    Splitting on what unicode61 treats as separators drops every FTS5 operator and
    punctuation mark; quoting turns AND/OR/NOT/NEAR into plain words.
    """
    terms: dict[str, str] = {}
    word: list[str] = []
    for char in unicodedata.normalize("NFC", query[:_MAX_QUERY_CHARS]) + " ":
        if _is_token_char(char):
            word.append(char)
            continue
        if word:
            term = "".join(word)
            word.clear()
            if term.lower() not in _STOP_WORDS:
                terms.setdefault(term.lower(), term)
    if not terms:
        return None
    return " OR ".join('"' + term.replace('"', '""') + '"' for term in list(terms.values())[:_MAX_QUERY_TERMS])


def opt_str(value: object) -> str | None:
    return None if value is None else as_text(value)


def as_text(value: object) -> str:
    """Text from whatever a hand edit left (a BLOB, a number, NULL)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return "" if value is None else str(value)


def _tool_calls_from_json(raw: object, where: str) -> tuple[StoredToolCall, ...]:
    if raw is None or raw == "":
        return ()
    try:
        items = json.loads(cast(str, raw))
        if not isinstance(items, list):
            raise ValueError("not a JSON list")
    except (TypeError, ValueError) as exc:
        _log.warning("%s: unreadable tool_calls (%s); reading it as no tool calls", where, exc)
        return ()
    calls: list[StoredToolCall] = []
    for item in items:
        if isinstance(item, dict) and all(isinstance(item.get(k), str) for k in ("id", "name", "arguments")):
            calls.append(StoredToolCall(id=item["id"], name=item["name"], arguments=item["arguments"]))
        else:
            _log.warning("%s: dropping a malformed tool call", where)
    return tuple(calls)


def message_from_row(agent_id: str, row: sqlite3.Row) -> StoredMessage | None:
    """The stored message, repaired where possible; None (with a warning) when it cannot be read."""
    where = f"message agent={agent_id!r} seq={row['seq']!r}"
    try:
        role = row["role"]
        if role not in ROLE_CODES:
            raise ValueError(f"unknown role {role!r}")
        content, tokens = row["content"], row["tokens"]
        if not isinstance(content, str):
            _log.warning("%s: content is %s, reading it as text", where, type(content).__name__)
            content = as_text(content)
        if not isinstance(tokens, int):
            _log.warning("%s: tokens is %s, reading it as 0", where, type(tokens).__name__)
            tokens = 0
        return StoredMessage(
            agent_id=agent_id,
            seq=int(row["seq"]),
            role=cast(MessageRole, role),
            content=content,
            created_at=from_us(row["created_at"]),
            tokens=tokens,
            speaker_id=opt_str(row["speaker_id"]),
            speaker_name=opt_str(row["speaker_name"]),
            platform_message_id=opt_str(row["platform_message_id"]),
            tool_calls=_tool_calls_from_json(row["tool_calls"], where),
            tool_call_id=opt_str(row["tool_call_id"]),
            tool_name=opt_str(row["tool_name"]),
            context=opt_str(row["context"]),
        )
    except (TypeError, ValueError, OverflowError) as exc:
        _log.warning("%s: skipping an unreadable row (%s)", where, exc)
        return None


INSERT_MESSAGE = (
    "INSERT INTO messages (id, agent_num, seq, role, content, created_at, tokens, speaker_id, speaker_name, "
    "platform_message_id, tool_calls, tool_call_id, tool_name, context) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)


def vars_of(record: object) -> dict[str, Any]:
    """A dataclass record's fields by name (slots dataclasses have no `__dict__`)."""
    return {f.name: getattr(record, f.name) for f in fields(record)}  # type: ignore[arg-type]


def message_to_row(agent_num: int, seq: int, m: NewMessage) -> tuple[object, ...]:
    """The `INSERT_MESSAGE` parameters of one new message (tool calls as a JSON list)."""
    if m.role not in ROLE_CODES:
        raise StoreError(f"unknown message role {m.role!r}")
    calls = [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in m.tool_calls]
    return (
        message_rowid(agent_num, seq, m.role), agent_num, seq, m.role, m.content, to_us(m.created_at), m.tokens,
        m.speaker_id, m.speaker_name, m.platform_message_id, json.dumps(calls, ensure_ascii=False) if calls else None,
        m.tool_call_id, m.tool_name, m.context,
    )  # fmt: skip


INSERT_PASSAGE = (
    "INSERT INTO passages (num, id, agent_num, text, created_at, embedding, embedding_model, dims) "
    "VALUES (?,?,?,?,?,?,?,?)"
)


def passage_to_row(agent_num: int, rowid: int, p: NewPassage) -> tuple[object, ...]:
    """The `INSERT_PASSAGE` parameters; an embedding without its model's name cannot be searched, so it is dropped."""
    has_vector = p.embedding is not None and bool(p.embedding_model)
    vector = unit_vector_bytes(p.embedding) if p.embedding is not None and has_vector else None
    dims = len(p.embedding) if p.embedding is not None and has_vector else None
    return (rowid, uuid.uuid4().hex, agent_num, p.text, to_us(p.created_at), vector, p.embedding_model, dims)


def passage_from_row(agent_id: str, row: sqlite3.Row, score: float | None) -> Passage | None:
    try:
        return Passage(
            id=as_text(row["id"]),
            agent_id=agent_id,
            text=as_text(row["text"]),
            created_at=from_us(row["created_at"]),
            embedding_model=opt_str(row["embedding_model"]),
            score=score,
        )
    except (TypeError, ValueError, OverflowError) as exc:
        _log.warning("passage %r of agent %r: skipping an unreadable row (%s)", row["id"], agent_id, exc)
        return None


def agent_to_row(agent: AgentRecord) -> dict[str, object]:
    """The `agents` columns of a record: one column per field, times in µs, flags as 0/1."""
    row: dict[str, object] = {}
    for f in fields(AgentRecord):
        value = getattr(agent, f.name)
        row[f.name] = to_us(value) if isinstance(value, datetime) else int(value) if isinstance(value, bool) else value
    return row


def agent_from_row(row: sqlite3.Row) -> AgentRecord | None:
    """The record, decoded by each field's declared type; None (with a warning) when unreadable."""
    values: dict[str, object] = {}
    try:
        for f in fields(AgentRecord):
            value, kind = row[f.name], str(f.type)
            if value is None and kind.endswith("| None"):
                values[f.name] = None
            elif kind.startswith("datetime"):
                values[f.name] = from_us(value)
            elif kind == "bool":
                values[f.name] = bool(value)
            elif kind == "int":
                values[f.name] = int(value)
            elif isinstance(value, str):
                values[f.name] = value
            elif f.name == "summary":
                _log.warning("agent row %r: summary is %s, reading it as empty", row["num"], type(value).__name__)
                values[f.name] = ""
            else:
                raise TypeError(f"{f.name} is {type(value).__name__}, not text")
        return AgentRecord(**values)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError) as exc:
        _log.warning("agent row %r: skipping an unreadable row (%s)", row["num"], exc)
        return None


def block_from_row(agent_id: str, row: sqlite3.Row) -> CoreBlock | None:
    try:
        value = row["value"]
        if not isinstance(value, str):
            _log.warning("block %r/%r: value is %s, reading it as text", agent_id, row["label"], type(value).__name__)
            value = as_text(value)
        return CoreBlock(
            agent_id=agent_id,
            label=str(row["label"]),
            value=value,
            limit=int(row["limit"]),
            version=int(row["version"]),
            updated_at=from_us(row["updated_at"]),
        )
    except (TypeError, ValueError, OverflowError) as exc:
        _log.warning("block %r/%r: skipping an unreadable row (%s)", agent_id, row["label"], exc)
        return None


def unit_vector_bytes(embedding: Sequence[float]) -> bytes:
    """float32 bytes of the unit vector (cosine similarity becomes a dot product)."""
    import numpy as np  # lazily: see SQLiteStore.search_passages_vector

    vector = np.asarray(embedding, dtype=np.float32)
    if vector.ndim != 1 or not np.all(np.isfinite(vector)):
        raise ValueError("an embedding must be a flat sequence of finite floats")
    norm = float(np.linalg.norm(vector))
    return (vector / norm if norm > 0 else vector).tobytes()
