"""Recall search beyond plain words, on every store: a message's `context` (the message before it)
searched at half weight, and message embeddings for hybrid search. Orders are worked out by hand;
both stores must agree."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.errors import NotFoundError
from bot.memory.store import MemoryStore, MessageRole, NewMessage
from tests.contract.test_store_contract import T0, new_agent, seqs


def said(content: str, *, context: str | None = None, role: MessageRole = "user", speaker: str = "Alice", n: int = 0) -> NewMessage:  # fmt: skip
    return NewMessage(
        role=role,
        content=content,
        created_at=T0 + timedelta(minutes=n),
        tokens=1,
        speaker_name=speaker,
        context=context,
    )


async def context_fixture(store: MemoryStore) -> None:
    # Four content words and a one-word speaker each; 2 and 3 carry the message before as context.
    await new_agent(store)
    await store.append_messages(
        "agent-1",
        [
            said("where is the lake", n=1),
            said("near the old mill", context="where is the lake", speaker="Bob", n=2),
            said("I like old films", context="near the old mill", n=3),
        ],
    )


async def test_the_context_is_stored_and_read_back(store: MemoryStore) -> None:
    await context_fixture(store)
    assert [m.context for m in await store.get_messages("agent-1")] == [None, "where is the lake", "near the old mill"]


async def test_search_finds_a_message_by_its_context_below_one_that_says_it(store: MemoryStore) -> None:
    await context_fixture(store)
    # "lake": 1 says it (weight 1, 5 terms); 2 only has it in its context (weight 0.5, 9 terms).
    page, total = await store.search_messages("agent-1", "lake")
    assert (seqs(page), total) == ([1, 2], 2)
    page, total = await store.search_messages("agent-1", "mill")
    assert (seqs(page), total) == ([2, 3], 2)
    # "old": 3 says it and has it in its context (1.5), 2 only says it (1); both 9 terms long.
    page, total = await store.search_messages("agent-1", "old")
    assert (seqs(page), total) == ([3, 2], 2)


async def test_question_words_are_stop_words(store: MemoryStore) -> None:
    await context_fixture(store)
    assert await store.search_messages("agent-1", "Where did you say it was?") == ([], 0)


async def embedded_fixture(store: MemoryStore) -> None:
    await new_agent(store)
    await store.append_messages(
        "agent-1",
        [
            said("cats", n=1),
            said("dogs", role="assistant", n=2),
            said("a tool result", role="tool", n=3),
            said("", n=4),
            said("cats and dogs", n=5),
        ],
    )


async def test_messages_without_embedding_are_searched_messages_with_text_oldest_first(store: MemoryStore) -> None:
    await embedded_fixture(store)
    assert seqs(await store.messages_without_embedding("agent-1", "m1", limit=10)) == [1, 2, 5]
    assert seqs(await store.messages_without_embedding("agent-1", "m1", limit=2)) == [1, 2]
    await store.set_message_embeddings("agent-1", "m1", [(1, [1.0, 0.0, 0.0]), (2, [0.0, 2.0, 0.0])])
    assert seqs(await store.messages_without_embedding("agent-1", "m1", limit=10)) == [5]
    assert seqs(await store.messages_without_embedding("agent-1", "m2", limit=10)) == [1, 2, 5]
    assert await store.messages_without_embedding("nobody", "m1", limit=10) == []


async def test_search_messages_vector_ranks_by_cosine_within_one_model(store: MemoryStore) -> None:
    await embedded_fixture(store)
    vectors = [(1, [1.0, 0.0, 0.0]), (2, [0.0, 3.0, 0.0]), (5, [1.0, 1.0, 0.0]), (99, [1.0, 0.0, 0.0])]
    await store.set_message_embeddings("agent-1", "m1", vectors)  # seq 99 does not exist: skipped

    async def found(query: list[float], **kwargs: object) -> tuple[list[int], int]:
        page, total = await store.search_messages_vector("agent-1", query, embedding_model="m1", **kwargs)  # type: ignore[arg-type]
        return seqs(page), total

    assert await found([2.0, 0.0, 0.0]) == ([1, 5, 2], 3)  # cosine 1, 0.71, 0
    assert await found([2.0, 0.0, 0.0], offset=1, limit=1) == ([5], 3)
    assert await found([0.0, 0.0, 1.0]) == ([5, 2, 1], 3)  # all 0: newest first
    assert await found([1.0, 0.0, 0.0], roles=("assistant",)) == ([2], 1)
    assert await found([1.0, 0.0, 0.0], limit=0) == ([], 3)
    assert await found([1.0, 0.0]) == ([], 0)  # another size: nothing comparable
    assert await store.search_messages_vector("agent-1", [1.0, 0.0, 0.0], embedding_model="m2") == ([], 0)
    assert await store.search_messages_vector("nobody", [1.0, 0.0, 0.0], embedding_model="m1") == ([], 0)


async def test_a_message_has_one_embedding_and_loses_it_with_the_message(store: MemoryStore) -> None:
    await embedded_fixture(store)
    await store.set_message_embeddings("agent-1", "m1", [(1, [1.0, 0.0]), (2, [0.0, 1.0]), (5, [1.0, 1.0])])
    await store.set_message_embeddings("agent-1", "m2", [(1, [0.0, 1.0])])  # replaces seq 1's m1 vector
    page, total = await store.search_messages_vector("agent-1", [1.0, 0.0], embedding_model="m1")
    assert (seqs(page), total) == ([5, 2], 2)
    assert seqs(await store.messages_without_embedding("agent-1", "m1", limit=10)) == [1]
    await store.delete_messages_from("agent-1", 5)
    page, total = await store.search_messages_vector("agent-1", [1.0, 0.0], embedding_model="m1")
    assert (seqs(page), total) == ([2], 1)
    await store.append_messages("agent-1", [said("a new fifth", n=6)])
    page, total = await store.search_messages_vector("agent-1", [1.0, 0.0], embedding_model="m1")
    assert (seqs(page), total) == ([2], 1)  # the new message did not inherit the deleted one's vector


async def test_embedding_messages_of_an_unknown_agent_raises(store: MemoryStore) -> None:
    with pytest.raises(NotFoundError):
        await store.set_message_embeddings("nobody", "m1", [(1, [1.0])])
