"""Seqs are never given twice: deleting an agent's newest messages (a forgotten user, retention)
must not let the next message take a seq that was used before, on every store.

A reused seq could fall below the agent's `context_start_seq` and hide the new message from
its context; only an explicit truncation (`delete_messages_from`) winds the sequence back.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from bot.errors import NotFoundError
from bot.memory.sqlite import SQLiteStore
from bot.memory.sqlite import schema as sqlite_schema
from bot.memory.store import AgentUpdate, MemoryStore
from tests.contract.test_store_contract import T0, msg, new_agent, seqs


async def test_deleting_the_newest_messages_by_speaker_never_reuses_their_seqs(store: MemoryStore) -> None:
    await new_agent(store)
    stored = await store.append_messages(
        "agent-1",
        [
            msg("hello there", speaker="Bob", speaker_id="u-bob"),
            msg("hi bob", role="assistant"),
            msg("forget me soon", speaker="Alice", speaker_id="u-alice"),
            msg("and this too", speaker="Alice", speaker_id="u-alice"),
        ],
    )
    highest_ever = max(seqs(stored))
    assert await store.delete_messages_by_speaker("agent-1", "u-alice") == 2

    after = await store.append_messages("agent-1", [msg("next one"), msg("and another")])

    assert min(seqs(after)) > highest_ever
    assert seqs(after) == [highest_ever + 1, highest_ever + 2]
    assert seqs(await store.get_messages("agent-1")) == [1, 2, *seqs(after)]


async def test_a_message_after_every_message_was_deleted_stays_in_the_context(store: MemoryStore) -> None:
    created = await new_agent(store)
    stored = await store.append_messages("agent-1", [msg(f"old {i}") for i in range(1, 6)])
    # Everything was summarised out of the context, then deleted (retention).
    agent = await store.update_agent(
        "agent-1", AgentUpdate(context_start_seq=stored[-1].seq + 1), expected_version=created.version
    )
    assert await store.delete_messages_before("agent-1", agent.context_start_seq) == 5
    assert await store.count_messages("agent-1") == 0

    (fresh,) = await store.append_messages("agent-1", [msg("a new day")])

    assert fresh.seq > stored[-1].seq
    assert [m.content for m in await store.get_messages("agent-1", from_seq=agent.context_start_seq)] == ["a new day"]


async def test_delete_messages_before_keeps_later_messages_and_their_seqs(store: MemoryStore) -> None:
    await new_agent(store)
    await new_agent(store, "agent-2")
    await store.append_messages("agent-1", [msg(f"walnut {i}") for i in range(1, 7)])
    await store.append_messages("agent-2", [msg("walnut elsewhere")])

    assert await store.delete_messages_before("agent-1", 4) == 3

    kept = await store.get_messages("agent-1")
    assert [(m.seq, m.content) for m in kept] == [(4, "walnut 4"), (5, "walnut 5"), (6, "walnut 6")]
    assert await store.count_messages("agent-1") == 3
    page, total = await store.search_messages("agent-1", "walnut", limit=10)
    assert (sorted(seqs(page)), total) == ([4, 5, 6], 3)
    _, between = await store.messages_between("agent-1", T0, T0.replace(year=T0.year + 1))
    assert between == 3
    assert await store.count_messages("agent-2") == 1
    assert await store.delete_messages_before("agent-1", 4) == 0
    assert seqs(await store.append_messages("agent-1", [msg("after")])) == [7]


async def test_delete_messages_before_of_an_unknown_agent_raises(store: MemoryStore) -> None:
    with pytest.raises(NotFoundError):
        await store.delete_messages_before("nobody", 10)


async def test_a_truncation_still_lets_the_next_message_take_the_freed_seq(store: MemoryStore) -> None:
    # `/pop` and a recall reset truncate the log on purpose; the agent's context start follows them.
    await new_agent(store)
    await store.append_messages("agent-1", [msg(f"m{i}") for i in range(1, 6)])
    await store.delete_messages_by_speaker("agent-1", "nobody")
    assert await store.delete_messages_from("agent-1", 3) == 3
    assert seqs(await store.append_messages("agent-1", [msg("again")])) == [3]


# -- SQLite only: files written before the high-water mark -----------------------------------------


async def test_a_version_2_sqlite_file_gets_its_high_water_mark_from_the_stored_messages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "membot.sqlite3"
    with monkeypatch.context() as patch:
        patch.setattr(sqlite_schema, "SCHEMA_VERSION", 2)
        old = SQLiteStore(path)
        await old.open()
        try:
            await new_agent(old)
            await new_agent(old, "agent-2")
        finally:
            await old.close()
    with closing(sqlite3.connect(path)) as conn, conn:
        for seq in (1, 2, 3):  # as version 2 wrote them: agent-1 is agent number 1
            conn.execute(
                "INSERT INTO messages (id, agent_num, seq, role, content, created_at, tokens) "
                "VALUES (?, 1, ?, 'user', ?, ?, 1)",
                (sqlite_schema.message_rowid(1, seq, "user"), seq, f"m{seq}", sqlite_schema.to_us(T0)),
            )

    store = SQLiteStore(path)
    await store.open()
    try:
        assert seqs(await store.append_messages("agent-1", [msg("u", speaker_id="u-1")])) == [4]
        assert await store.delete_messages_by_speaker("agent-1", "u-1") == 1
        assert seqs(await store.append_messages("agent-1", [msg("next")])) == [5]
        assert seqs(await store.append_messages("agent-2", [msg("first")])) == [1]
    finally:
        await store.close()
    with closing(sqlite3.connect(path)) as conn:
        version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    assert version == (str(sqlite_schema.SCHEMA_VERSION),)
