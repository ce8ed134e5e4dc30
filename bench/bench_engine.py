"""Engine benchmarks: bot overhead per turn excluding LLM time, prompt tokens per call as a
conversation grows, start-up time and resident memory of `membot chat`.

The LLM is the scripted OpenAI-compatible server from the test suite, answering at once;
the time spent inside `ChatModel.complete` (SDK + HTTP + server) is measured and
subtracted, so "overhead" is what membot itself costs per turn: store reads and writes,
context building, token estimates, function dispatch.

    .venv/bin/python -m bench.bench_engine            # all sections
    .venv/bin/python -m bench.bench_engine --turns 200 --recall 1000 100000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bot.agent.directory import AgentDirectory
from bot.agent.llm import OpenAIChatModel, make_openai_client
from bot.agent.loop import AgentLoop
from bot.agent.model import ChatMessage, Completion, ToolSchema
from bot.agent.options import shipped_options
from bot.agent.tokens import TokenCounter
from bot.events import InboundMessage
from bot.memory.sqlite import SQLiteStore
from bot.memory.store import AgentUpdate, NewMessage
from tests.fakes.llm_server import Computed, FakeLLMServer, TextReply, ToolCallReply, count_prompt_tokens, tool_call

MODEL = "gpt-4o-mini"
WORDS = [
    "the",
    "a",
    "garden",
    "dog",
    "walk",
    "coffee",
    "book",
    "meeting",
    "project",
    "deadline",
    "trip",
    "weekend",
    "family",
    "music",
    "film",
    "recipe",
]


class TimedModel:
    """Delegates to the real client and accumulates the time spent in the LLM call."""

    def __init__(self, inner: OpenAIChatModel) -> None:
        self._inner = inner
        self.llm_seconds = 0.0

    @property
    def model_name(self) -> str:
        return self._inner.model_name

    async def complete(self, messages: Sequence[ChatMessage], *, tools: Sequence[ToolSchema]) -> Completion:
        start = time.perf_counter()
        try:
            return await self._inner.complete(messages, tools=tools)
        finally:
            self.llm_seconds += time.perf_counter() - start


class NullSink:
    async def send(self, text: str) -> str | None:
        return None

    async def typing(self) -> None:
        pass


def answer(body: dict[str, Any]) -> TextReply | ToolCallReply:
    if "tools" not in body:
        return TextReply(text="Summary: the user and the agent talked about daily life.")
    return ToolCallReply(calls=(tool_call("send_message", {"message": "Sure, noted."}),))


def sentence(i: int) -> str:
    return " ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(12)) + f" number {i}"


async def build(base_url: str, path: Path, *, context_window: int) -> tuple[AgentLoop, TimedModel, str, SQLiteStore]:
    store = SQLiteStore(path)
    await store.open()
    client = make_openai_client(base_url=base_url, api_key="bench", timeout=30)
    model = TimedModel(OpenAIChatModel(client=client, model=MODEL, max_retries=0))
    loop = AgentLoop(
        store=store,
        model=model,
        counter=TokenCounter(model=MODEL),
        embedder=None,
        options=shipped_options(context_window=context_window, max_output_tokens=1000, summary_words=200),
    )
    directory = AgentDirectory(store, core_block_limit=2000)
    agent = await directory.create(
        name="bench",
        persona=load_prompt_template("persona", "sam"),
        human=load_prompt_template("human", "basic"),
        persona_template="sam",
        human_template="basic",
        model=MODEL,
    )
    return loop, model, agent.id, store


def load_prompt_template(kind: str, name: str) -> str:
    from bot.agent.templates import load_template

    return load_template(kind, name, user_dir=None)  # type: ignore[arg-type]


async def prefill(store: SQLiteStore, agent_id: str, count: int) -> None:
    """`count` old messages in recall, all but the last 20 already summarised out of the context."""
    start = datetime(2024, 1, 1, tzinfo=UTC)
    batch: list[NewMessage] = []
    for i in range(count):
        batch.append(
            NewMessage(
                role="user" if i % 2 == 0 else "assistant",
                content=sentence(i),
                created_at=start + timedelta(minutes=i),
                tokens=16,
                speaker_name="user" if i % 2 == 0 else None,
            )
        )
        if len(batch) == 10_000:
            await store.append_messages(agent_id, batch)
            batch = []
    if batch:
        await store.append_messages(agent_id, batch)
    agent = await store.get_agent(agent_id)
    assert agent is not None
    await store.update_agent(
        agent_id,
        AgentUpdate(summary="Earlier the user talked about their garden and dog.", context_start_seq=count - 19),
        expected_version=agent.version,
    )


async def overhead(base_url: str, recall_size: int, turns: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        loop, model, agent_id, store = await build(base_url, Path(tmp) / "bench.sqlite3", context_window=128_000)
        await prefill(store, agent_id, recall_size)
        samples: list[float] = []
        sink = NullSink()
        for i in range(turns):
            message = InboundMessage(
                platform="bench",
                conversation_key="bench",
                speaker_id="user",
                speaker_name="user",
                text=sentence(i),
                sent_at=datetime.now(UTC),
            )
            model.llm_seconds = 0.0
            start = time.perf_counter()
            await loop.run_turn(agent_id, [message], reply=sink)
            samples.append((time.perf_counter() - start - model.llm_seconds) * 1000)
        await store.close()
    samples.sort()
    return {
        "median_ms": statistics.median(samples),
        "p95_ms": samples[int(len(samples) * 0.95) - 1],
    }


async def prompt_growth(server: FakeLLMServer, checkpoints: Sequence[int], context_window: int) -> dict[int, int]:
    with tempfile.TemporaryDirectory() as tmp:
        loop, _model, agent_id, store = await build(
            server.base_url, Path(tmp) / "bench.sqlite3", context_window=context_window
        )
        server.enqueue(*[Computed(answer) for _ in range(max(checkpoints) * 3)])
        sink = NullSink()
        tokens: dict[int, int] = {}
        for turn in range(1, max(checkpoints) + 1):
            message = InboundMessage(
                platform="bench",
                conversation_key="bench",
                speaker_id="user",
                speaker_name="user",
                text=sentence(turn) + ". " + sentence(turn + 1),
                sent_at=datetime.now(UTC),
            )
            before = len(server.chat_requests)
            await loop.run_turn(agent_id, [message], reply=sink)
            if turn in checkpoints:
                main_calls = [r for r in server.chat_requests[before:] if "tools" in r.body]
                tokens[turn] = count_prompt_tokens(main_calls[-1].body)
        await store.close()
        server.allow_unused_steps()
    return tokens


def startup(base_url: str, runs: int) -> dict[str, float]:
    """Wall time of `membot chat` from exec to exit on `/exit`, and its peak RSS."""
    times: list[float] = []
    peak_kb = 0
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "OPENAI_BASE_URL": base_url,
            "OPENAI_API_KEY": "bench",
            "MEMBOT_DATA_DIR": tmp,
        }
        membot = Path(sys.executable).parent / "membot"
        for _ in range(runs):
            start = time.perf_counter()
            subprocess.run(
                [str(membot), "chat", "--first", "-y"],
                input="/exit\n",
                env=env,
                text=True,
                capture_output=True,
                check=True,
            )
            times.append(time.perf_counter() - start)
            peak_kb = max(peak_kb, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    return {"median_s": statistics.median(times), "peak_rss_mb": peak_kb / 1024, "held_mb": held_after_turns(env)}


def held_after_turns(env: dict[str, str], turns: int = 20) -> float:
    """Resident memory of a `membot chat` that has answered `turns` messages (what it holds)."""
    membot = Path(sys.executable).parent / "membot"
    process = subprocess.Popen(
        [str(membot), "chat", "--first", "-y", "--agent", "held"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    for i in range(turns):
        process.stdin.write(f"message number {i}: {sentence(i)}\n")
        process.stdin.flush()
        while "Sure, noted." not in process.stdout.readline():
            pass
    with open(f"/proc/{process.pid}/status", encoding="ascii") as status:
        held = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024
    process.stdin.write("/exit\n")
    process.stdin.close()
    process.wait(timeout=30)
    return held


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--recall", type=int, nargs="+", default=[1_000, 100_000])
    parser.add_argument("--growth", type=int, nargs="+", default=[1, 50, 300])
    args = parser.parse_args()
    server_process = subprocess.Popen([sys.executable, "-m", "bench.llm_process"], stdout=subprocess.PIPE, text=True)
    try:
        assert server_process.stdout is not None
        base_url = server_process.stdout.readline().strip()
        print("## Overhead per turn, excluding LLM time (send_message turn, SQLite; LLM server in its own process)")
        for size in args.recall:
            result = asyncio.run(overhead(base_url, size, args.turns))
            print(f"recall {size:>9,} msgs: median {result['median_ms']:.2f} ms, p95 {result['p95_ms']:.2f} ms")
        print("\n## `membot chat` start to exit (no LLM call), 5 runs")
        result = startup(base_url, 5)
        print(
            f"median {result['median_s']:.2f} s, peak RSS {result['peak_rss_mb']:.0f} MB; "
            f"after 20 turns it holds {result['held_mb']:.0f} MB"
        )
    finally:
        server_process.terminate()
        server_process.wait(timeout=10)
    with FakeLLMServer(validate_requests=False) as server:
        print("\n## Prompt tokens of the main call at turn N (server-side count)")
        for window in (128_000, 8_000):
            growth = asyncio.run(prompt_growth(server, args.growth, window))
            cells = ", ".join(f"turn {t}: {n:,}" for t, n in growth.items())
            print(f"window {window:>7,}: {cells}")


if __name__ == "__main__":
    main()
