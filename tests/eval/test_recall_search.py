"""`conversation_search` beyond the store: contexts attached on record, time words, and hybrid search
(reciprocal rank fusion with the scripted server's bag-of-words embeddings, through the real SDK)."""

from __future__ import annotations

import sqlite3
import struct
from collections.abc import AsyncIterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import openai
import pytest

from bot.memory.openai_embeddings import OpenAIEmbedder
from bot.memory.recall import RecallMemory, embedded_texts, fuse_rankings, mean_unit_vector, query_without_names
from bot.memory.sqlite import SQLiteStore
from bot.memory.store import MessageRole, NewMessage, StoredMessage
from bot.memory.time_words import find_time_span
from tests.contract.test_store_contract import new_agent, seqs
from tests.fakes.llm_fixtures import SleepRecorder
from tests.fakes.llm_server import FakeLLMServer
from tests.fakes.llm_wire import embed_text

NOW = datetime(2024, 3, 14, 12, 0, tzinfo=UTC)  # a Thursday


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    sqlite_store = SQLiteStore(tmp_path / "membot.sqlite3")
    await sqlite_store.open()
    await new_agent(sqlite_store)
    try:
        yield sqlite_store
    finally:
        await sqlite_store.close()


def said(content: str, at: datetime, role: MessageRole = "user") -> NewMessage:
    return NewMessage(role=role, content=content, created_at=at, tokens=1, speaker_name="Alice")


@pytest.mark.parametrize(
    ("query", "start", "end", "rest"),
    [
        ("what did we plan last week", "2024-03-04", "2024-03-11", "what did we plan"),
        ("the trip in May 2023", "2023-05-01", "2023-06-01", "the trip"),
        ("dinner on 8 May, 2023 with Sam", "2023-05-08", "2023-05-09", "dinner with Sam"),
        ("May 8, 2023", "2023-05-08", "2023-05-09", ""),
        ("2023-05-08 notes", "2023-05-08", "2023-05-09", "notes"),
        ("the party yesterday", "2024-03-13", "2024-03-14", "the party"),
        ("3 days ago", "2024-03-11", "2024-03-12", ""),
        ("two weeks ago", "2024-02-26", "2024-03-04", ""),  # the week around 29 February
        ("last month", "2024-02-01", "2024-03-01", ""),
        ("this year", "2024-01-01", "2025-01-01", ""),
        ("gigs in May", "2023-05-01", "2023-06-01", "gigs"),  # the latest May not after today
        ("gigs in March", "2024-03-01", "2024-04-01", "gigs"),
        ("back in 2022", "2022-01-01", "2023-01-01", "back"),
        ("31 February 2023", "2023-02-01", "2023-03-01", "31"),  # not a date: the month it names
    ],
)
def test_time_words_name_a_span_of_days(query: str, start: str, end: str, rest: str) -> None:
    span = find_time_span(query, now=NOW)
    assert span is not None
    assert (span.start.date().isoformat(), span.end.date().isoformat(), span.rest) == (start, end, rest)


@pytest.mark.parametrize("query", ["what is my cat called", "may I ask something", "page 2023x", "in 1850"])
def test_queries_without_time_words_have_no_span(query: str) -> None:
    assert find_time_span(query, now=NOW) is None


def ranking(*seqs_: int) -> list[StoredMessage]:
    return [StoredMessage(agent_id="a", seq=s, role="user", content=str(s), created_at=NOW, tokens=1) for s in seqs_]


def test_reciprocal_rank_fusion_by_hand() -> None:
    # k = 60, no neighbourhood: 3 scores 1/63 + 1/61, 1 scores 1/61, 2 and 4 score 1/62 each (a tie: newest first).
    assert seqs(fuse_rankings([ranking(1, 2, 3), ranking(3, 4)], k=60, neighbour_weight=0)) == [3, 1, 4, 2]
    assert seqs(fuse_rankings([ranking(1, 2), []], k=60, neighbour_weight=0)) == [1, 2]
    assert fuse_rankings([]) == []


def test_a_small_fusion_constant_lets_each_rankings_top_beat_a_message_in_the_middle_of_both() -> None:
    # Seqs 10 apart (no neighbours); 150 is 15th in both lists.
    by_words = ranking(*range(10, 210, 10))
    by_meaning = ranking(*range(1005, 1145, 10), 150, *range(1145, 1200, 10))
    assert (seqs(by_words).index(150), seqs(by_meaning).index(150)) == (14, 14)
    # k = 60: 150 scores 2/75 = 0.0267, more than either top (1/61 = 0.0164).
    assert seqs(fuse_rankings([by_words, by_meaning], k=60, neighbour_weight=0))[0] == 150
    # k = 10: 2/25 = 0.08, below ranks 1 (1/11) and 2 (1/12) of each list, above rank 3 (1/13).
    fused = seqs(fuse_rankings([by_words, by_meaning], k=10, neighbour_weight=0))
    assert fused[:5] == [1005, 10, 1015, 20, 150]
    assert fuse_rankings([by_words, by_meaning], neighbour_weight=0) == fuse_rankings(
        [by_words, by_meaning], k=10, neighbour_weight=0
    )  # 10 is the default


def test_the_neighbourhood_lifts_messages_among_other_matches() -> None:
    # k = 10. RRF alone: 1 and 40 score 1/11 (0.0909), 20 and 25 score 1/12 (0.0833), 22 1/13 (0.0769).
    by_words, by_meaning = ranking(1, 20, 22), ranking(40, 25)
    assert seqs(fuse_rankings([by_words, by_meaning], neighbour_weight=0)) == [40, 1, 25, 20, 22]
    # Weight 0.3, span 2: 20 gains 0.3 x 22's 1/13 (0.1064), 22 gains 0.3 x 20's 1/12 (0.1019);
    # 25 is 3 from 22 (outside the span) and 1 and 40 have no ranked neighbour: unchanged.
    assert seqs(fuse_rankings([by_words, by_meaning], neighbour_weight=0.3, neighbour_span=2)) == [20, 22, 40, 1, 25]
    assert seqs(fuse_rankings([by_words, by_meaning])) == [20, 22, 40, 1, 25]  # those are the defaults
    # A span of 3 brings 25 in as 22's neighbour: 22 = 1/13 + 0.3 (1/12 + 1/12) = 0.1269, 25 = 1/12 + 0.3/13 = 0.1064,
    # 20 = 1/12 + 0.3/13 = 0.1064 too (a tie: newest first).
    assert seqs(fuse_rankings([by_words, by_meaning], neighbour_span=3)) == [22, 25, 20, 40, 1]


def spoken(seq: int, speaker: str | None, content: str = "") -> StoredMessage:
    return StoredMessage(
        agent_id="a", seq=seq, role="user", content=content or str(seq), created_at=NOW, tokens=1, speaker_name=speaker
    )


def test_a_speaker_the_query_names_scores_half_as_much_again() -> None:
    # k = 10, seqs far apart (no neighbours): 1 (Bob) scores 1/11 = 0.0909, 20 (Alice Smith) 1/12 = 0.0833,
    # 40 (no speaker) 1/13 = 0.0769.
    by_words = [spoken(1, "Bob"), spoken(20, "Alice Smith"), spoken(40, None)]
    assert seqs(fuse_rankings([by_words, []])) == [1, 20, 40]  # no query: no speaker named
    assert seqs(fuse_rankings([by_words, []], query="what did we plan")) == [1, 20, 40]
    # "Alice's" names Alice Smith: 20 scores 1.5 x 0.0833 = 0.125, above Bob's 0.0909.
    assert seqs(fuse_rankings([by_words, []], query="what was Alice's plan")) == [20, 1, 40]
    assert seqs(fuse_rankings([by_words, []], query="the Smiths' plans")) == [20, 1, 40]  # stemmed alike
    assert seqs(fuse_rankings([by_words, []], query="Alice's plan", speaker_boost=0)) == [1, 20, 40]
    # Naming both: 1 and 20 both x 1.5 (0.1364, 0.125), their order stays; 40 (no speaker) stays 0.0769.
    assert seqs(fuse_rankings([by_words, []], query="Bob and Alice")) == [1, 20, 40]
    # A boost of 0.05 is not enough: 0.0875 < 0.0909.
    assert seqs(fuse_rankings([by_words, []], query="Alice", speaker_boost=0.05)) == [1, 20, 40]


def test_a_message_is_embedded_sentence_by_sentence_without_its_speaker() -> None:
    message = spoken(1, "Alice", "I fixed the kayak.  It leaks again!\nSee you on Sunday? It is 3.5 km away")
    assert embedded_texts(message) == [
        "I fixed the kayak.",
        "It leaks again!",
        "See you on Sunday?",
        "It is 3.5 km away",  # no space after the point: not a sentence break
    ]
    assert embedded_texts(spoken(2, None, "tea or coffee")) == ["tea or coffee"]
    assert embedded_texts(spoken(3, "Bob", "  ok.  ")) == ["ok."]


def test_the_query_searched_by_meaning_names_no_speaker() -> None:
    speakers = ["Alice Smith", "Bob", "the_builder"]
    assert query_without_names("What did Alice's sister tell Bob?", speakers) == "What did sister tell ?"
    assert query_without_names("Did alice SMITH say so", speakers) == "Did say so"  # as keywords compare them
    assert query_without_names("What did the builder build", speakers) == "What did the build"  # never a stop word
    assert query_without_names("Where is Carol?", speakers) == "Where is Carol?"  # not a speaker
    assert query_without_names("Bob?", speakers) == "?"
    # 40 sentences: at most 32 texts, so 20 groups of 2.
    long = embedded_texts(spoken(4, None, " ".join(f"Line {i}." for i in range(40))))
    assert len(long) == 20 and long[0] == "Line 0. Line 1." and long[-1] == "Line 38. Line 39."


def test_the_mean_of_sentence_vectors_by_hand() -> None:
    assert mean_unit_vector([[0.6, 0.8]]) == [0.6, 0.8]  # one sentence: its vector as it is
    half = mean_unit_vector([[1.0, 0.0], [0.0, 1.0]])  # mean (0.5, 0.5), length 1/sqrt(2)
    assert half == pytest.approx([2**-0.5, 2**-0.5])
    # Mean (2/3, 1/3), of length sqrt(5)/3: scaled, (2, 1) / sqrt(5).
    assert mean_unit_vector([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]) == pytest.approx([2 / 5**0.5, 1 / 5**0.5])
    assert mean_unit_vector([[1.0, 0.0], [-1.0, 0.0]]) == [0.0, 0.0]  # opposites: no direction to scale


async def test_record_attaches_the_previous_searched_message_as_context(store: SQLiteStore) -> None:
    recall = RecallMemory(store)
    await recall.record("agent-1", [said("where is the lake", NOW)])
    await recall.record(
        "agent-1",
        [said("", NOW, role="assistant"), said("(tool output)", NOW, role="tool"), said("near the old mill", NOW)],
    )
    stored = await store.get_messages("agent-1")
    assert [m.context for m in stored] == [None, None, None, "where is the lake"]
    found, total = await recall.search_messages("agent-1", "lake")
    assert (seqs(found), total) == ([1, 4], 2)


async def test_time_words_put_messages_from_that_span_first(store: SQLiteStore) -> None:
    recall = RecallMemory(store, clock=lambda: NOW)
    await recall.record(
        "agent-1",
        [
            said("we booked the concert tickets", NOW - timedelta(days=40)),
            said("the concert was loud", NOW - timedelta(days=9)),
            said("another concert soon", NOW - timedelta(days=1)),
        ],
    )
    # Plain words: newest first among equals. "last week" (4-10 March) brings message 2 first.
    found, _ = await recall.search_messages("agent-1", "concert")
    assert seqs(found)[0] == 3
    found, total = await recall.search_messages("agent-1", "concert last week")
    assert (seqs(found)[0], total) == (2, 3)
    # Only a time phrase: the messages of that span, in time order.
    found, total = await recall.search_messages("agent-1", "yesterday")
    assert (seqs(found), total) == ([3], 1)
    # No word matches ("happened"): the span's messages still come, before the other matches.
    found, total = await recall.search_messages("agent-1", "what happened last week")
    assert (seqs(found), total) == ([2], 1)
    assert "the concert was loud" in await recall.search("agent-1", "what happened last week")


async def test_hybrid_search_fuses_keyword_and_vector_rankings(
    store: SQLiteStore, openai_client: openai.AsyncOpenAI, llm_server: FakeLLMServer, sleeps: SleepRecorder
) -> None:
    embedder = OpenAIEmbedder(client=openai_client, model="fake-embed", sleep=sleeps)
    recall = RecallMemory(store, embedder=embedder)
    await recall.record(
        "agent-1",
        [said("what about dinner tonight", NOW), said("my cat sleeps all day", NOW), said("dinner was great", NOW)],
    )
    assert llm_server.embedding_requests == []  # recording never waits for embeddings
    # "what about" is all stop words for keywords; the scripted embeddings are bags of words, so
    # by meaning it is message 1.
    found, _ = await recall.search_messages("agent-1", "what about")
    assert seqs(found)[0] == 1
    assert len(llm_server.embedding_requests) == 2  # the three messages (one batch), then the query
    assert await store.messages_without_embedding("agent-1", "fake-embed", limit=10) == []
    # "dinner": 3 and 1 say it (3 is shorter), 2 has it in its context (message 1); the vectors agree.
    found, total = await recall.search_messages("agent-1", "dinner")
    assert seqs(found) == [3, 1, 2] and total == 3


async def test_hybrid_search_falls_back_to_keywords_when_embeddings_fail(
    store: SQLiteStore, openai_client: openai.AsyncOpenAI, llm_server: FakeLLMServer, sleeps: SleepRecorder
) -> None:
    embedder = OpenAIEmbedder(client=openai_client, model="fake-embed", sleep=sleeps, max_retries=0)
    recall = RecallMemory(store, embedder=embedder)
    await recall.record("agent-1", [said("dinner was great", NOW), said("my cat sleeps", NOW)])
    llm_server.fail_embeddings(503)
    found, total = await recall.search_messages("agent-1", "cat")
    assert (seqs(found), total) == ([2], 1)
    llm_server.fail_embeddings(None)
    assert await recall.embed_missing("agent-1") == 2  # caught up once the endpoint is back


async def test_hybrid_search_ranks_by_the_fusion_with_its_neighbourhood(
    store: SQLiteStore, openai_client: openai.AsyncOpenAI, llm_server: FakeLLMServer, sleeps: SleepRecorder
) -> None:
    embedder = OpenAIEmbedder(client=openai_client, model="fake-embed", sleep=sleeps)
    recall = RecallMemory(store, embedder=embedder)
    texts = [
        "my kayak has a leak",  # 1: an isolated mention
        "the soup needs salt",
        "bread rises overnight",
        "we rent a canoe on the river",  # 4-6: a stretch of talk about the river trip
        "the river trip is on sunday",
        "bring the canoe paddles for the river",
        "tea or coffee",
    ]
    await recall.record("agent-1", [said(t, NOW) for t in texts])
    found, _ = await recall.search_messages("agent-1", "kayak or canoe on the river", limit=7)
    by_words, _ = await store.search_messages("agent-1", "kayak or canoe on the river", limit=50)
    (vector,) = await embedder.embed(["kayak or canoe on the river"])
    by_meaning, _ = await store.search_messages_vector("agent-1", vector, embedding_model="fake-embed", limit=50)
    assert seqs(found) == seqs(fuse_rankings([by_words, by_meaning]))[:7]
    # The stretch about the river comes first; the isolated kayak, second by plain fusion, falls behind it.
    assert set(seqs(found)[:3]) == {4, 5, 6}
    assert seqs(fuse_rankings([by_words, by_meaning], neighbour_weight=0)).index(1) == 1
    assert seqs(found).index(1) > 2


async def test_hybrid_search_embeds_each_sentence_and_stores_their_mean(
    store: SQLiteStore,
    tmp_path: Path,
    openai_client: openai.AsyncOpenAI,
    llm_server: FakeLLMServer,
    sleeps: SleepRecorder,
) -> None:
    embedder = OpenAIEmbedder(client=openai_client, model="fake-embed", sleep=sleeps)
    recall = RecallMemory(store, embedder=embedder)
    await recall.record("agent-1", [said("the kayak leaks. we patched it on sunday.", NOW), said("tea or coffee", NOW)])
    await recall.search_messages("agent-1", "boat repairs")
    batch, query = (r.body["input"] for r in llm_server.embedding_requests)
    assert batch == ["the kayak leaks.", "we patched it on sunday.", "tea or coffee"]
    assert query == ["boat repairs"]
    # Message 1's vector is the mean of its two sentences' (bags of words, scaled to length 1): searched
    # with that mean, or with either sentence's own vector, it comes first.
    mean = mean_unit_vector([embed_text("the kayak leaks."), embed_text("we patched it on sunday.")])
    for vector in (mean, embed_text("the kayak leaks."), embed_text("we patched it on sunday.")):
        found, _ = await store.search_messages_vector("agent-1", vector, embedding_model="fake-embed", limit=2)
        assert seqs(found) == [1, 2]
    with closing(sqlite3.connect(tmp_path / "membot.sqlite3")) as conn:
        (blob,) = conn.execute(
            "SELECT e.embedding FROM message_embeddings e JOIN messages m ON m.id = e.id WHERE m.seq = 1"
        ).fetchone()
    assert list(struct.unpack(f"<{len(mean)}f", blob)) == pytest.approx(mean, abs=1e-6)
