"""The SQLite store's version 4 (recall search: each message's context, message embeddings) applied
to a version 3 file: existing messages gain their context and are found by it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from bot.memory.sqlite import SQLiteStore
from bot.memory.sqlite import schema as sqlite_schema


def make_version_3(path: Path) -> None:
    with sqlite3.connect(path, isolation_level=None) as db:
        for version in range(3):
            for statement in sqlite_schema.MIGRATIONS[version]:
                db.execute(statement)
        db.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '3')")
        db.execute(
            "INSERT INTO agents (id, name, persona_template, human_template, model, created_at, updated_at, last_seq) "
            "VALUES ('agent-1', 'old', 'sam', 'basic', 'm', 0, 0, 5)"
        )
        rows = [
            (1, "user", "where is the lake"),
            (2, "assistant", ""),  # an empty thought: never a context
            (3, "tool", "a function result"),  # not searched: never a context, has none
            (4, "user", "near the old mill"),
            (5, "assistant", "lovely spot"),
        ]
        for seq, role, content in rows:
            db.execute(
                "INSERT INTO messages (id, agent_num, seq, role, content, created_at, tokens, speaker_name) "
                "VALUES (?, 1, ?, ?, ?, 0, 1, 'Alice')",
                (sqlite_schema.message_rowid(1, seq, role), seq, role, content),
            )
    db.close()


async def test_version_3_messages_gain_their_context_and_are_found_by_it(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    make_version_3(path)
    store = SQLiteStore(path)
    await store.open()
    try:
        messages = await store.get_messages("agent-1")
        assert [m.context for m in messages] == [None, None, None, "where is the lake", "near the old mill"]
        page, total = await store.search_messages("agent-1", "lake")
        assert ([m.seq for m in page], total) == ([1, 4], 2)
        await store.set_message_embeddings("agent-1", "m", [(5, [1.0, 0.0])])
        page, total = await store.search_messages_vector("agent-1", [1.0, 0.0], embedding_model="m")
        assert ([m.seq for m in page], total) == ([5], 1)
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (
            str(sqlite_schema.SCHEMA_VERSION),
        )
    db.close()
