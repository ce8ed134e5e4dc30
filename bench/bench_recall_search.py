"""Recall search and date-range latency of a memory store with one agent holding N messages.

    python bench/bench_recall_search.py --messages 10000 1000000 --store sqlite

Each run fills a fresh store with N synthetic chat messages (deterministic: a fixed seed,
a made-up vocabulary drawn with a Zipf-Mandelbrot distribution mixed with English function
words, roles alternating user/assistant, a message every ~30 s), bulk-inserted through
`append_messages` in batches, then times `search_messages` for ~200 queries of 1-3 content
words (drawn from the same distribution, so common words are searched often), the same queries
as `conversation_search` makes them during a turn (`RecallMemory.search_messages` with the turn's
bounds: the last 50 messages in the context window, the newest 2 the turn's own; two bounded
store searches 50 deep, then the fusion), and `messages_between` for random one-day windows.
Times are wall-clock per call, p50 and p95.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from bot.memory.recall import RecallMemory, TurnBounds
from bot.memory.sqlite import SQLiteStore
from bot.memory.store import AgentRecord, MemoryStore, MessageRole, NewMessage
from bot.memory.text_terms import message_contexts

START = datetime(2024, 1, 1, tzinfo=UTC)
AGENT_ID = "bench-agent"
FUNCTION_WORDS = [
    "the",
    "a",
    "to",
    "i",
    "you",
    "and",
    "it",
    "is",
    "of",
    "that",
    "in",
    "for",
    "on",
    "me",
    "my",
    "be",
    "this",
    "was",
    "have",
    "so",
    "with",
    "but",
    "are",
    "not",
    "do",
    "at",
    "just",
    "if",
    "we",
    "what",
    "your",
    "can",
    "get",
    "all",
    "like",
    "about",
    "or",
    "there",
    "out",
    "up",
    "no",
    "one",
    "know",
    "they",
    "don't",
    "it's",
    "i'm",
]
SPEAKERS = ("alice", "bob", "carol", "dave", "erin")


@dataclass(frozen=True, slots=True, kw_only=True)
class Corpus:
    """A vocabulary and its word probabilities; content words first, function words last."""

    words: np.ndarray
    probabilities: np.ndarray
    content_words: int


def zipf_mandelbrot(n: int, *, q: float, s: float) -> np.ndarray:
    weights = 1.0 / (np.arange(1, n + 1, dtype=np.float64) + q) ** s
    return weights / weights.sum()


def make_corpus(rng: np.random.Generator, *, content_words: int = 20_000) -> Corpus:
    """Pronounceable made-up words (some with -ing/-ed/-s endings for the stemmer), ~45 % function words."""
    onsets = [*"bcdfghjklmnprstvwz", "ch", "sh", "th", "st", "tr", "br", "pl"]
    vowels = ["a", "e", "i", "o", "u", "ai", "ea", "oo", "ou"]
    endings = ["", "", "", "ing", "ed", "s", "er", "ly", "tion", "ness"]
    seen: set[str] = set()
    while len(seen) < content_words:
        syllables = int(rng.integers(1, 4))
        word = "".join(onsets[rng.integers(len(onsets))] + vowels[rng.integers(len(vowels))] for _ in range(syllables))
        word += endings[rng.integers(len(endings))]
        if len(word) > 2:
            seen.add(word)
    words = sorted(seen)
    rng.shuffle(words)  # rank order independent of spelling
    content = zipf_mandelbrot(content_words, q=10.0, s=1.05) * 0.55
    function = zipf_mandelbrot(len(FUNCTION_WORDS), q=1.0, s=1.0) * 0.45
    return Corpus(
        words=np.array(words + FUNCTION_WORDS, dtype=object),
        probabilities=np.concatenate([content, function]),
        content_words=content_words,
    )


def messages(corpus: Corpus, rng: np.random.Generator, count: int, *, batch: int) -> Iterator[list[NewMessage]]:
    """Batches of synthetic chat messages: 1-80 words (median ~10), ~30 s apart."""
    made = 0
    clock = 0.0
    while made < count:
        n = min(batch, count - made)
        lengths = np.clip(rng.lognormal(2.3, 0.6, n).astype(int), 1, 80)
        tokens = corpus.words[rng.choice(len(corpus.probabilities), size=int(lengths.sum()), p=corpus.probabilities)]
        gaps = rng.exponential(30.0, n)
        out: list[NewMessage] = []
        position = 0
        for i, length in enumerate(lengths):
            clock += float(gaps[i])
            role: MessageRole = "user" if (made + i) % 2 == 0 else "assistant"
            text = " ".join(tokens[position : position + length])
            position += length
            out.append(
                NewMessage(
                    role=role,
                    content=text,
                    created_at=START + timedelta(seconds=clock),
                    tokens=int(length),
                    speaker_name=SPEAKERS[(made + i) // 2 % len(SPEAKERS)] if role == "user" else "membot",
                )
            )
        made += n
        yield out


def queries(corpus: Corpus, rng: np.random.Generator, count: int) -> list[str]:
    """1-3 content words drawn by frequency; one query in ten also carries a function word."""
    content = corpus.probabilities[: corpus.content_words] / corpus.probabilities[: corpus.content_words].sum()
    out = []
    for _ in range(count):
        words = list(corpus.words[rng.choice(corpus.content_words, size=int(rng.integers(1, 4)), p=content)])
        if rng.random() < 0.1:
            words.insert(0, FUNCTION_WORDS[int(rng.integers(len(FUNCTION_WORDS)))])
        out.append(" ".join(words))
    return out


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def timed[T](samples: list[float], awaitable: Awaitable[T]) -> T:
    started = time.perf_counter()
    result = await awaitable
    samples.append((time.perf_counter() - started) * 1000)
    return result


def open_store(kind: str, directory: Path, rank_window: int | None) -> MemoryStore:
    if kind == "sqlite":
        options = {} if rank_window is None else {"rank_window": rank_window}
        return SQLiteStore(directory / "bench.sqlite3", **options)
    raise SystemExit(f"unknown store {kind!r}")


async def run(
    kind: str, count: int, *, n_queries: int, batch: int, seed: int, directory: Path, rank_window: int | None,
    with_context: bool = True,
) -> dict[str, float]:  # fmt: skip
    rng = np.random.default_rng(seed)
    corpus = make_corpus(rng)
    store = open_store(kind, directory, rank_window)
    await store.open()
    try:
        record = AgentRecord(
            id=AGENT_ID, name=AGENT_ID, conversation_key=None, persona_template="sam", human_template="basic",
            model="bench", created_at=START, updated_at=START,
        )  # fmt: skip
        await store.create_agent(record, [])
        started = time.perf_counter()
        previous: str | None = None
        for i, chunk in enumerate(messages(corpus, rng, count, batch=batch)):
            if with_context:  # as `RecallMemory.record` stores them: each with the message before
                contexts = message_contexts(previous, [(m.role, m.content) for m in chunk])
                chunk = [replace(m, context=c) for m, c in zip(chunk, contexts, strict=True)]
                previous = chunk[-1].content
            last = (await store.append_messages(AGENT_ID, chunk))[-1]
            if count >= 100_000 and i % 10 == 9:
                print(f"  filled {last.seq:>9,} messages ({time.perf_counter() - started:6.1f} s)", file=sys.stderr)
        fill = time.perf_counter() - started

        qs = queries(corpus, np.random.default_rng(seed + 1), n_queries)
        for q in qs[:20]:  # warm the page cache and the statement cache
            await store.search_messages(AGENT_ID, q)
        search_ms: list[float] = []
        totals: list[int] = []
        for q in qs:
            _, total = await timed(search_ms, store.search_messages(AGENT_ID, q, limit=5))
            totals.append(total)

        recall = RecallMemory(store)
        bounds = TurnBounds(context_start_seq=last.seq - 49, turn_start_seq=last.seq - 1)
        recall_ms: list[float] = []
        for q in qs:
            await timed(recall_ms, recall.search_messages(AGENT_ID, q, limit=5, bounds=bounds))

        span = last.created_at - START
        between_ms: list[float] = []
        window = timedelta(days=1)
        for _ in range(n_queries):
            start = START + span * float(rng.random()) - window / 2
            await timed(between_ms, store.messages_between(AGENT_ID, start, start + window, limit=5))
    finally:
        await store.close()
    return {
        "messages": count,
        "fill_s": fill,
        "fill_rate": count / fill,
        "search_p50": statistics.median(search_ms),
        "search_p95": percentile(search_ms, 0.95),
        "recall_p50": statistics.median(recall_ms),
        "recall_p95": percentile(recall_ms, 0.95),
        "matches_p50": statistics.median(totals),
        "matches_p95": percentile([float(t) for t in totals], 0.95),
        "between_p50": statistics.median(between_ms),
        "between_p95": percentile(between_ms, 0.95),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, nargs="+", default=[10_000], help="history sizes to test")
    parser.add_argument("--store", choices=["sqlite"], default="sqlite")
    parser.add_argument("--queries", type=int, default=200, help="timed calls of each kind")
    parser.add_argument("--batch", type=int, default=10_000, help="messages per append_messages call")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rank-window", type=int, default=None, help="SQLite: bm25 window (default: the store's)")
    parser.add_argument("--dir", type=Path, default=None, help="where to put the store (default: a temp dir)")
    parser.add_argument(
        "--no-context", action="store_true", help="index messages without the message before (pre-v4 stores)"
    )
    args = parser.parse_args()

    rows = []
    for count in args.messages:
        with tempfile.TemporaryDirectory(dir=args.dir, prefix="membot-bench-") as tmp:
            print(f"{args.store}: {count:,} messages ...", file=sys.stderr)
            row = asyncio.run(
                run(
                    args.store,
                    count,
                    n_queries=args.queries,
                    batch=args.batch,
                    seed=args.seed,
                    directory=Path(tmp),
                    rank_window=args.rank_window,
                    with_context=not args.no_context,
                )
            )
            row["size_mb"] = sum(p.stat().st_size for p in Path(tmp).iterdir()) / 1e6
            rows.append(row)
    window = "default" if args.rank_window is None else f"{args.rank_window:,}"
    print(f"\nstore: {args.store} (rank window {window}), one agent, {args.queries} timed calls each, limit 5, ms\n")
    header = (
        "| messages | fill | fill rate | file | search p50 | search p95 | conversation_search p50 | p95 "
        "| matches p50/p95 | between p50 | between p95 |"
    )
    print(header)
    print("|" + "|".join("---:" for _ in range(header.count("|") - 1)) + "|")
    for r in rows:
        print(
            f"| {r['messages']:,.0f} | {r['fill_s']:.1f} s | {r['fill_rate']:,.0f}/s | {r['size_mb']:.0f} MB "
            f"| {r['search_p50']:.2f} | {r['search_p95']:.2f} | {r['recall_p50']:.2f} | {r['recall_p95']:.2f} "
            f"| {r['matches_p50']:,.0f} / {r['matches_p95']:,.0f} "
            f"| {r['between_p50']:.2f} | {r['between_p95']:.2f} |"
        )


if __name__ == "__main__":
    main()
