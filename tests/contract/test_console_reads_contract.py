"""What the console reads from every store: agents by conversation-key prefix with their count,
and each agent's recall size and newest message without scanning recall."""

from __future__ import annotations

from datetime import timedelta

from bot.memory.store import MemoryStore, key_prefix_bound
from tests.contract.test_store_contract import T0, msg, new_agent

KEYS = [
    "discord:G1:channel:C1",
    "discord:G1:user:U1",
    "discord:G10:channel:C2",
    "discord:dm:U2",
    "slack:T1:channel:C3",
    "discord:G1;odd",
]


async def _agents(store: MemoryStore) -> None:
    for index, key in enumerate(KEYS):
        await new_agent(store, f"agent-{index}", key=key, at=T0 + timedelta(minutes=index))
    await new_agent(store, "unbound", at=T0 + timedelta(hours=1))


async def test_list_agents_by_key_prefix_pages_in_creation_order(store: MemoryStore) -> None:
    await _agents(store)
    server = await store.list_agents(key_prefix="discord:G1:")
    assert [a.id for a in server] == ["agent-0", "agent-1"]  # not G10, not "G1;odd"
    platform = await store.list_agents(key_prefix="discord:")
    assert [a.id for a in platform] == ["agent-0", "agent-1", "agent-2", "agent-3", "agent-5"]
    assert [a.id for a in await store.list_agents(key_prefix="discord:", offset=1, limit=2)] == ["agent-1", "agent-2"]
    assert len(await store.list_agents()) == len(KEYS) + 1
    assert await store.list_agents(key_prefix="telegram:") == []


async def test_count_agents_matches_what_list_agents_pages_through(store: MemoryStore) -> None:
    await _agents(store)
    assert await store.count_agents() == len(KEYS) + 1
    assert await store.count_agents(key_prefix="discord:G1:") == 2
    assert await store.count_agents(key_prefix="discord:") == 5
    assert await store.count_agents(key_prefix="slack:") == 1
    assert await store.count_agents(key_prefix="nowhere:") == 0


async def test_recall_stats_count_and_newest_message(store: MemoryStore) -> None:
    await new_agent(store, "busy")
    await new_agent(store, "quiet")
    await store.append_messages("busy", [msg(f"hello {i}", at=T0 + timedelta(minutes=i)) for i in range(5)])
    await store.append_messages("busy", [msg("late but older", at=T0 - timedelta(days=1))])
    stats = await store.recall_stats(["busy", "quiet", "ghost", "busy"])
    assert set(stats) == {"busy", "quiet"}
    assert stats["busy"].message_count == 6
    # The newest message is the last written (highest seq), whatever its timestamp says.
    assert stats["busy"].last_message_at == T0 - timedelta(days=1)
    assert stats["quiet"].message_count == 0
    assert stats["quiet"].last_message_at is None
    assert await store.recall_stats([]) == {}


async def test_recall_stats_follow_deletions(store: MemoryStore) -> None:
    await new_agent(store, "a")
    await store.append_messages(
        "a", [msg(f"m{i}", at=T0 + timedelta(minutes=i), speaker_id="U1" if i % 2 else "U2") for i in range(6)]
    )
    await store.delete_messages_by_speaker("a", "U1")
    await store.delete_messages_from("a", 5)
    stats = (await store.recall_stats(["a"]))["a"]
    assert stats.message_count == 2  # seqs 1 and 3 remain
    assert stats.last_message_at == T0 + timedelta(minutes=2)


def test_key_prefix_bound_is_the_least_string_above_the_prefix() -> None:
    assert key_prefix_bound("discord:") == "discord;"
    assert key_prefix_bound("a\U0010ffff") == "b"
    assert key_prefix_bound("\U0010ffff") is None
    assert key_prefix_bound("x\ud7ff") == "x\ue000"
    for key in ("discord:1", "discord:\U0010ffff", "discord:" + "z" * 50):
        assert "discord:" <= key < "discord;"


async def test_message_sizes_read_role_tokens_and_length_without_the_text(store: MemoryStore) -> None:
    await new_agent(store, "a")
    texts = ["hi", "ünïcödé 🙂 名前", "", "x" * 9_000]
    roles = ["user", "assistant", "tool", "user"]
    await store.append_messages(
        "a",
        [
            msg(text, role=role, at=T0 + timedelta(minutes=i))
            for i, (text, role) in enumerate(zip(texts, roles, strict=True))
        ],  # type: ignore[arg-type]
    )
    sizes = await store.message_sizes("a", from_seq=2)
    stored = await store.get_messages("a", from_seq=2)
    assert [(s.seq, s.role, s.tokens, s.chars) for s in sizes] == [
        (m.seq, m.role, m.tokens, len(m.content)) for m in stored
    ]
    assert [s.chars for s in sizes] == [len(texts[1]), 0, 9_000]  # characters, not bytes
    assert await store.message_sizes("a", from_seq=99) == []
    assert await store.message_sizes("ghost", from_seq=1) == []
