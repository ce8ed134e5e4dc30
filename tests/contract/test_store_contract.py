"""The `MemoryStore` contract: every store must pass every test here, with the same results.

Search orders below are worked out by hand from a fixture in which every message has the
same length (six content words plus a one-word speaker name), so documents that match the
same terms the same number of times tie exactly and fall back to "newest first". No
expected order depends on the inverse document frequency of a term, so stores whose bm25
statistics are table-wide and stores whose statistics are per agent agree.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from bot.errors import NotFoundError, StoreError, VersionConflictError
from bot.memory.store import (
    AgentRecord,
    AgentUpdate,
    CoreBlock,
    MemoryStore,
    MessageRole,
    NewMessage,
    NewPassage,
    StoredMessage,
    StoredToolCall,
)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
ODD_ID = "agent.$id \"quoted\" 'single' ünïcödé 🙂 名前 שלום"


def agent(
    agent_id: str = "agent-1", *, name: str | None = None, key: str | None = None, at: datetime = T0
) -> AgentRecord:
    return AgentRecord(
        id=agent_id,
        name=name or f"name of {agent_id}",
        conversation_key=key,
        persona_template="sam",
        human_template="basic",
        model="test-model",
        created_at=at,
        updated_at=at,
    )


def block(agent_id: str, label: str, value: str, *, version: int = 1) -> CoreBlock:
    return CoreBlock(agent_id=agent_id, label=label, value=value, limit=2000, version=version, updated_at=T0)


async def new_agent(store: MemoryStore, agent_id: str = "agent-1", **kwargs: object) -> AgentRecord:
    record = agent(agent_id, **kwargs)  # type: ignore[arg-type]
    await store.create_agent(record, [block(agent_id, "persona", "I am Sam."), block(agent_id, "human", "")])
    return record


def msg(
    content: str,
    *,
    role: MessageRole = "user",
    at: datetime = T0,
    speaker: str | None = None,
    speaker_id: str | None = None,
) -> NewMessage:
    return NewMessage(
        role=role,
        content=content,
        created_at=at,
        tokens=len(content.split()),
        speaker_name=speaker,
        speaker_id=speaker_id,
    )


def seqs(messages: Sequence[StoredMessage]) -> list[int]:
    return [m.seq for m in messages]


# -- agents ------------------------------------------------------------------------------------


async def test_create_and_get_agent_round_trips_every_field(store: MemoryStore) -> None:
    record = replace(
        agent("agent-1", key="discord:guild:1:channel:2"),
        summary="earlier we talked about lakes",
        context_start_seq=7,
        is_pressure_warned=True,
        last_user_message_at=T0 + timedelta(minutes=5, milliseconds=250),
        is_paused=True,
        heartbeats_paused_until=T0 + timedelta(days=1),
        version=3,
    )
    await store.create_agent(record, [block("agent-1", "persona", "I am Sam.")])

    assert await store.get_agent("agent-1") == record
    assert await store.get_agent_by_name(record.name) == record
    assert await store.get_agent_by_conversation("discord:guild:1:channel:2") == record
    stored = await store.get_agent("agent-1")
    assert stored is not None and stored.created_at.utcoffset() == timedelta(0)


async def test_unknown_agent_lookups_return_none(store: MemoryStore) -> None:
    await new_agent(store)
    assert await store.get_agent("nobody") is None
    assert await store.get_agent_by_name("nobody") is None
    assert await store.get_agent_by_conversation("nowhere") is None


async def test_duplicate_agent_id_or_name_is_refused_and_stores_nothing(store: MemoryStore) -> None:
    await new_agent(store, "agent-1", name="sam")
    with pytest.raises(StoreError):
        await store.create_agent(agent("agent-1", name="other"), [block("agent-1", "extra", "x")])
    with pytest.raises(StoreError):
        await store.create_agent(agent("agent-2", name="sam"), [block("agent-2", "persona", "x")])
    assert await store.get_agent("agent-2") is None
    assert await store.get_blocks("agent-2") == []
    assert [b.label for b in await store.get_blocks("agent-1")] == ["human", "persona"]


async def test_list_agents_oldest_first_with_paging(store: MemoryStore) -> None:
    for i, minutes in enumerate([30, 10, 20]):
        await new_agent(store, f"agent-{i}", at=T0 + timedelta(minutes=minutes))
    assert [a.id for a in await store.list_agents()] == ["agent-1", "agent-2", "agent-0"]
    assert [a.id for a in await store.list_agents(offset=1, limit=1)] == ["agent-2"]
    assert await store.list_agents(offset=3) == []


async def test_update_agent_compare_and_set(store: MemoryStore) -> None:
    created = await new_agent(store)
    seen = T0 + timedelta(hours=1)
    updated = await store.update_agent(
        "agent-1", AgentUpdate(summary="new summary", last_user_message_at=seen, is_paused=True), expected_version=1
    )
    assert (updated.version, updated.summary, updated.last_user_message_at, updated.is_paused) == (
        2,
        "new summary",
        seen,
        True,
    )
    assert (updated.name, updated.model, updated.context_start_seq) == (created.name, created.model, 1)
    assert updated.updated_at > created.updated_at
    assert await store.get_agent("agent-1") == updated

    with pytest.raises(VersionConflictError):
        await store.update_agent("agent-1", AgentUpdate(summary="stale"), expected_version=1)
    assert (await store.get_agent("agent-1")) == updated
    with pytest.raises(NotFoundError):
        await store.update_agent("nobody", AgentUpdate(summary="x"), expected_version=1)


async def test_update_agent_with_nothing_to_change_still_bumps_the_version(store: MemoryStore) -> None:
    await new_agent(store)
    assert (await store.update_agent("agent-1", AgentUpdate(), expected_version=1)).version == 2


async def test_delete_agent_cascades_and_ignores_unknown_ids(store: MemoryStore) -> None:
    await new_agent(store)
    await new_agent(store, "agent-2")
    await store.append_messages("agent-1", [msg("the lake is cold"), msg("the lake is warm")])
    await store.insert_passages("agent-1", [NewPassage(text="lake notes", created_at=T0)])
    await store.append_messages("agent-2", [msg("the lake is blue")])

    await store.delete_agent("agent-1")
    await store.delete_agent("agent-1")
    await store.delete_agent("nobody")

    assert await store.get_agent("agent-1") is None
    assert await store.get_blocks("agent-1") == []
    assert await store.count_messages("agent-1") == 0
    assert await store.count_passages("agent-1") == 0
    assert await store.search_messages("agent-1", "lake") == ([], 0)
    assert (await store.search_messages("agent-2", "lake"))[1] == 1
    # The id is free again, with a fresh history.
    await new_agent(store)
    assert seqs(await store.append_messages("agent-1", [msg("again")])) == [1]
    assert await store.search_messages("agent-1", "lake") == ([], 0)


# -- core memory ---------------------------------------------------------------------------------


async def test_blocks_are_ordered_by_label(store: MemoryStore) -> None:
    await store.create_agent(agent(), [block("agent-1", "zeta", "z"), block("agent-1", "alpha", "a")])
    assert [(b.label, b.value, b.version) for b in await store.get_blocks("agent-1")] == [
        ("alpha", "a", 1),
        ("zeta", "z", 1),
    ]
    assert await store.get_blocks("nobody") == []


async def test_write_block_create_and_compare_and_set(store: MemoryStore) -> None:
    await new_agent(store)
    created = await store.write_block("agent-1", "notes", "first", limit=500, expected_version=0)
    assert (created.label, created.value, created.limit, created.version) == ("notes", "first", 500, 1)
    assert created.updated_at.utcoffset() == timedelta(0)
    with pytest.raises(VersionConflictError):
        await store.write_block("agent-1", "notes", "again", limit=500, expected_version=0)

    second = await store.write_block("agent-1", "notes", "second", limit=600, expected_version=1)
    assert (second.value, second.limit, second.version) == ("second", 600, 2)
    with pytest.raises(VersionConflictError):
        await store.write_block("agent-1", "notes", "stale", limit=600, expected_version=1)
    stored = {b.label: b for b in await store.get_blocks("agent-1")}["notes"]
    assert (stored.value, stored.limit, stored.version) == ("second", 600, 2)

    with pytest.raises(NotFoundError):
        await store.write_block("agent-1", "missing", "x", limit=10, expected_version=1)
    with pytest.raises(NotFoundError):
        await store.write_block("nobody", "notes", "x", limit=10, expected_version=0)


async def test_write_block_appends_its_messages_in_the_same_transaction(store: MemoryStore) -> None:
    await new_agent(store)
    await store.append_messages("agent-1", [msg("hello")])
    report = NewMessage(
        role="tool",
        content='{"status": "OK"}',
        created_at=T0,
        tokens=4,
        tool_call_id="c1",
        tool_name="core_memory_append",
    )
    await store.write_block("agent-1", "human", "likes lakes", limit=2000, expected_version=1, messages=[report])
    stored = await store.get_messages("agent-1")
    assert [(m.seq, m.role, m.tool_call_id) for m in stored] == [(1, "user", None), (2, "tool", "c1")]

    with pytest.raises(VersionConflictError):
        await store.write_block("agent-1", "human", "lost", limit=2000, expected_version=1, messages=[report])
    assert await store.count_messages("agent-1") == 2  # the losing edit's record is absent too


async def test_two_writers_with_the_same_version_exactly_one_wins(store: MemoryStore) -> None:
    await new_agent(store)
    results = await asyncio.gather(
        store.write_block("agent-1", "persona", "A", limit=2000, expected_version=1),
        store.write_block("agent-1", "persona", "B", limit=2000, expected_version=1),
        return_exceptions=True,
    )
    assert sorted(type(r).__name__ for r in results) == ["CoreBlock", "VersionConflictError"]
    winner = next(r for r in results if isinstance(r, CoreBlock))
    assert {b.label: b.value for b in await store.get_blocks("agent-1")}["persona"] == winner.value


async def test_concurrent_read_modify_write_loses_no_update(store: MemoryStore) -> None:
    await new_agent(store)
    await store.write_block("agent-1", "notes", "", limit=10_000, expected_version=0)
    conflicts = 0

    async def append_line(i: int) -> None:
        nonlocal conflicts
        while True:
            current = {b.label: b for b in await store.get_blocks("agent-1")}["notes"]
            try:
                await store.write_block(
                    "agent-1", "notes", current.value + f"line {i}\n", limit=10_000, expected_version=current.version
                )
                return
            except VersionConflictError:
                conflicts += 1
                await asyncio.sleep(0)

    await asyncio.gather(*(append_line(i) for i in range(20)))
    notes = {b.label: b for b in await store.get_blocks("agent-1")}["notes"]
    assert sorted(notes.value.splitlines()) == sorted(f"line {i}" for i in range(20))
    assert notes.version == 21
    assert conflicts > 0  # the writers really raced


async def test_delete_blocks(store: MemoryStore) -> None:
    await new_agent(store)
    await new_agent(store, "agent-2")
    await store.delete_blocks("agent-1")
    assert await store.get_blocks("agent-1") == []
    assert len(await store.get_blocks("agent-2")) == 2
    assert (await store.write_block("agent-1", "persona", "new", limit=100, expected_version=0)).version == 1
    with pytest.raises(NotFoundError):
        await store.delete_blocks("nobody")


# -- recall --------------------------------------------------------------------------------------


async def test_append_assigns_consecutive_seqs_and_round_trips(store: MemoryStore) -> None:
    await new_agent(store)
    call = StoredToolCall(id="call_1", name="send_message", arguments='{"message": "hi 🙂"}')
    first = NewMessage(
        role="assistant",
        content="",
        created_at=T0 + timedelta(milliseconds=123),
        tokens=12,
        speaker_id="bot",
        speaker_name="Sam",
        platform_message_id="1234567890",
        tool_calls=(call, StoredToolCall(id="call_2", name="archival_memory_search", arguments="{}")),
    )
    result = NewMessage(
        role="tool", content="ok", created_at=T0, tokens=1, tool_call_id="call_1", tool_name="send_message"
    )
    stored = await store.append_messages("agent-1", [first, result, msg("thanks", speaker="Ann")])
    assert seqs(stored) == [1, 2, 3]
    assert seqs(await store.append_messages("agent-1", [msg("more"), msg("and more")])) == [4, 5]

    got = await store.get_messages("agent-1")
    assert got[:3] == stored
    assert got[0].tool_calls[0] == call and got[0].platform_message_id == "1234567890"
    assert got[0].created_at == T0 + timedelta(milliseconds=123) and got[0].created_at.utcoffset() == timedelta(0)
    assert (got[1].tool_call_id, got[1].tool_name) == ("call_1", "send_message")
    assert await store.append_messages("agent-1", []) == []
    assert await store.count_messages("agent-1") == 5


async def test_seqs_are_per_agent(store: MemoryStore) -> None:
    await new_agent(store)
    await new_agent(store, "agent-2")
    await store.append_messages("agent-1", [msg("a"), msg("b")])
    assert seqs(await store.append_messages("agent-2", [msg("c")])) == [1]


async def test_concurrent_appends_get_distinct_consecutive_seqs(store: MemoryStore) -> None:
    await new_agent(store)
    batches = await asyncio.gather(
        *(store.append_messages("agent-1", [msg(f"batch {b} item {i}") for i in range(5)]) for b in range(10))
    )
    for batch in batches:
        assert seqs(batch) == list(range(batch[0].seq, batch[0].seq + 5))
    stored = await store.get_messages("agent-1")
    assert seqs(stored) == list(range(1, 51))
    by_seq = {m.seq: m.content for batch in batches for m in batch}
    assert {m.seq: m.content for m in stored} == by_seq


async def test_get_messages_paging(store: MemoryStore) -> None:
    await new_agent(store)
    await store.append_messages("agent-1", [msg(f"m{i}") for i in range(1, 11)])
    assert seqs(await store.get_messages("agent-1", from_seq=8)) == [8, 9, 10]
    assert seqs(await store.get_messages("agent-1", from_seq=3, limit=2)) == [3, 4]
    assert await store.get_messages("agent-1", from_seq=11) == []
    assert seqs(await store.get_messages_before("agent-1", before_seq=6, limit=3)) == [3, 4, 5]
    assert seqs(await store.get_messages_before("agent-1", before_seq=3, limit=5)) == [1, 2]
    assert await store.get_messages_before("agent-1", before_seq=1, limit=5) == []


async def test_delete_messages_from_then_seqs_continue_densely(store: MemoryStore) -> None:
    await new_agent(store)
    await store.append_messages("agent-1", [msg(f"m{i}") for i in range(1, 6)])
    assert await store.delete_messages_from("agent-1", 4) == 2
    assert await store.count_messages("agent-1") == 3
    assert await store.delete_messages_from("agent-1", 10) == 0
    # `/pop` then a new message: the sequence stays 1, 2, 3, ... with no gap.
    assert seqs(await store.append_messages("agent-1", [msg("replacement")])) == [4]
    assert [m.content for m in await store.get_messages("agent-1")] == ["m1", "m2", "m3", "replacement"]
    assert await store.search_messages("agent-1", "m5") == ([], 0)


async def test_delete_messages_by_speaker_keeps_the_others_and_their_seqs(store: MemoryStore) -> None:
    await new_agent(store)
    await new_agent(store, "agent-2")
    await store.append_messages(
        "agent-1",
        [
            msg("alice likes walnut bread", speaker="Alice", speaker_id="u-alice"),
            msg("bob prefers rye", speaker="Bob", speaker_id="u-bob"),
            msg("walnut cake is my secret", speaker="Alice", speaker_id="u-alice"),
            msg("noted, walnuts", role="assistant", speaker="Membot"),
            msg("bob again about rye", speaker="Bob", speaker_id="u-bob"),
        ],
    )
    await store.append_messages("agent-2", [msg("alice elsewhere walnut", speaker="Alice", speaker_id="u-alice")])
    assert await store.count_messages("agent-1") == 5
    assert (await store.search_messages("agent-1", "secret"))[1] == 1

    assert await store.delete_messages_by_speaker("agent-1", "u-alice") == 2
    kept = await store.get_messages("agent-1")
    assert [(m.seq, m.content) for m in kept] == [
        (2, "bob prefers rye"),
        (4, "noted, walnuts"),
        (5, "bob again about rye"),
    ]
    assert await store.count_messages("agent-1") == 3
    assert await store.search_messages("agent-1", "secret") == ([], 0)
    assert seqs((await store.search_messages("agent-1", "walnut bread cake"))[0]) == [4]
    assert sorted(seqs((await store.search_messages("agent-1", "rye"))[0])) == [2, 5]
    # Other agents keep the speaker's messages; nothing more to delete is a count of 0.
    assert await store.count_messages("agent-2") == 1
    assert await store.delete_messages_by_speaker("agent-1", "u-alice") == 0
    assert await store.delete_messages_by_speaker("agent-1", "u-nobody") == 0
    assert seqs(await store.append_messages("agent-1", [msg("after")])) == [6]
    assert await store.count_messages("agent-1") == 4


async def test_recall_reads_of_unknown_agents_are_empty_and_writes_raise(store: MemoryStore) -> None:
    assert await store.get_messages("nobody") == []
    assert await store.get_messages_before("nobody", before_seq=10, limit=5) == []
    assert await store.count_messages("nobody") == 0
    assert await store.search_messages("nobody", "lake") == ([], 0)
    assert await store.messages_between("nobody", T0, T0 + timedelta(days=1)) == ([], 0)
    with pytest.raises(NotFoundError):
        await store.append_messages("nobody", [msg("hi")])
    with pytest.raises(NotFoundError):
        await store.delete_messages_from("nobody", 1)
    with pytest.raises(NotFoundError):
        await store.delete_messages_by_speaker("nobody", "u-1")


# -- recall search -------------------------------------------------------------------------------

# seq: (role, speaker, content) -- six words of content and a one-word speaker each.
FIXTURE: dict[int, tuple[MessageRole, str | None, str]] = {
    1: ("user", "Alice", "we went hiking near the lake"),
    2: ("assistant", "Membot", "the lake trip sounds really lovely"),
    3: ("user", "Bob", "I run every morning before work"),
    4: ("user", "Alice", "bob promised to bring more tomatoes"),
    5: ("assistant", "Membot", "running by the lake sounds peaceful"),
    6: ("user", "Bob", "do you like tomatoes in salad"),
    7: ("tool", None, "lake temperature is twenty degrees today"),
    8: ("user", "Alice", "the weather today is cold outside"),
    9: ("user", "Alice", "my garden tomatoes finally turned red"),
}


async def search_fixture(store: MemoryStore) -> None:
    await new_agent(store)
    await store.append_messages(
        "agent-1",
        [msg(text, role=role, speaker=who, at=T0 + timedelta(minutes=s)) for s, (role, who, text) in FIXTURE.items()],
    )


async def found(store: MemoryStore, query: str, **kwargs: object) -> tuple[list[int], int]:
    page, total = await store.search_messages("agent-1", query, **kwargs)  # type: ignore[arg-type]
    return seqs(page), total


async def test_search_stems_words(store: MemoryStore) -> None:
    await search_fixture(store)
    # "running" finds "run" (3) and "running" (5); equal scores, so newest first.
    assert await found(store, "running") == ([5, 3], 2)
    assert await found(store, "RUN") == ([5, 3], 2)


async def test_search_ranks_documents_matching_more_terms_first(store: MemoryStore) -> None:
    await search_fixture(store)
    # 5 has both terms; 2 and 1 have only "lake" (a tie, newest first); 7 is a tool message.
    assert await found(store, "peaceful lake") == ([5, 2, 1], 3)
    assert await found(store, "lake peaceful") == ([5, 2, 1], 3)


async def test_search_covers_speaker_names_weighted_below_content(store: MemoryStore) -> None:
    await search_fixture(store)
    # 4 mentions bob in its content and outranks the newer 6 and 3, only spoken by Bob.
    assert await found(store, "bob") == ([4, 6, 3], 3)
    assert await found(store, "alice") == ([9, 8, 4, 1], 4)


async def test_search_ties_are_newest_first_and_pages_carry_the_total(store: MemoryStore) -> None:
    await search_fixture(store)
    assert await found(store, "tomatoes") == ([9, 6, 4], 3)
    assert await found(store, "tomatoes", offset=1, limit=1) == ([6], 3)
    assert await found(store, "tomatoes", offset=2, limit=5) == ([4], 3)
    assert await found(store, "tomatoes", offset=3) == ([], 3)
    assert await found(store, "tomatoes", limit=0) == ([], 3)


async def test_search_filters_by_role(store: MemoryStore) -> None:
    await search_fixture(store)
    assert await found(store, "lake") == ([5, 2, 1], 3)
    assert await found(store, "lake", roles=("tool",)) == ([7], 1)
    assert await found(store, "lake", roles=("user",)) == ([1], 1)
    assert await found(store, "lake", roles=("user", "assistant", "tool")) == ([7, 5, 2, 1], 4)
    assert await found(store, "lake", roles=()) == ([], 0)


async def test_search_is_scoped_to_one_agent(store: MemoryStore) -> None:
    await search_fixture(store)
    await new_agent(store, "agent-2")
    await store.append_messages("agent-2", [msg("the lake froze over last night", speaker="Carol")] * 3)
    assert await found(store, "lake") == ([5, 2, 1], 3)
    page, total = await store.search_messages("agent-2", "lake")
    assert (seqs(page), total, {m.agent_id for m in page}) == ([3, 2, 1], 3, {"agent-2"})
    assert await store.search_messages("agent-2", "tomatoes") == ([], 0)


async def test_search_drops_stop_words_and_ignores_case_and_diacritics(store: MemoryStore) -> None:
    await search_fixture(store)
    assert await found(store, "the") == ([], 0)
    assert await found(store, "The LAKE") == ([5, 2, 1], 3)
    await store.append_messages("agent-1", [msg("a naïve café order", at=T0 + timedelta(hours=1))])
    assert await found(store, "cafe NAIVE") == ([10], 1)


@pytest.mark.parametrize("query", ["", "   ", "!!!", '"', "*", "-", "()", "?.,;:'\"", "🙂", "_"])
async def test_search_for_nothing_finds_nothing(store: MemoryStore, query: str) -> None:
    await search_fixture(store)
    assert await found(store, query) == ([], 0)


@pytest.mark.parametrize(
    "query",
    ['"lake', 'lake"', "lake*", "-lake", "lake AND", "AND lake", "lake OR", "NOT lake", "lake:", "content:lake",
     "^lake", "(lake", "lake)", "{lake}", "lake + 1", "lake'", "'lake'", "\\lake", "lake;--", "lake\x00", "lake.$"],
)  # fmt: skip
async def test_search_treats_query_syntax_as_plain_words(store: MemoryStore, query: str) -> None:
    await search_fixture(store)
    assert await found(store, query) == ([5, 2, 1], 3)


@pytest.mark.parametrize("query", ["NEAR(lake", "NEAR(lake run, 2)", "lake NEAR run", "*lake*", "OR", "AND NOT"])
async def test_search_operators_never_raise(store: MemoryStore, query: str) -> None:
    await search_fixture(store)
    page, total = await store.search_messages("agent-1", query)
    assert total >= len(page)


# -- recall by date --------------------------------------------------------------------------------


async def test_messages_between_is_start_inclusive_end_exclusive(store: MemoryStore) -> None:
    await new_agent(store)
    await store.append_messages(
        "agent-1",
        [msg(f"at minute {i}", role="user" if i % 2 else "assistant", at=T0 + timedelta(minutes=i)) for i in range(6)],
    )
    page, total = await store.messages_between("agent-1", T0 + timedelta(minutes=1), T0 + timedelta(minutes=4))
    assert ([m.content for m in page], total) == (["at minute 1", "at minute 2", "at minute 3"], 3)
    assert all(m.created_at.utcoffset() == timedelta(0) for m in page)
    page, total = await store.messages_between("agent-1", T0, T0 + timedelta(minutes=6), offset=2, limit=2)
    assert (seqs(page), total) == ([3, 4], 6)
    assert await store.messages_between("agent-1", T0 + timedelta(minutes=6), T0 + timedelta(days=1)) == ([], 0)


async def test_messages_between_accepts_other_time_zones(store: MemoryStore) -> None:
    await new_agent(store)
    await store.append_messages("agent-1", [msg("noon utc", at=T0), msg("one pm utc", at=T0 + timedelta(hours=1))])
    plus_two = timezone(timedelta(hours=2))
    page, total = await store.messages_between(
        "agent-1", datetime(2024, 5, 1, 14, 0, tzinfo=plus_two), datetime(2024, 5, 1, 14, 30, tzinfo=plus_two)
    )
    assert ([m.content for m in page], total) == (["noon utc"], 1)
    assert page[0].created_at == T0 and page[0].created_at.utcoffset() == timedelta(0)


async def test_messages_between_orders_by_time_then_seq_and_filters_roles(store: MemoryStore) -> None:
    await new_agent(store)
    await store.append_messages(
        "agent-1",
        [
            msg("late", at=T0 + timedelta(minutes=2)),
            msg("early", role="assistant", at=T0),
            msg("tool output", role="tool", at=T0 + timedelta(minutes=1)),
            msg("same time as early", at=T0),
            msg("system note", role="system", at=T0 + timedelta(minutes=1)),
        ],
    )
    end = T0 + timedelta(hours=1)
    page, total = await store.messages_between("agent-1", T0, end, limit=10)
    assert ([m.content for m in page], total) == (["early", "same time as early", "late"], 3)
    page, total = await store.messages_between("agent-1", T0, end, roles=("tool", "system"))
    assert ([m.content for m in page], total) == (["tool output", "system note"], 2)
    assert await store.messages_between("agent-1", T0, end, roles=()) == ([], 0)


# -- archival ----------------------------------------------------------------------------------------


async def test_insert_list_and_count_passages(store: MemoryStore) -> None:
    await new_agent(store)
    await new_agent(store, "agent-2")
    ids = await store.insert_passages(
        "agent-1", [NewPassage(text=f"fact {i}", created_at=T0 + timedelta(seconds=i)) for i in range(3)]
    )
    assert len(set(ids)) == 3
    assert await store.count_passages("agent-1") == 3
    assert await store.count_passages("agent-2") == 0
    listed = await store.list_passages("agent-1")
    assert [(p.id, p.text, p.created_at, p.score) for p in listed] == [
        (ids[i], f"fact {i}", T0 + timedelta(seconds=i), None) for i in range(3)
    ]
    assert [p.id for p in await store.list_passages("agent-1", offset=1, limit=1)] == [ids[1]]
    assert await store.insert_passages("agent-1", []) == []
    assert await store.list_passages("nobody") == []
    with pytest.raises(NotFoundError):
        await store.insert_passages("nobody", [NewPassage(text="x", created_at=T0)])


PASSAGES = [
    "the lake house has a blue door",
    "running shoes are in the hallway closet",
    "the lake is frozen every january too",
    "grandma bakes apple pie on sundays",
]


async def test_search_passages_text(store: MemoryStore) -> None:
    await new_agent(store)
    await new_agent(store, "agent-2")
    ids = await store.insert_passages("agent-1", [NewPassage(text=t, created_at=T0) for t in PASSAGES])
    await store.insert_passages("agent-2", [NewPassage(text="lake lake lake", created_at=T0)])
    page, total = await store.search_passages_text("agent-1", "lake")
    assert ([p.id for p in page], total) == ([ids[2], ids[0]], 2)  # a tie: newest first
    assert all(p.score is not None and p.score > 0 and p.agent_id == "agent-1" for p in page)
    page, total = await store.search_passages_text("agent-1", "run pie")
    assert ({p.id for p in page}, total) == ({ids[1], ids[3]}, 2)
    page, total = await store.search_passages_text("agent-1", "lake door", offset=1, limit=1)
    assert ([p.id for p in page], total) == ([ids[2]], 2)
    assert await store.search_passages_text("agent-1", "NEAR(*") == ([], 0)
    assert await store.search_passages_text("nobody", "lake") == ([], 0)


async def vector_fixture(store: MemoryStore) -> list[str]:
    await new_agent(store)
    await new_agent(store, "agent-2")
    await store.insert_passages(
        "agent-2", [NewPassage(text="other agent", created_at=T0, embedding=(1.0, 0.0, 0.0), embedding_model="m1")]
    )
    return await store.insert_passages(
        "agent-1",
        [
            NewPassage(text="east", created_at=T0, embedding=(10.0, 0.0, 0.0), embedding_model="m1"),
            NewPassage(text="north-east", created_at=T0, embedding=(0.8, 0.6, 0.0), embedding_model="m1"),
            NewPassage(text="north", created_at=T0, embedding=(0.0, 3.0, 0.0), embedding_model="m1"),
            NewPassage(text="never embedded", created_at=T0),
            NewPassage(text="other model", created_at=T0, embedding=(1.0, 0.0, 0.0), embedding_model="m2"),
            NewPassage(text="west", created_at=T0, embedding=(-1.0, 0.0, 0.0), embedding_model="m1"),
        ],
    )


async def test_search_passages_vector_by_cosine_within_one_model(store: MemoryStore) -> None:
    ids = await vector_fixture(store)
    page, total = await store.search_passages_vector("agent-1", [2.0, 0.0, 0.0], embedding_model="m1")
    assert ([p.text for p in page], total) == (["east", "north-east", "north", "west"], 4)
    assert [p.score for p in page] == pytest.approx([1.0, 0.8, 0.0, -1.0], abs=1e-5)
    assert page[0].id == ids[0] and page[0].embedding_model == "m1"

    query = [0.1, 1.0, 0.0]
    page, total = await store.search_passages_vector("agent-1", query, embedding_model="m1", offset=1, limit=2)
    assert ([p.text for p in page], total) == (["north-east", "east"], 4)
    page, total = await store.search_passages_vector("agent-1", [1.0, 0.0, 0.0], embedding_model="m2")
    assert ([p.text for p in page], total) == (["other model"], 1)
    assert await store.search_passages_vector("agent-1", [1.0, 0.0, 0.0], embedding_model="m3") == ([], 0)
    assert await store.search_passages_vector("nobody", [1.0, 0.0, 0.0], embedding_model="m1") == ([], 0)


async def test_re_embedding_passages(store: MemoryStore) -> None:
    ids = await vector_fixture(store)
    assert [p.id for p in await store.passages_without_embedding("agent-1", "m1", limit=10)] == [ids[3], ids[4]]
    assert [p.id for p in await store.passages_without_embedding("agent-1", "m1", limit=1)] == [ids[3]]
    assert len(await store.passages_without_embedding("agent-1", "m2", limit=10)) == 5

    await store.set_passage_embedding(ids[3], [0.0, 0.0, 5.0], "m1")
    await store.set_passage_embedding(ids[4], [0.0, 0.0, -1.0], "m1")
    assert await store.passages_without_embedding("agent-1", "m1", limit=10) == []
    page, total = await store.search_passages_vector("agent-1", [0.0, 0.0, 1.0], embedding_model="m1", limit=1)
    assert ([p.text for p in page], total) == (["never embedded"], 6)
    assert [p.score for p in page] == pytest.approx([1.0], abs=1e-5)
    assert (await store.search_passages_vector("agent-1", [1.0, 0.0, 0.0], embedding_model="m2"))[1] == 0
    with pytest.raises(NotFoundError):
        await store.set_passage_embedding("no-such-passage", [1.0, 0.0, 0.0], "m1")


async def test_delete_passages(store: MemoryStore) -> None:
    await vector_fixture(store)
    assert await store.delete_passages("agent-1") == 6
    assert await store.count_passages("agent-1") == 0
    assert await store.search_passages_text("agent-1", "east") == ([], 0)
    assert await store.search_passages_vector("agent-1", [1.0, 0.0, 0.0], embedding_model="m1") == ([], 0)
    assert await store.count_passages("agent-2") == 1
    assert await store.delete_passages("agent-1") == 0
    with pytest.raises(NotFoundError):
        await store.delete_passages("nobody")


# -- opaque strings and big texts ----------------------------------------------------------------------


async def test_odd_agent_ids_labels_and_unicode_round_trip(store: MemoryStore) -> None:
    label = "notes.$speaker 'ünï' \"q\""
    record = agent(ODD_ID, name="名前.$name", key="slack:T1.$C2")
    await store.create_agent(record, [block(ODD_ID, label, "🙂 value")])
    assert await store.get_agent(ODD_ID) == record
    assert await store.get_agent_by_name("名前.$name") == record
    assert await store.get_agent_by_conversation("slack:T1.$C2") == record
    assert [(b.agent_id, b.label) for b in await store.get_blocks(ODD_ID)] == [(ODD_ID, label)]
    assert (await store.write_block(ODD_ID, label, "新しい", limit=100, expected_version=1)).version == 2

    texts = [
        "emoji 🙂🎉👩‍👩‍👧 party",
        "我喜欢东京 and tokyo",
        "مرحبا بالعالم hello",
        "x" * 100_000,
        "nul\x00byte and\ttabs\n",
    ]
    stored = await store.append_messages(ODD_ID, [msg(t, speaker="Zoë 🙂") for t in texts])
    assert [m.content for m in await store.get_messages(ODD_ID)] == texts
    assert [m.speaker_name for m in await store.get_messages(ODD_ID)] == ["Zoë 🙂"] * 5
    assert seqs(stored) == [1, 2, 3, 4, 5]
    assert await found_for(store, ODD_ID, "مرحبا") == [3]
    assert await found_for(store, ODD_ID, "我喜欢东京") == [2]
    assert sorted(await found_for(store, ODD_ID, "zoe")) == [1, 2, 3, 4, 5]

    (pid,) = await store.insert_passages(ODD_ID, [NewPassage(text="y" * 100_000 + " 🙂 עברית", created_at=T0)])
    assert [p.text for p in await store.list_passages(ODD_ID)] == ["y" * 100_000 + " 🙂 עברית"]
    assert [p.id for p in (await store.search_passages_text(ODD_ID, "עברית"))[0]] == [pid]

    await store.delete_agent(ODD_ID)
    assert await store.get_agent(ODD_ID) is None and await store.count_messages(ODD_ID) == 0


async def found_for(store: MemoryStore, agent_id: str, query: str) -> list[int]:
    page, _ = await store.search_messages(agent_id, query, limit=10)
    return seqs(page)


async def test_agent_ids_that_differ_only_in_punctuation_stay_apart(store: MemoryStore) -> None:
    for agent_id in ("a.b", "a$b", "a_b", "A.B"):
        await new_agent(store, agent_id)
        await store.append_messages(agent_id, [msg(f"hello from {agent_id}")])
    assert sorted(a.id for a in await store.list_agents()) == sorted(["a.b", "a$b", "a_b", "A.B"])
    for agent_id in ("a.b", "a$b", "a_b", "A.B"):
        assert [m.content for m in await store.get_messages(agent_id)] == [f"hello from {agent_id}"]
        assert (await store.search_messages(agent_id, "hello"))[1] == 1


async def test_passage_embeddings_hand_over_stored_unit_vectors(store: MemoryStore) -> None:
    ids = await vector_fixture(store)
    found = await store.passage_embeddings([ids[0], ids[1], ids[3], ids[4], "no-such-passage"])
    assert sorted(found) == sorted([ids[0], ids[1], ids[4]])
    model, vector = found[ids[0]]
    assert model == "m1"
    assert vector == pytest.approx((1.0, 0.0, 0.0), abs=1e-6)
    assert found[ids[1]][1] == pytest.approx((0.8, 0.6, 0.0), abs=1e-6)
    assert found[ids[4]][0] == "m2"
    assert await store.passage_embeddings([]) == {}
