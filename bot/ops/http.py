"""The operations HTTP server of `membot run`: `/healthz`, `/readyz` and `/metrics`.

    GET /healthz   200 "ok" while the process serves (a liveness probe)
    GET /readyz    200 when every readiness check passes, else 503; JSON naming each check
    GET /metrics   Prometheus text format (OpenMetrics when the scraper asks for it)
    /console/      the operator's web console, when `membot run` hands one in (`bot.console`)

It is a `Component` like the platform adapters. When its port cannot be bound it logs one error
and stays idle rather than stop the bot: answering users matters more than being watched.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler

from bot.config import Settings
from bot.memory.store import MemoryStore
from bot.ops.metrics import Metrics
from bot.ops.readiness import HTTPProbe, LLMReadiness, Readiness, ReadyComponent

__all__ = ["OpsServer", "ops_server"]

_log = logging.getLogger(__name__)


class OpsServer:
    """Serves health, readiness and metrics on `host:port` (port 0: any free port, for tests)."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        readiness: Readiness,
        registry: CollectorRegistry,
        console: web.Application | None = None,
    ) -> None:
        self._host = host
        self._console = console
        self._port = port
        self._readiness = readiness
        self._registry = registry
        self._closed = asyncio.Event()
        self._serving = asyncio.Event()
        self.bound_port: int | None = None

    @property
    def name(self) -> str:
        return "ops-http"

    def is_ready(self) -> bool:
        return self._serving.is_set()

    async def wait_serving(self) -> None:
        """Return once the server listens (for tests and callers that need `bound_port`)."""
        await self._serving.wait()

    async def run(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", make_aiohttp_handler(self._registry))
        if self._console is not None:
            app.router.add_get("/console", self._to_console)
            app.add_subapp("/console/", self._console)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port)
            try:
                await site.start()
            except OSError as exc:
                _log.error(
                    "the health and metrics server cannot listen on %s:%d (%s); /healthz, /readyz and /metrics "
                    "are off. Set MEMBOT_OPS__HTTP_PORT to a free port (0 turns the server off).",
                    self._host,
                    self._port,
                    exc.strerror or exc,
                )
                await self._closed.wait()
                return
            self.bound_port = _port_of(runner, self._port)
            self._serving.set()
            _log.info("health and metrics on http://%s:%d/ (healthz, readyz, metrics)", self._host, self.bound_port)
            if self._console is not None:
                _log.info("the console is on http://%s:%d/console/", self._host, self.bound_port)
            await self._closed.wait()
        finally:
            self._serving.clear()
            await runner.cleanup()

    async def close(self) -> None:
        self._closed.set()

    async def _to_console(self, request: web.Request) -> web.Response:
        raise web.HTTPPermanentRedirect(location="/console/")

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        checks = await self._readiness.check()
        is_ready = all(c.is_ok for c in checks)
        body = {"ready": is_ready, "checks": {c.name: {"ok": c.is_ok, "detail": c.detail} for c in checks}}
        return web.json_response(body, status=200 if is_ready else 503)


def _port_of(runner: web.AppRunner, fallback: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return fallback


def ops_server(
    settings: Settings,
    *,
    store: MemoryStore,
    components: Sequence[ReadyComponent],
    metrics: Metrics,
    console: web.Application | None = None,
) -> OpsServer:
    """The server `membot run` starts: `store` is pinged for readiness, `components` are the
    platforms; `console` (the web console's application) is mounted at `/console/`."""
    ops, llm = settings.ops, settings.llm
    readiness = Readiness(
        store=store,
        components=tuple(components),
        llm=LLMReadiness(
            window_s=ops.llm_ready_window_s,
            last_success=lambda: metrics.last_llm_success,
            note_success=metrics.note_llm_success,
            probe=HTTPProbe(llm.base_url, llm.api_key.get_secret_value() if llm.api_key else None),
        ),
        timeout_s=ops.ready_timeout_s,
    )
    return OpsServer(
        host=ops.http_host, port=ops.http_port, readiness=readiness, registry=metrics.registry, console=console
    )
