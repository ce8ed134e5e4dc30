"""The operations HTTP server: /healthz, /readyz flipping with the store (SQLite closed and
reopened; a MongoDB wire server stopped and restarted), the LLM readiness rule, and /metrics
moving as real turns run through the runtime against the scripted LLM server."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.agent.directory import AgentDirectory
from bot.commands import run
from bot.config import load_settings
from bot.memory.mongo import MongoStore
from bot.memory.sqlite import SQLiteStore
from bot.memory.store import MemoryStore
from bot.ops.budgets import DailyBudgets
from bot.ops.http import OpsServer
from bot.ops.metrics import Metrics
from bot.ops.readiness import HTTPProbe, LLMReadiness, Readiness, ReadyComponent
from bot.ops.store_timing import timed_store
from bot.runtime import Runtime, RuntimeOptions
from bot.scheduler import HeartbeatScheduler, SchedulerOptions
from tests.contract.mongo_backend import WireServer
from tests.fakes.discord_fixtures import DiscordFake
from tests.fakes.llm_fixtures import SleepRecorder
from tests.fakes.llm_server import FakeLLMServer, ToolCallReply, http_error, tool_call
from tests.runtime.conftest import MODEL, Clock, Harness, Platform, settle


def reply(text: str) -> ToolCallReply:
    return ToolCallReply(calls=(tool_call("send_message", {"message": text}),), prompt_tokens=500)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Clocked:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def serving(
    store: MemoryStore,
    metrics: Metrics,
    *,
    probe: Callable[[], Awaitable[None]],
    components: Sequence[ReadyComponent] = (),
    timeout_s: float = 2.0,
) -> AsyncIterator[Callable[[str], Awaitable[tuple[int, str]]]]:
    """An `OpsServer` on a free loopback port; yields `get(path) -> (status, body)`."""
    readiness = Readiness(
        store=store,
        components=components,
        llm=LLMReadiness(
            window_s=300,
            last_success=lambda: metrics.last_llm_success,
            note_success=metrics.note_llm_success,
            probe=probe,
        ),
        timeout_s=timeout_s,
    )
    server = OpsServer(host="127.0.0.1", port=0, readiness=readiness, registry=metrics.registry)
    task = asyncio.create_task(server.run())
    async with asyncio.timeout(10):
        await server.wait_serving()
    async with aiohttp.ClientSession() as session:

        async def get(path: str) -> tuple[int, str]:
            async with session.get(f"http://127.0.0.1:{server.bound_port}{path}") as response:
                return response.status, await response.text()

        try:
            yield get
        finally:
            await server.close()
            await asyncio.wait_for(task, 10)


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a /metrics page, keyed by name and labels."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(page: str, name: str, **labels: str) -> float | None:
    return samples(page).get((name, frozenset(labels.items())))


@pytest.fixture
async def harness(
    tmp_path: Path, llm_server: FakeLLMServer, openai_client: openai.AsyncOpenAI, sleeps: SleepRecorder
) -> AsyncIterator[Harness]:
    store = SQLiteStore(tmp_path / "membot.sqlite3")
    await store.open()
    clock = Clock()
    harness = Harness(
        store=store,
        server=llm_server,
        platform=Platform(),
        clock=clock,
        client=openai_client,
        sleeps=sleeps,
        directory=AgentDirectory(store, core_block_limit=2000, clock=clock),
    )
    try:
        yield harness
    finally:
        for runtime in harness.runtimes:
            await runtime.stop(deadline_s=5)
        await store.close()


async def test_healthz_and_metrics_move_when_turns_run(harness: Harness) -> None:
    metrics = Metrics()
    runtime = Runtime(
        store=timed_store(harness.store, metrics),
        loop=harness.loop(),
        sinks={"test": harness.platform.sink},
        options=RuntimeOptions(owner="replica-a", lease_retry_s=0.05),
        clock=harness.clock,
        observer=metrics,
        meter=DailyBudgets(store=harness.store, tokens_per_server=0, tokens_per_user=0, clock=harness.clock),
    )
    scheduler = HeartbeatScheduler(
        store=harness.store, runtime=runtime, options=SchedulerOptions(daily_tokens_per_agent=0), clock=harness.clock
    )
    metrics.watch(runtime, scheduler)
    await runtime.start()
    harness.runtimes.append(runtime)
    agent = await harness.agent("sam")
    probe = HTTPProbe(harness.server.base_url, "test-key")
    async with serving(harness.store, metrics, probe=probe) as get:
        assert await get("/healthz") == (200, "ok\n")
        status, before = await get("/metrics")
        assert status == 200
        assert value(before, "membot_turns_total", kind="message", outcome="ok") is None
        assert value(before, "membot_queue_depth") == 0

        harness.server.enqueue(reply("hello"))
        await runtime.submit(agent, harness.message("hi", msg_id="m1"), keys=["m1"])
        await settle(runtime)
        _, after = await get("/metrics")
        assert value(after, "membot_turns_total", kind="message", outcome="ok") == 1
        assert value(after, "membot_turn_seconds_count", kind="message") == 1
        assert value(after, "membot_llm_calls_total", model=MODEL, outcome="ok") == 1
        assert value(after, "membot_llm_call_seconds_count", model=MODEL) == 1
        assert value(after, "membot_llm_tokens_total", model=MODEL, type="prompt") == 500
        completion = value(after, "membot_llm_tokens_total", model=MODEL, type="completion")
        assert completion is not None
        assert completion > 0
        inbox_puts = value(after, "membot_store_call_seconds_count", operation="inbox_put")
        assert inbox_puts == 1
        assert value(after, "membot_heartbeats_total", result="fired") == 0
        await harness.store.schedule_heartbeat(agent, due_at=harness.clock())
        assert await scheduler.tick() == 0  # reflection is off (no daily tokens): skipped by the scheduler
        _, skipped = await get("/metrics")
        assert value(skipped, "membot_heartbeats_total", result="skipped") == 1
        assert value(after, "membot_leases_held") == 0
        assert value(after, "membot_llm_last_success_timestamp_seconds") is not None

        # The endpoint fails every retry: the call and the turn count as failed.
        harness.server.enqueue(http_error(500), http_error(500))
        await runtime.submit(agent, harness.message("hello?", msg_id="m2"), keys=["m2"])
        await settle(runtime)
        _, failed = await get("/metrics")
        assert value(failed, "membot_llm_errors_total", model=MODEL, error="LLMUnavailableError") == 1
        assert value(failed, "membot_llm_calls_total", model=MODEL, outcome="error") == 1
        assert value(failed, "membot_turns_total", kind="message", outcome="failed") == 1
        assert value(failed, "membot_turns_total", kind="message", outcome="ok") == 1


async def test_readiness_flips_when_the_sqlite_store_closes_and_reopens(harness: Harness) -> None:
    metrics = Metrics()
    metrics.note_llm_success()
    store = harness.store
    assert isinstance(store, SQLiteStore)
    async with serving(store, metrics, probe=HTTPProbe(harness.server.base_url, None)) as get:
        status, body = await get("/readyz")
        assert status == 200, body
        await store.close()
        status, body = await get("/readyz")
        assert status == 503
        assert '"store": {"ok": false' in body
        assert "not open" in body
        assert await get("/healthz") == (200, "ok\n"), "alive while not ready"
        await store.open()
        status, body = await get("/readyz")
        assert status == 200, body


async def test_readiness_flips_when_mongodb_goes_away_and_comes_back(tmp_path: Path) -> None:
    port = free_port()
    server = WireServer(engine="sqlite", path=tmp_path / "server.sqlite3", port=port)
    server.start()
    store = MongoStore(server.uri, database="membot_test_readyz", connect_timeout_s=0.5)
    metrics = Metrics()
    metrics.note_llm_success()
    try:
        await store.open()

        async def never_called() -> None:
            raise AssertionError("the LLM answered recently: no probe")

        async with serving(store, metrics, probe=never_called, timeout_s=1.0) as get:
            assert (await get("/readyz"))[0] == 200
            server.stop()
            status, body = await get("/readyz")
            assert status == 503
            assert '"store": {"ok": false' in body
            server.start()  # same file, same port
            async with asyncio.timeout(30):
                while (await get("/readyz"))[0] != 200:  # noqa: ASYNC110  # pymongo finds the server again
                    await asyncio.sleep(0.1)
    finally:
        await store.close()
        server.stop()


async def test_the_llm_rule_a_recent_answer_else_a_probe_now(llm_server: FakeLLMServer) -> None:
    clock = Clocked()
    answered: list[float] = []
    last: list[float | None] = [None]

    def note() -> None:
        last[0] = clock()
        answered.append(clock())

    def rule(probe: Callable[[], Awaitable[None]], window_s: float = 300) -> LLMReadiness:
        return LLMReadiness(
            window_s=window_s, last_success=lambda: last[0], note_success=note, probe=probe, clock=clock
        )

    down = HTTPProbe(f"http://127.0.0.1:{free_port()}/v1", "key")
    up = HTTPProbe(llm_server.base_url, "key")

    check = await rule(down).check(2.0)
    assert not check.is_ok
    assert "no answer" in check.detail

    check = await rule(up).check(2.0)
    assert check.is_ok
    assert check.detail == "answered a probe just now"
    assert answered == [1_000.0]

    clock.now += 299  # within the window: the earlier answer counts, the dead probe is not tried
    assert (await rule(down).check(2.0)).is_ok

    clock.now += 2  # past the window: a probe decides
    assert not (await rule(down).check(2.0)).is_ok
    assert (await rule(up).check(2.0)).is_ok

    assert (await rule(down, window_s=0).check(2.0)).detail == "not checked (llm_ready_window_s is 0)"


async def test_a_failed_probe_is_not_repeated_at_once(llm_server: FakeLLMServer) -> None:
    clock = Clocked()
    probes: list[str] = []

    async def failing() -> None:
        probes.append("down")
        raise ConnectionError("the LLM endpoint answered HTTP 503")

    rule = LLMReadiness(window_s=60, last_success=lambda: None, note_success=lambda: None, probe=failing, clock=clock)
    assert (await rule.check(1.0)).detail == "the LLM endpoint answered HTTP 503"
    assert not (await rule.check(1.0)).is_ok
    assert probes == ["down"], "a second readiness check within seconds reuses the failure"
    clock.now += 10
    await rule.check(1.0)
    assert probes == ["down", "down"]


async def test_a_probe_that_hangs_fails_within_the_timeout(llm_server: FakeLLMServer) -> None:
    async def hangs() -> None:
        await asyncio.Event().wait()

    rule = LLMReadiness(window_s=60, last_success=lambda: None, note_success=lambda: None, probe=hangs)
    check = await rule.check(0.05)
    assert not check.is_ok
    assert "within 0.05 s" in check.detail


async def test_a_busy_port_leaves_the_bot_running_without_the_server(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        metrics = Metrics()
        readiness = Readiness(
            store=harness.store,
            components=(),
            llm=LLMReadiness(window_s=0, last_success=lambda: None, note_success=lambda: None, probe=asyncio.sleep),
            timeout_s=1,
        )
        server = OpsServer(host="127.0.0.1", port=port, readiness=readiness, registry=metrics.registry)
        task = asyncio.create_task(server.run())
        async with asyncio.timeout(10):
            while "cannot listen" not in caplog.text:  # noqa: ASYNC110  # the log is the only signal
                await asyncio.sleep(0.01)
        assert not task.done(), "it waits to be closed like any component"
        assert not server.is_ready()
        await server.close()
        await asyncio.wait_for(task, 10)


async def test_membot_run_serves_health_readiness_and_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, discord_fake: DiscordFake, llm_server: FakeLLMServer
) -> None:
    """`membot run discord` starts the server on MEMBOT_OPS__HTTP_PORT; ready once Discord is connected."""
    alice = discord_fake.add_user("alice")
    port = free_port()
    env = {
        "DISCORD_TOKEN": discord_fake.token,
        "MEMBOT_DISCORD__API_BASE_URL": discord_fake.base_url,
        "MEMBOT_DISCORD__GATEWAY_URL": discord_fake.gateway_url,
        "OPENAI_BASE_URL": llm_server.base_url,
        "OPENAI_API_KEY": "test-key",
        "MEMBOT_DATA_DIR": str(tmp_path),
        "MEMBOT_OPS__HTTP_HOST": "127.0.0.1",
        "MEMBOT_OPS__HTTP_PORT": str(port),
        "MEMBOT_CONSOLE__TOKEN": "a-console-token-for-this-test",
    }
    for name, setting in env.items():
        monkeypatch.setenv(name, setting)
    settings = load_settings(env_file=None)
    llm_server.enqueue(reply("hello from the service"))
    served = asyncio.create_task(run(settings, ["discord"]))
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:

        async def get(path: str) -> tuple[int, Any]:
            async with session.get(base + path) as response:
                body = await response.json() if path == "/readyz" else await response.text()
                return response.status, body

        async with asyncio.timeout(30):
            while True:
                try:
                    status, body = await get("/readyz")
                except aiohttp.ClientConnectionError:
                    status, body = 0, None
                if status == 200:
                    break
                await asyncio.sleep(0.05)
        assert set(body["checks"]) == {"store", "platforms", "llm"}
        assert "discord" in body["checks"]["platforms"]["detail"]
        assert await get("/healthz") == (200, "ok\n")
        # The console is mounted because its token is set: the login form, and nothing without it.
        status, login = await get("/console/login")
        assert status == 200 and 'name="token"' in login
        async with session.get(base + "/console/agents", allow_redirects=False) as response:
            assert (response.status, response.headers["Location"]) == (303, "/console/login")

        dm = discord_fake.dm_channel(alice)
        await discord_fake.dispatch_message(dm, alice, "hi")
        posted = await discord_fake.wait_for_message(dm, timeout=10)
        assert posted["content"] == "hello from the service"
        async with asyncio.timeout(10):
            while value((await get("/metrics"))[1], "membot_turns_total", kind="message", outcome="ok") != 1:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        page = (await get("/metrics"))[1]
        assert value(page, "membot_llm_tokens_total", model=MODEL, type="prompt") == 500
    os.kill(os.getpid(), signal.SIGTERM)
    assert await asyncio.wait_for(served, 10) == 0
