"""`copy_store` between the embedded store and MongoDB, both ways, verified by counts."""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.errors import StoreError
from bot.memory.migrate import MigratableStore, copy_store
from bot.memory.policy_store import AuditEntry, Policy
from bot.memory.store import (
    AgentRecord,
    AgentUpdate,
    CoreBlock,
    NewMessage,
    NewPassage,
    StoredToolCall,
)
from tests.contract.mongo_backend import open_mongo_store

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("bot.memory.sqlite") is None, reason="the SQLite store is not built yet"
)


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[MigratableStore]:
    from bot.memory.sqlite import SQLiteStore  # may not exist yet (see pytestmark)

    store = SQLiteStore(tmp_path / "membot.sqlite3")
    await store.open()
    yield store
    await store.close()


@pytest.fixture
async def mongo_store() -> AsyncIterator[MigratableStore]:
    async with open_mongo_store() as store:
        yield store


async def fill(store: MigratableStore) -> None:
    """Two agents; the first with a popped message (seqs continue), tool calls, embeddings of two models."""
    for n in (1, 2):
        agent = AgentRecord(
            id=f"agent.${n}",
            name=f"sam-{n}",
            conversation_key=f"discord:{n}",
            persona_template="sam",
            human_template="human",
            model="m",
            created_at=T0 + timedelta(minutes=n),
            updated_at=T0,
        )
        blocks = [
            CoreBlock(agent_id=agent.id, label=label, value=f"{label} {n}", limit=500, version=1, updated_at=T0)
            for label in ("persona", "human")
        ]
        await store.create_agent(agent, blocks)
    messages = [
        NewMessage(
            role="user", content=f"message {i}", created_at=T0 + timedelta(seconds=i), tokens=i, speaker_name="Ann"
        )
        for i in range(1, 8)
    ]
    await store.append_messages("agent.$1", messages)
    await store.delete_messages_from("agent.$1", 7)
    call = StoredToolCall(id="c1", name="core_memory_append", arguments='{"label": "human"}')
    await store.append_messages(
        "agent.$1", [NewMessage(role="assistant", content="", created_at=T0, tokens=2, tool_calls=(call,))]
    )
    await store.write_block(
        "agent.$1",
        "human",
        "likes tea",
        limit=500,
        expected_version=1,
        messages=[
            NewMessage(
                role="tool", content="ok", created_at=T0, tokens=1, tool_call_id="c1", tool_name="core_memory_append"
            )
        ],
    )
    await store.update_agent("agent.$1", AgentUpdate(summary="so far", context_start_seq=3), expected_version=1)
    await store.insert_passages(
        "agent.$1",
        [
            NewPassage(text="tea facts", created_at=T0, embedding=(1.0, 0.0, 0.0), embedding_model="small"),
            NewPassage(text="coffee facts", created_at=T0, embedding=(0.0, 1.0, 0.0), embedding_model="small"),
            NewPassage(text="not embedded", created_at=T0),
        ],
    )
    await store.append_messages("agent.$2", messages[:2])
    await store.set_policy(Policy(scope="discord:1", channel=None, mode="per_user", updated_at=T0, updated_by="ann"))
    await store.set_policy(
        Policy(scope="discord:1", channel="5", mode="per_channel", persona="sam", updated_at=T0, updated_by="ann")
    )
    await store.set_policy(Policy(scope="slack:T1", channel=None, mode="per_channel", updated_at=T0, updated_by="bo"))
    await store.add_joined_thread("discord:1", "77")
    await store.add_joined_thread("slack:T1", "C1:1700.1")
    for minute in (1, 2):
        await store.append_audit(
            AuditEntry(
                at=T0 + timedelta(minutes=minute),
                scope="discord:1",
                actor_id="ann",
                actor_name="Ann",
                action=f"reset-{minute}",
                agent_id="agent.$1",
            )
        )


async def assert_same(source: MigratableStore, target: MigratableStore) -> None:
    assert await target.list_agents() == await source.list_agents()
    for agent in await source.list_agents():
        assert [(b.label, b.value, b.version) for b in await target.get_blocks(agent.id)] == [
            (b.label, b.value, b.version) for b in await source.get_blocks(agent.id)
        ]
        assert await target.get_messages(agent.id) == await source.get_messages(agent.id)
        strip = [(p.text, p.created_at, p.embedding_model) for p in await source.list_passages(agent.id)]
        assert [(p.text, p.created_at, p.embedding_model) for p in await target.list_passages(agent.id)] == strip
        assert (await target.search_messages(agent.id, "message"))[1] == (
            await source.search_messages(agent.id, "message")
        )[1]
    assert await target.list_policy_scopes() == await source.list_policy_scopes() == ["discord:1", "slack:T1"]
    for scope in ("discord:1", "slack:T1"):
        assert await target.list_policies(scope) == await source.list_policies(scope)
    assert await target.list_joined_threads() == [("discord:1", "77"), ("slack:T1", "C1:1700.1")]
    assert [e.action for e in await target.list_audit()] == ["reset-2", "reset-1"]  # newest first, order kept


async def test_sqlite_to_mongodb(sqlite_store: MigratableStore, mongo_store: MigratableStore) -> None:
    await fill(sqlite_store)
    progress: list[tuple[int, int]] = []
    report = await copy_store(sqlite_store, mongo_store, on_progress=lambda done, total: progress.append((done, total)))
    assert progress == [(1, 2), (2, 2)]
    assert (report.policies, report.joined_threads, report.audit_entries) == (3, 2, 2)
    assert [(a.agent_id, a.blocks, a.messages, a.passages) for a in report.agents] == [
        ("agent.$1", 2, 8, 3),
        ("agent.$2", 2, 2, 0),
    ]
    await assert_same(sqlite_store, mongo_store)
    # Vectors travel too: only the passage that never had one still needs embedding.
    assert report.embeddings_not_copied == 0
    assert [a.embeddings for a in report.agents] == [2, 0]
    assert [p.text for p in await mongo_store.passages_without_embedding("agent.$1", "small", limit=10)] == [
        "not embedded"
    ]
    found, _total = await mongo_store.search_passages_vector("agent.$1", (1.0, 0.0, 0.0), embedding_model="small")
    assert found[0].text == "tea facts"


async def test_mongodb_to_sqlite_keeps_embeddings(sqlite_store: MigratableStore, mongo_store: MigratableStore) -> None:
    await fill(mongo_store)
    report = await copy_store(mongo_store, sqlite_store)
    assert report.embeddings_not_copied == 0
    assert [a.embeddings for a in report.agents] == [2, 0]
    await assert_same(mongo_store, sqlite_store)
    found, total = await sqlite_store.search_passages_vector("agent.$1", [0.9, 0.1, 0.0], embedding_model="small")
    assert (total, [p.text for p in found]) == (2, ["tea facts", "coffee facts"])


async def test_a_target_with_one_of_the_agents_is_refused_untouched(
    sqlite_store: MigratableStore, mongo_store: MigratableStore
) -> None:
    await fill(sqlite_store)
    await mongo_store.create_agent((await sqlite_store.list_agents())[1], [])
    with pytest.raises(StoreError, match=r"already has agent\(s\) 'agent\.\$2'"):
        await copy_store(sqlite_store, mongo_store)
    assert [a.id for a in await mongo_store.list_agents()] == ["agent.$2"]


def test_membot_migrate_command_both_ways(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`membot migrate` end to end: sqlite -> mongodb -> sqlite, counts printed and verified."""
    import asyncio
    import uuid

    from bot.cli import main
    from bot.memory.sqlite import SQLiteStore
    from tests.contract.mongo_backend import shared_uri

    source = tmp_path / "source.sqlite3"

    async def seed() -> None:
        store = SQLiteStore(source)
        await store.open()
        try:
            await fill(store)
        finally:
            await store.close()

    asyncio.run(seed())
    database = f"migrate_{uuid.uuid4().hex[:8]}"
    uri = shared_uri()
    monkeypatch.chdir(tmp_path)
    assert main(["migrate", "--from", f"sqlite:{source}", "--to", uri, "--database", database]) == 0
    assert "Copied 2 agents: 10 messages and 3 passages, counts verified." in capsys.readouterr().out
    back = tmp_path / "back.sqlite3"
    assert main(["migrate", "--from", uri, "--to", f"sqlite:{back}", "--database", database]) == 0
    assert "Copied 2 agents: 10 messages and 3 passages" in capsys.readouterr().out
    assert main(["migrate", "--from", f"sqlite:{tmp_path / 'missing.sqlite3'}", "--to", uri]) == 2
    assert "no such SQLite file" in capsys.readouterr().err
    assert main(["migrate", "--from", "postgres://x", "--to", uri]) == 2
    assert "name a store as sqlite:PATH or mongodb://" in capsys.readouterr().err
