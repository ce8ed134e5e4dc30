"""The console's pages at scale: 1,000 agents, one of them with 100,000 messages in recall.

    python -m bench.bench_console [--agents 1000] [--messages 100000] [--requests 50]

Fills an embedded (SQLite) store, serves the console from the ops server on a loopback port as
`membot run` does, logs in, and times whole HTTP requests (server and client in one process):
the big agent's page, the agents list (first page, a server's agents), cost (30 days of usage
for every agent) and audit. The big agent's queue is its newest 2,500 messages (~85k tokens of
a 128k window), as an agent that has compacted holds; everything older is only in recall.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path

from bot.agent.model import ChatMessage, Completion, ToolSchema
from bot.memory.policy_store import AuditEntry
from bot.memory.sqlite import SQLiteStore
from bot.memory.store import AgentUpdate, NewMessage
from bot.memory.usage_store import UsageRecord, summarise
from tests.console.world import MODEL, NOW, Client, World, client, make_world, serving

_WORDS = [
    "the",
    "greenhouse",
    "tomatoes",
    "basil",
    "water",
    "shift",
    "sunday",
    "grace",
    "ada",
    "window",
    "seedlings",
    "compost",
    "rain",
    "frost",
]


class _NoModel:
    """The console never calls the LLM."""

    async def complete(self, messages: Sequence[ChatMessage], *, tools: Sequence[ToolSchema]) -> Completion:
        raise AssertionError("the console called the LLM")


def _text(i: int) -> str:
    return " ".join(_WORDS[(i * 7 + k * 3) % len(_WORDS)] for k in range(8 + i % 17))


async def fill(world: World, *, agents: int, messages: int) -> str:
    """`agents` agents over 50 servers, 30 days of usage each, 1,000 audit entries; returns the big agent's id."""
    started = time.perf_counter()
    ids = []
    for index in range(agents):
        key = f"discord:S{index % 50}:channel:C{index}" if index % 10 else f"slack:T{index % 7}:user:U{index}"
        record = await world.agent(key)
        ids.append(record.id)
        await world.store.append_messages(
            record.id, [NewMessage(role="user", content=_text(index + j), created_at=NOW, tokens=12) for j in range(5)]
        )
    big = ids[0]
    batch = 1_000
    for start in range(0, messages, batch):
        at = NOW - timedelta(minutes=messages - start)
        await world.store.append_messages(
            big,
            [
                NewMessage(
                    role="user" if i % 2 else "assistant",
                    content=_text(i),
                    created_at=at + timedelta(seconds=i - start),
                    tokens=30,
                    speaker_name="Ada" if i % 2 else None,
                )
                for i in range(start, min(start + batch, messages))
            ],
        )
    agent = await world.store.get_agent(big)
    assert agent is not None
    await world.store.update_agent(
        big,
        AgentUpdate(context_start_seq=max(1, messages + 5 - 2_500), summary=_text(3) * 20),
        expected_version=agent.version,
    )
    for back in range(30):
        day = NOW.date() - timedelta(days=back)
        for index, agent_id in enumerate(ids):
            await world.store.record_usage(
                UsageRecord(
                    day=day,
                    scope=f"discord:S{index % 50}",
                    channel=f"C{index}",
                    agent_id=agent_id,
                    model=MODEL,
                    prompt_tokens=900 + index,
                    completion_tokens=90,
                    calls=1,
                )
            )
    for n in range(1_000):
        await world.store.append_audit(
            AuditEntry(
                at=NOW - timedelta(minutes=n),
                scope=f"discord:S{n % 50}",
                actor_id="A1",
                actor_name="Ada",
                action="pause",
                agent_id=ids[n % agents],
            )
        )
    print(
        f"filled: {agents:,} agents, {messages:,} messages on one, 30 days of usage in {time.perf_counter() - started:.0f} s"
    )
    return big


async def timed(browser: Client, path: str, requests: int) -> tuple[float, float, float]:
    """Median and p95 wall time in ms of `requests` GETs of `path` (after two warm-up requests),
    and the mean CPU time of this process per request (server and client: on a shared machine
    it moves less with the load than wall time does)."""
    for _ in range(2):
        assert (await browser.get(path)).status == 200, path
    times = []
    cpu = time.process_time()
    for _ in range(requests):
        started = time.perf_counter()
        reply = await browser.get(path)
        times.append((time.perf_counter() - started) * 1000)
        assert reply.status == 200, path
    cpu_ms = (time.process_time() - cpu) * 1000 / requests
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1], cpu_ms


async def usage_report(world: World, requests: int) -> None:
    """`membot usage --days 30 --by day,server` the old way (every row to Python, then summed)
    and the store's way (`sum_usage`), over the same rows."""
    since = NOW.date() - timedelta(days=29)
    ways = {
        "list_usage + summarise": lambda: _summarised(world, since),
        "sum_usage": lambda: world.store.sum_usage(since=since, by=("day", "server")),
    }
    print("\n| 30 days of usage by day and server | median |\n|---|---|")
    for name, run in ways.items():
        times = []
        for _ in range(max(3, requests // 10)):
            started = time.perf_counter()
            await run()
            times.append((time.perf_counter() - started) * 1000)
        print(f"| {name} | {statistics.median(times):.0f} ms |")


async def _summarised(world: World, since: date) -> list[UsageRecord]:
    return summarise(await world.store.list_usage(since=since), ("day", "server"))


async def main(agents: int, messages: int, requests: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        store = SQLiteStore(Path(folder) / "membot.sqlite3")
        await store.open()
        try:
            world = make_world(store, _NoModel(), context_window=128_000)
            big = await fill(world, agents=agents, messages=messages)
            async with serving(world) as base, client(base) as browser:
                assert (await browser.login()).status == 303
                pages = {
                    f"agent page ({messages:,} messages in recall)": f"/console/agents/{big}",
                    "agent page with a recall search": f"/console/agents/{big}?recall=basil+frost",
                    f"agents list, first page of {agents:,}": "/console/agents",
                    "agents list, one server": "/console/agents?server=discord:S1",
                    "agents list, last page": f"/console/agents?offset={agents - 50}",
                    f"cost, 30 days x {agents:,} agents": "/console/cost",
                    "audit, 50 newest of 1,000": "/console/audit",
                }
                print("\n| page | median | p95 | CPU per request |\n|---|---|---|---|")
                for name, path in pages.items():
                    median, p95, cpu = await timed(browser, path, requests)
                    print(f"| {name} | {median:.1f} ms | {p95:.1f} ms | {cpu:.1f} ms |")
            await usage_report(world, requests)
        finally:
            await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=1_000)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=50)
    options = parser.parse_args()
    asyncio.run(main(options.agents, options.messages, options.requests))
