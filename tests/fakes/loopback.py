"""The lifecycle every loopback fake shares: an aiohttp app served on 127.0.0.1 on a free
port, from a daemon thread with its own event loop, so sync tests, async tests and
subprocesses can all reach it. Subclasses add their routes and any start/stop hooks."""

from __future__ import annotations

import asyncio
import threading
from typing import Self

from aiohttp import web

__all__ = ["LoopbackServer"]


class LoopbackServer:
    """Start/stop (or `with`) a fake; `origin` is "http://127.0.0.1:PORT" while it serves."""

    #: Names the serving thread and the "not started" error.
    label = "loopback server"

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._port = 0

    def start(self) -> None:
        """Serve on 127.0.0.1 on a free port, from a daemon thread with its own loop."""
        if self._thread is not None:
            raise RuntimeError("already started")
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name=self.label.replace(" ", "-"), daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), loop).result(timeout=10)

    async def _serve(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        self._add_routes(app)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self._port = self._runner.addresses[0][1]
        await self._on_started()

    def _add_routes(self, app: web.Application) -> None:
        """The fake's routes, added on its own loop before it serves."""
        raise NotImplementedError

    async def _on_started(self) -> None:
        """Runs on the fake's loop once the port is known."""

    async def _on_stopping(self) -> None:
        """Runs on the fake's loop before the app shuts down (cut delays short, close sockets)."""

    def stop(self) -> None:
        """Stop serving and join the thread; safe to call twice."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        self._loop = self._thread = None

    async def _shutdown(self) -> None:
        await self._on_stopping()
        if self._runner is not None:
            await self._runner.cleanup()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def origin(self) -> str:
        if not self._port:
            raise RuntimeError(f"{self.label} not started")
        return f"http://127.0.0.1:{self._port}"
