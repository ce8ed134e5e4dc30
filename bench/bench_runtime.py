"""Runtime benchmarks: bot overhead per message through the whole runtime, many agents at once,
the heartbeat tick at scale, memory per idle agent.

    .venv/bin/python -m bench.bench_runtime                    # all sections, SQLite
    .venv/bin/python -m bench.bench_runtime --agents 1000 --latency 1.0

The LLM is the scripted server in a process of its own, answering after `--latency` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.bench_engine import TimedModel
from bot.agent.directory import AgentDirectory
from bot.agent.llm import OpenAIChatModel, make_openai_client
from bot.agent.loop import AgentLoop
from bot.agent.options import shipped_options
from bot.agent.tokens import TokenCounter
from bot.events import InboundMessage, ReplySink
from bot.memory.sqlite import SQLiteStore
from bot.metering import LimitedChatModel
from bot.ops.budgets import DailyBudgets
from bot.ops.metrics import Metrics
from bot.runtime import Runtime, RuntimeOptions

MODEL = "gpt-4o-mini"


@contextmanager
def llm_server(latency: float) -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.llm_process", "--latency", str(latency)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        yield process.stdout.readline().strip()
    finally:
        process.terminate()
        process.wait(timeout=10)


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Deliveries:
    """The platform side: when each conversation got its reply."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.done = asyncio.Event()
        self.expected = 0

    def sink(self, message: InboundMessage) -> ReplySink:
        deliveries = self

        class _Sink:
            async def send(self, text: str) -> str | None:
                deliveries.at.setdefault(message.conversation_key, time.perf_counter())
                if len(deliveries.at) >= deliveries.expected:
                    deliveries.done.set()
                return None

            async def typing(self) -> None:
                pass

        return _Sink()


async def build(base_url: str, store: SQLiteStore, *, max_concurrent: int) -> AgentLoop:
    client = make_openai_client(base_url=base_url, api_key="bench", timeout=60)
    model = LimitedChatModel(OpenAIChatModel(client=client, model=MODEL, max_retries=0), max_concurrent=max_concurrent)
    return AgentLoop(
        store=store,
        model=model,
        counter=TokenCounter(model=MODEL),
        embedder=None,
        options=shipped_options(context_window=128_000, max_output_tokens=1000, summary_words=200),
    )


async def event_loop_lag(stop: asyncio.Event, samples: list[float]) -> None:
    while not stop.is_set():
        start = time.perf_counter()
        await asyncio.sleep(0.01)
        samples.append((time.perf_counter() - start - 0.01) * 1000)


async def burst(base_url: str, agents: int, latency: float, max_concurrent: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "bench.sqlite3")
        await store.open()
        directory = AgentDirectory(store, core_block_limit=2000)
        ids = [
            (
                await directory.create(
                    name=f"agent-{i}",
                    persona="I am Sam.",
                    human="unknown",
                    persona_template="sam",
                    human_template="basic",
                    model=MODEL,
                )
            ).id
            for i in range(agents)
        ]
        deliveries = Deliveries()
        deliveries.expected = agents
        runtime = Runtime(
            store=store,
            loop=await build(base_url, store, max_concurrent=max_concurrent),
            sinks={"bench": deliveries.sink},
            options=RuntimeOptions(owner="bench"),
            # As `membot run` has them: metrics observed, every turn's usage charged to the store.
            observer=Metrics(),
            meter=DailyBudgets(store=store, tokens_per_server=0, tokens_per_user=0),
        )
        await runtime.start()
        lag: list[float] = []
        stop = asyncio.Event()
        lag_task = asyncio.create_task(event_loop_lag(stop, lag))
        sent: dict[str, float] = {}
        start = time.perf_counter()
        for i, agent_id in enumerate(ids):
            key = f"conv-{i}"
            message = InboundMessage(
                platform="bench",
                conversation_key=key,
                speaker_id="u",
                speaker_name="user",
                text=f"hello number {i}",
                sent_at=datetime.now(UTC),
                platform_message_id=f"m{i}",
            )
            sent[key] = time.perf_counter()
            await runtime.submit(agent_id, message, keys=[f"m{i}"])
        await asyncio.wait_for(deliveries.done.wait(), timeout=latency * agents + 120)
        elapsed = time.perf_counter() - start
        stop.set()
        await lag_task
        await runtime.stop()
        await store.close()
    waits = sorted(deliveries.at[k] - sent[k] for k in sent)
    p99 = waits[int(len(waits) * 0.99) - 1]
    print(
        f"{agents} agents, LLM latency {latency:.1f} s, limit {max_concurrent}: "
        f"{agents / elapsed:.0f} replies/s, reply p50 {statistics.median(waits):.3f} s, p99 {p99:.3f} s; "
        f"event-loop lag p50 {statistics.median(lag):.1f} ms, max {max(lag):.1f} ms"
    )


async def runtime_overhead(base_url: str, messages: int) -> None:
    """What one message costs membot itself, end to end through the runtime as `membot run` has
    it (inbox, lease, turn, reply, usage charged, metrics observed): the time from `submit` to
    the reply reaching the platform, minus the time spent inside the LLM call (SDK, HTTP, server)."""
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "bench.sqlite3")
        await store.open()
        agent = await AgentDirectory(store, core_block_limit=2000).create(
            name="bench",
            persona="I am Sam.",
            human="unknown",
            persona_template="sam",
            human_template="basic",
            model=MODEL,
        )
        client = make_openai_client(base_url=base_url, api_key="bench", timeout=60)
        timed = TimedModel(OpenAIChatModel(client=client, model=MODEL, max_retries=0))
        loop = AgentLoop(
            store=store,
            model=LimitedChatModel(timed, max_concurrent=16),
            counter=TokenCounter(model=MODEL),
            embedder=None,
            options=shipped_options(context_window=128_000, max_output_tokens=1000, summary_words=200),
        )
        delivered = asyncio.Event()

        class _Sink:
            async def send(self, text: str) -> str | None:
                delivered.set()
                return None

            async def typing(self) -> None:
                pass

        runtime = Runtime(
            store=store,
            loop=loop,
            sinks={"bench": lambda _message: _Sink()},
            options=RuntimeOptions(owner="bench"),
            observer=Metrics(),
            meter=DailyBudgets(store=store, tokens_per_server=0, tokens_per_user=0),
        )
        await runtime.start()
        overheads: list[float] = []
        for i in range(messages):
            message = InboundMessage(
                platform="bench",
                conversation_key="bench:server:channel:1",
                speaker_id="u",
                speaker_name="user",
                text=f"tell me about number {i}",
                sent_at=datetime.now(UTC),
                platform_message_id=f"m{i}",
                scope="bench:server",
            )
            delivered.clear()
            llm_before = timed.llm_seconds
            start = time.perf_counter()
            await runtime.submit(agent.id, message, keys=[f"m{i}"])
            await delivered.wait()
            overheads.append((time.perf_counter() - start - (timed.llm_seconds - llm_before)) * 1000)
            await runtime.wait_idle()
        await runtime.stop()
        await store.close()
    overheads.sort()
    print(
        f"{messages} messages to one agent, submit -> reply delivered, excluding LLM time: "
        f"median {statistics.median(overheads):.2f} ms, p95 {overheads[int(len(overheads) * 0.95) - 1]:.2f} ms"
    )


async def tick_cost(agents: int) -> None:
    from bot.memory.store import AgentRecord

    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "bench.sqlite3")
        await store.open()
        now = datetime(2026, 5, 1, tzinfo=UTC)
        for i in range(agents):
            agent = AgentRecord(
                id=f"a{i}",
                name=f"agent-{i}",
                conversation_key=None,
                persona_template="sam",
                human_template="basic",
                model=MODEL,
                created_at=now,
                updated_at=now,
            )
            await store.create_agent(agent, [])
            # A tenth are due now; the rest later.
            await store.schedule_heartbeat(
                agent.id, due_at=now - timedelta(minutes=1) if i % 10 == 0 else now + timedelta(hours=1)
            )
        timings = []
        for _ in range(20):
            start = time.perf_counter()
            claimed = await store.claim_due_heartbeats(
                "bench", now=now, claim_until=now + timedelta(minutes=10), limit=50
            )
            timings.append((time.perf_counter() - start) * 1000)
            assert len(claimed) == 50
        await store.close()
    print(
        f"heartbeat claim with {agents:,} agents scheduled: median {statistics.median(timings):.1f} ms per tick (50 claimed)"
    )


async def idle_memory(base_url: str, agents: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "bench.sqlite3")
        await store.open()
        directory = AgentDirectory(store, core_block_limit=2000)
        deliveries = Deliveries()
        deliveries.expected = agents
        runtime = Runtime(
            store=store,
            loop=await build(base_url, store, max_concurrent=64),
            sinks={"bench": deliveries.sink},
            options=RuntimeOptions(owner="bench"),
        )
        await runtime.start()
        gc.collect()
        before = rss_mb()
        for i in range(agents):
            agent = await directory.create(
                name=f"agent-{i}",
                persona="I am Sam.",
                human="unknown",
                persona_template="sam",
                human_template="basic",
                model=MODEL,
            )
            message = InboundMessage(
                platform="bench",
                conversation_key=f"conv-{i}",
                speaker_id="u",
                speaker_name="user",
                text="hello",
                sent_at=datetime.now(UTC),
                platform_message_id=f"m{i}",
            )
            await runtime.submit(agent.id, message, keys=[f"m{i}"])
            if i % 200 == 199:
                await runtime.wait_idle()
        await runtime.wait_idle()
        gc.collect()
        after = rss_mb()
        await runtime.stop()
        await store.close()
    print(
        f"{agents:,} agents each served once, then idle: RSS {before:.0f} -> {after:.0f} MB "
        f"({(after - before) * 1024 / agents:.1f} KB per known agent)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=200, help="messages for the per-message overhead")
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--tick-agents", type=int, default=100_000)
    parser.add_argument("--idle-agents", type=int, default=10_000)
    args = parser.parse_args()
    with llm_server(0.0) as base_url:
        print("## Overhead per message through the runtime (SQLite, LLM answering at once, its time excluded)")
        asyncio.run(runtime_overhead(base_url, args.messages))
    with llm_server(args.latency) as base_url:
        print("\n## Burst: every agent gets one message at once")
        asyncio.run(burst(base_url, args.agents, args.latency, max_concurrent=args.agents))
        asyncio.run(burst(base_url, args.agents, args.latency, max_concurrent=max(1, args.agents // 4)))
    print("\n## Heartbeat tick")
    asyncio.run(tick_cost(args.tick_agents))
    with llm_server(0.0) as base_url:
        print("\n## Memory per known-but-idle agent")
        asyncio.run(idle_memory(base_url, args.idle_agents))


if __name__ == "__main__":
    main()
