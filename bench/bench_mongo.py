"""Recall latency of `MongoStore`: search_messages and append_messages at 10k and 100k messages per agent.

    python bench/bench_mongo.py [--sizes 10000 100000] [--uri mongodb://...]

Without `--uri` it runs on a mongoeco wire server (pure Python, in this process's machine, its
in-memory engine scanning without indexes): the figures say how the store's round trips and
bm25 pipeline behave there, NOT how MongoDB performs. Point `--uri` at a real server to measure that.
The wire server also loads slowly (tens of ms per message, growing with the collection, since it
scans instead of using indexes): 10k messages take tens of minutes there and 100k is out of
reach, so use e.g. `--sizes 1000 3000` on it and the default sizes on a real server.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.memory.mongo import MongoStore  # noqa: E402 - needs the path above
from bot.memory.store import AgentRecord, NewMessage  # noqa: E402

T0 = datetime(2024, 1, 1, tzinfo=UTC)
VOCABULARY = [
    "the",
    "a",
    "and",
    "to",
    "of",
    "i",
    "you",
    "it",
    "is",
    "that",
    "in",
    "we",
    "for",
    "on",
    "was",
    "with",
    "this",
    "have",
    "be",
    "my",
    "me",
    "just",
    "so",
    "what",
    "but",
    "not",
    "are",
    "do",
    "can",
    "like",
    "all",
    "if",
    "know",
    "your",
    "they",
    "out",
    "up",
    "get",
    "one",
    "about",
    "think",
    "time",
    "when",
    "good",
    "now",
    "how",
    "going",
    "want",
    "would",
    "see",
    "really",
    "people",
    "go",
    "make",
    "well",
    "right",
    "day",
    "some",
    "back",
    "more",
    "there",
    "work",
    "need",
    "thing",
    "today",
    "tomorrow",
    "love",
    "home",
    "week",
    "meeting",
    "dinner",
    "coffee",
    "movie",
    "music",
    "book",
    "game",
    "project",
    "deadline",
    "trip",
    "family",
    "birthday",
    "friend",
    "weather",
    "running",
    "garden",
    "cat",
    "dog",
    "pizza",
    "train",
    "office",
    "doctor",
    "holiday",
    "concert",
    "recipe",
    "python",
    "database",
    "server",
    "memory",
    "search",
    "vector",
    "river",
    "mountain",
    "beach",
    "summer",
    "winter",
    "autumn",
    "spring",
    "sister",
    "brother",
    "mother",
    "father",
    "teacher",
    "student",
    "guitar",
    "piano",
    "painting",
    "photo",
    "camera",
    "bicycle",
    "marathon",
]
QUERIES = ["birthday", "coffee meeting", "dog running park", "python database", "holiday trip family", "guitar"]


def sentence(rnd: random.Random) -> str:
    # Zipf-like: common words far more often than rare ones, as in chat.
    return " ".join(
        VOCABULARY[min(int(rnd.paretovariate(1.1)) - 1, len(VOCABULARY) - 1)] for _ in range(rnd.randint(4, 30))
    )


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def bench(uri: str, size: int, rnd: random.Random) -> dict[str, list[float]]:
    store = MongoStore(uri, database=f"membot_bench_{uuid.uuid4().hex[:8]}", connect_timeout_s=60)
    await store.open()
    try:
        agent = AgentRecord(
            id="bench", name="bench", conversation_key=None, persona_template="p", human_template="h", model="m",
            created_at=T0, updated_at=T0,
        )  # fmt: skip
        await store.create_agent(agent, [])
        loaded = 0
        while loaded < size:
            batch = [
                NewMessage(
                    role=rnd.choice(("user", "assistant")),
                    content=sentence(rnd),
                    created_at=T0 + timedelta(seconds=loaded + i),
                    tokens=20,
                    speaker_name=rnd.choice(("Ann", "Bob", None)),
                )
                for i in range(min(100, size - loaded))
            ]
            await store.append_messages("bench", batch)
            loaded += len(batch)
        timings: dict[str, list[float]] = {"search": [], "append": []}
        for i in range(30):
            started = time.perf_counter()
            await store.search_messages("bench", QUERIES[i % len(QUERIES)], limit=5)
            timings["search"].append(time.perf_counter() - started)
        for i in range(30):
            started = time.perf_counter()
            message = NewMessage(
                role="user", content=sentence(rnd), created_at=T0 + timedelta(days=1, seconds=i), tokens=20
            )
            await store.append_messages("bench", [message])
            timings["append"].append(time.perf_counter() - started)
        return timings
    finally:
        await store.close()


async def run(uri: str, sizes: list[int]) -> list[tuple[str, str, float, float]]:
    rnd, rows = random.Random(1), []
    for size in sizes:
        timings = await bench(uri, size, rnd)
        for name, values in timings.items():
            ms = [v * 1000 for v in values]
            rows.append((f"{size:,}", name, statistics.median(ms), percentile(ms, 95)))
            print(f"  {size:,} messages: {name} median {rows[-1][2]:.1f} ms, p95 {rows[-1][3]:.1f} ms", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--uri", help="a real MongoDB (default: a mongoeco wire server)")
    args = parser.parse_args()
    server = None
    if args.uri:
        uri, label = args.uri, f"MongoDB at {args.uri.split('@')[-1]}"
    else:
        # The wire server gets a process of its own: in this one it would share the GIL with the
        # client, and pymongo's heartbeats would time out while it works.
        code = "from tests.contract.mongo_backend import WireServer; import sys; print(WireServer().start(), flush=True); sys.stdin.read()"
        server = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT
        )
        assert server.stdout is not None
        uri, label = server.stdout.readline().strip(), "mongoeco wire server, not MongoDB"
    try:
        rows = asyncio.run(run(uri, args.sizes))
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
    print(f"\nMongoStore recall latency ({label}); 30 calls each, milliseconds")
    print(f"{'messages/agent':>15} {'operation':>10} {'median':>10} {'p95':>10}")
    for size_label, name, median, p95 in rows:
        print(f"{size_label:>15} {name:>10} {median:>10.1f} {p95:>10.1f}")


if __name__ == "__main__":
    main()
