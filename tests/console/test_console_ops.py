"""The console lives on the ops server only when `membot run` hands it one (the token is set)."""

from __future__ import annotations

import asyncio

import aiohttp
from prometheus_client import CollectorRegistry

from bot.ops.http import OpsServer
from bot.ops.readiness import LLMReadiness, Readiness
from bot.runtime import Store


async def test_without_a_console_the_ops_server_serves_none_of_it(sqlite_store: Store) -> None:
    async def probe() -> None:
        return None

    readiness = Readiness(
        store=sqlite_store,
        components=(),
        llm=LLMReadiness(window_s=0, last_success=lambda: None, note_success=lambda: None, probe=probe),
        timeout_s=2,
    )
    server = OpsServer(host="127.0.0.1", port=0, readiness=readiness, registry=CollectorRegistry())
    task = asyncio.create_task(server.run())
    async with asyncio.timeout(10):
        await server.wait_serving()
    try:
        async with aiohttp.ClientSession() as session:
            for path in ["/console", "/console/", "/console/login", "/console/agents", "/console/static/console.css"]:
                async with session.get(f"http://127.0.0.1:{server.bound_port}{path}", allow_redirects=False) as reply:
                    assert reply.status == 404, path
            async with session.get(f"http://127.0.0.1:{server.bound_port}/healthz") as reply:
                assert reply.status == 200
    finally:
        await server.close()
        await asyncio.wait_for(task, 10)


def test_the_console_is_not_imported_by_the_cli_nor_the_commands() -> None:
    """`membot chat` (and a console-less `membot run`) never pay for the console's import."""
    import subprocess
    import sys

    code = "import sys, bot.cli, bot.commands, bot.ops.http; print(sorted(m for m in sys.modules if m.startswith('bot.console')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
