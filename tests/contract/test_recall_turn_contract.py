"""What a search made during a turn finds, on every store: never the messages of the turn being
answered, and what is still in the context window only after older history (`TurnBounds`).

The fixture: seqs 1-3 left the context window long ago, 4-5 are still in it, 6-7 are the turn
being answered (the user's question, then the agent's first step). Every message says "lake"
once in six content words and a one-word speaker, so bm25 ties them all and a ranking reads
newest first; "mill" is said by 2 and 5 only, "zanzibar" only in the question.
"""

from __future__ import annotations

from datetime import timedelta

from bot.memory.recall import RecallMemory, TurnBounds
from bot.memory.store import MemoryStore, MessageRole, NewMessage
from tests.contract.test_store_contract import T0, new_agent, seqs

BOUNDS = TurnBounds(context_start_seq=4, turn_start_seq=6)
TEXTS = (
    "the lake was cold this morning",
    "we walked from lake to mill",
    "my brother fished in the lake",
    "the lake froze over last winter",
    "the old mill by the lake",
    "did I mention zanzibar or lake",
    "looking for lake in my notes",
)


def message(n: int) -> NewMessage:
    role: MessageRole = "assistant" if n == 7 else "user"
    return NewMessage(
        role=role, content=TEXTS[n - 1], created_at=T0 + timedelta(minutes=n), tokens=1, speaker_name="Ann"
    )


async def fixture(store: MemoryStore) -> RecallMemory:
    await new_agent(store)
    await store.append_messages("agent-1", [message(n) for n in range(1, 8)])
    return RecallMemory(store, clock=lambda: T0 + timedelta(minutes=8))


async def test_the_turn_being_answered_is_never_found(store: MemoryStore) -> None:
    recall = await fixture(store)
    assert await recall.search_messages("agent-1", "zanzibar", bounds=BOUNDS) == ([], 0)
    assert await recall.search("agent-1", "zanzibar", bounds=BOUNDS) == "No messages match 'zanzibar'."
    # Without bounds (an admin's search, the old eval) the whole history is searched, as before.
    found, total = await recall.search_messages("agent-1", "zanzibar")
    assert (seqs(found), total) == ([6], 1)


async def test_older_history_comes_before_the_context_window(store: MemoryStore) -> None:
    recall = await fixture(store)
    found, total = await recall.search_messages("agent-1", "lake", limit=10, bounds=BOUNDS)
    assert (seqs(found), total) == ([3, 2, 1, 5, 4], 5)
    # Pages run on from the older messages into the window's.
    assert seqs((await recall.search_messages("agent-1", "lake", offset=2, limit=2, bounds=BOUNDS))[0]) == [1, 5]
    assert seqs((await recall.search_messages("agent-1", "lake", offset=4, limit=2, bounds=BOUNDS))[0]) == [4]
    found, total = await recall.search_messages("agent-1", "mill", bounds=BOUNDS)
    assert (seqs(found), total) == ([2, 5], 2)


async def test_with_nothing_older_the_window_is_found(store: MemoryStore) -> None:
    recall = await fixture(store)
    found, total = await recall.search_messages(
        "agent-1", "lake", limit=10, bounds=TurnBounds(context_start_seq=1, turn_start_seq=6)
    )
    assert (sorted(seqs(found)), total) == ([1, 2, 3, 4, 5], 5)


async def test_time_words_and_dates_leave_out_the_turn_too(store: MemoryStore) -> None:
    recall = await fixture(store)
    # "today" names the fixture's day: its messages in time order, the turn's left out.
    found, total = await recall.search_messages("agent-1", "today", limit=10, bounds=BOUNDS)
    assert (seqs(found), total) == ([1, 2, 3, 4, 5], 5)
    found, total = await recall.search_messages("agent-1", "lake today", limit=10, bounds=BOUNDS)
    assert (seqs(found), total) == ([3, 2, 1, 5, 4], 5)
    page = await recall.search_date("agent-1", "2024-05-01", "2024-05-01", bounds=BOUNDS)
    assert page.splitlines()[0] == "Page 0 of 1 (pages start at 0), 5 results:"
    assert "zanzibar" not in page and "my notes" not in page


async def test_store_search_bounds_narrow_the_matches_not_their_scores(store: MemoryStore) -> None:
    await fixture(store)
    unbounded, _ = await store.search_messages("agent-1", "mill lake", limit=10)
    assert seqs(unbounded) == [5, 2, 7, 6, 4, 3, 1]
    found, total = await store.search_messages("agent-1", "mill lake", limit=10, from_seq=2, before_seq=6)
    assert (seqs(found), total) == ([5, 2, 4, 3], 4)
    found, total = await store.search_messages("agent-1", "mill lake", offset=1, limit=2, from_seq=2, before_seq=6)
    assert (seqs(found), total) == ([2, 4], 4)
    assert await store.search_messages("agent-1", "lake", from_seq=6, before_seq=6) == ([], 0)
    found, total = await store.messages_between(
        "agent-1", T0, T0 + timedelta(hours=1), limit=10, from_seq=3, before_seq=6
    )
    assert (seqs(found), total) == ([3, 4, 5], 3)
