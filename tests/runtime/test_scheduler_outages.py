"""The heartbeat scheduler's tick and sweep log an ordinary store outage once, and once more when
the store is back, never a traceback per tick (APScheduler logs one for a job that raises), on
both stores, closed under the scheduler and opened again."""

from __future__ import annotations

import logging

import pytest

from bot.scheduler import HeartbeatScheduler
from tests.runtime.conftest import Harness


async def test_the_scheduler_tick_and_sweep_log_an_outage_once(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="bot")
    store = harness.store
    runtime = await harness.runtime(owner="replica-a")
    swept: list[int] = []

    async def sweep() -> None:
        await store.inbox_pending(limit=1)
        swept.append(1)

    scheduler = HeartbeatScheduler(store=store, runtime=runtime, clock=harness.clock, sweep=sweep)
    await store.close()
    for _ in range(4):
        assert await scheduler.tick() == 0
        await scheduler.sweep()
    await store.open()
    assert await scheduler.tick() == 0
    await scheduler.sweep()

    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len([w for w in warnings if "store unavailable" in w]) == 2, "one for the tick, one for the sweep"
    assert len([w for w in warnings if "store available again" in w and "(4 failed attempts)" in w]) == 2
    assert swept == [1]
    assert [r.getMessage() for r in caplog.records if r.exc_info is not None] == []
