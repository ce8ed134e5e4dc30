"""What `membot run` serves: the router, runtime, heartbeat scheduler and admin service every
platform shares, built once over the composition root's store and agent loop.

Each served thing (a platform adapter, the health server, the A2A server) is a `Component`:
it runs until closed, and `run_components` starts them together and stops them in order on
SIGINT/SIGTERM or when one of them fails. Adapters get the shared `Services` and never build
their own runtime, so a turn from one platform never overlaps a turn from another for the
same agent.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from bot.admin import AdminService
from bot.agent.retention import RecallRetention, RetentionSweep
from bot.app import App, open_app
from bot.config import Settings
from bot.metering import RuntimeObserver
from bot.ops.budgets import DailyBudgets
from bot.ops.store_timing import StoreCallObserver, timed_store
from bot.router import Router
from bot.runtime import Runtime, RuntimeOptions, Store
from bot.scheduler import HeartbeatScheduler, SchedulerOptions

__all__ = ["Component", "Services", "open_services", "run_components"]

_log = logging.getLogger(__name__)


class Component(Protocol):
    """One long-running part of `membot run`."""

    @property
    def name(self) -> str: ...

    async def run(self) -> None:
        """Serve until `close()` is called; raise when it cannot go on."""

    async def close(self) -> None:
        """Stop serving; idempotent."""

    def is_ready(self) -> bool:
        """Connected and serving (what `/readyz` reports for it)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Services:
    app: App
    store: Store
    router: Router
    runtime: Runtime
    scheduler: HeartbeatScheduler
    admin: AdminService

    @property
    def settings(self) -> Settings:
        return self.app.settings


@asynccontextmanager
async def open_services(
    settings: Settings, *, observer: RuntimeObserver | None = None, store_observer: StoreCallObserver | None = None
) -> AsyncIterator[Services]:
    """The composition root plus the shared serving parts (not started: `run_components` does).

    `observer` sees the runtime's turns and LLM calls, `store_observer` the shared store's calls
    (the metrics of `bot.ops`); every turn's token usage is recorded and the daily budgets apply."""
    async with open_app(settings) as app:
        store = app.store if store_observer is None else timed_store(app.store, store_observer)

        options = settings.runtime
        runtime = Runtime(
            store=store,
            loop=app.loop,
            sinks={},
            options=RuntimeOptions(
                lease_ttl=timedelta(seconds=options.lease_ttl_s),
                reflection_idle=timedelta(minutes=options.reflection_idle_minutes),
                reflection_min_period=timedelta(hours=options.reflection_min_period_hours),
            ),
            observer=observer,
            meter=DailyBudgets(
                store=store,
                tokens_per_server=settings.budget.daily_tokens_per_server,
                tokens_per_user=settings.budget.daily_tokens_per_user,
            ),
        )
        yield Services(
            app=app,
            store=store,
            router=Router(
                store=store,
                directory=app.directory,
                templates=app.templates,
                model=settings.llm.model,
            ),
            runtime=runtime,
            scheduler=HeartbeatScheduler(
                store=store,
                runtime=runtime,
                options=SchedulerOptions(
                    tick=timedelta(seconds=options.heartbeat_tick_s),
                    daily_tokens_per_agent=options.reflection_daily_tokens_per_agent,
                    daily_tokens_per_server=options.reflection_daily_tokens_per_server,
                    sweep_every=timedelta(hours=settings.privacy.retention_sweep_hours),
                ),
                sweep=_retention_sweep(settings, app, store, runtime).run,
            ),
            admin=AdminService(
                store=store,
                directory=app.directory,
                loop=app.loop,
                templates=app.templates,
                runtime=runtime,
                budget_limits={
                    "server": settings.budget.daily_tokens_per_server,
                    "user": settings.budget.daily_tokens_per_user,
                },
            ),
        )


def _retention_sweep(settings: Settings, app: App, store: Store, runtime: Runtime) -> RetentionSweep:
    """Inbox pruning always; recall retention when `privacy.retention_days` is set."""
    privacy = settings.privacy
    retention = (
        RecallRetention(store=store, compactor=app.loop.compactor, keep_for=timedelta(days=privacy.retention_days))
        if privacy.retention_days is not None
        else None
    )
    return RetentionSweep(
        store=store,
        owner=runtime.owner,
        retention=retention,
        inbox_keep=timedelta(hours=privacy.inbox_keep_hours),
        lease_ttl=timedelta(seconds=settings.runtime.lease_ttl_s),
        on_changed=app.loop.forget_cached,
    )


async def run_components(services: Services, components: Sequence[Component], *, drain_s: float = 30.0) -> None:
    """Start the runtime, the scheduler and every component; on SIGINT/SIGTERM or the first
    component to stop, shut down in order: scheduler, runtime (turns in flight get `drain_s`
    to finish and send their replies), then the components. A component's failure is raised."""
    stop = asyncio.Event()
    event_loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        event_loop.add_signal_handler(signum, stop.set)
    await services.runtime.start()
    services.scheduler.start()
    tasks = [asyncio.create_task(c.run(), name=f"membot-{c.name}") for c in components]
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({*tasks, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            event_loop.remove_signal_handler(signum)
        stopping.cancel()
        _log.info("shutting down: scheduler, runtime, then %s", ", ".join(c.name for c in components))
        services.scheduler.stop()
        await services.runtime.stop(deadline_s=drain_s)
        for component in reversed(components):
            try:
                await component.close()
            except Exception:
                _log.exception("closing %s failed", component.name)
        for task in tasks:
            if not task.done():
                task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            raise result
