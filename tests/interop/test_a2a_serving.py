"""`membot serve a2a` / `membot run` wiring: the A2A component on real uvicorn over loopback,
started by `run_components` over the shared services, reached by the a2a-sdk client over TCP."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import uuid
from pathlib import Path

import httpx
import pytest
from a2a.client import ClientConfig, create_client
from a2a.types import Message, Part, Role, SendMessageRequest

from bot.app import open_app
from bot.commands import serve
from bot.errors import ConfigError
from bot.interop.a2a import A2AServer
from bot.service import open_services, run_components
from tests.fakes.llm_server import FakeLLMServer
from tests.interop.conftest import reply, settings_for


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def until_ready(server: A2AServer, runner: asyncio.Task[None]) -> None:
    """Wait (bounded) for uvicorn to listen; fail at once if the runner died."""
    async with asyncio.timeout(20):
        while not server.is_ready():
            if runner.done():
                runner.result()
            await asyncio.sleep(0.02)


async def test_run_components_serves_a2a_over_http(llm_server: FakeLLMServer, tmp_path: Path) -> None:
    port = free_port()
    token = "tcp-token"
    settings = settings_for(llm_server, tmp_path, a2a={"agents": ["sam"], "port": port, "token": token})
    llm_server.enqueue(reply("Hello over TCP."))
    async with open_services(settings) as services:
        agent = await services.app.directory.create(
            name="sam", persona="I am sam.", human="?", persona_template="sam", human_template="basic", model="m"
        )
        server = A2AServer(runtime=services.runtime, directory=services.app.directory, settings=settings.a2a)
        runner = asyncio.create_task(run_components(services, [server], drain_s=5))
        try:
            await until_ready(server, runner)
            async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http:
                client = await create_client(
                    f"http://127.0.0.1:{port}/a2a/sam", client_config=ClientConfig(httpx_client=http, streaming=False)
                )
                request = SendMessageRequest(
                    message=Message(
                        message_id=uuid.uuid4().hex, context_id="c1", role=Role.ROLE_USER, parts=[Part(text="hi")]
                    )
                )
                answers = [r async for r in client.send_message(request)]
        finally:
            await server.close()
            await runner
        said = [m.content for m in await services.store.get_messages(agent.id) if m.role == "user"]

    assert "".join(p.text for p in answers[0].message.parts) == "Hello over TCP."
    assert said == ["hi"]


async def test_serve_a2a_without_agents_is_a_clear_error(llm_server: FakeLLMServer, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="MEMBOT_A2A__AGENTS"):
        await serve(settings_for(llm_server, tmp_path), "a2a")


async def test_an_exposed_agent_that_does_not_exist_stops_start_up(llm_server: FakeLLMServer, tmp_path: Path) -> None:
    settings = settings_for(llm_server, tmp_path, a2a={"agents": ["ghost"], "port": free_port()})
    async with open_services(settings) as services:
        server = A2AServer(runtime=services.runtime, directory=services.app.directory, settings=settings.a2a)
        with pytest.raises(ConfigError, match="'ghost'"):
            await run_components(services, [server], drain_s=1)


async def test_membot_serve_a2a_answers_until_interrupted(llm_server: FakeLLMServer, tmp_path: Path) -> None:
    port = free_port()
    settings = settings_for(llm_server, tmp_path, a2a={"agents": ["sam"], "port": port})
    async with open_app(settings) as app:
        await app.directory.create(
            name="sam", persona="I am sam.", human="?", persona_template="sam", human_template="basic", model="m"
        )
    llm_server.enqueue(reply("Served by membot serve a2a."))
    command = asyncio.create_task(serve(settings, "a2a"))
    base = f"http://127.0.0.1:{port}/a2a/sam"
    async with httpx.AsyncClient(timeout=30) as http:
        async with asyncio.timeout(20):
            while True:
                if command.done():
                    command.result()
                try:
                    await http.get(f"{base}/.well-known/agent-card.json")
                    break
                except httpx.ConnectError:
                    await asyncio.sleep(0.05)
        client = await create_client(base, client_config=ClientConfig(httpx_client=http, streaming=True))
        request = SendMessageRequest(
            message=Message(message_id=uuid.uuid4().hex, context_id="c", role=Role.ROLE_USER, parts=[Part(text="hi")])
        )
        responses = [r async for r in client.send_message(request)]
    os.kill(os.getpid(), signal.SIGINT)  # run_components owns SIGINT while serving: it stops, in order

    assert await command == 0
    final = responses[-1].status_update.status.message
    assert "".join(p.text for p in final.parts) == "Served by membot serve a2a."


async def test_a_port_in_use_stops_start_up_with_one_line(llm_server: FakeLLMServer, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = settings_for(llm_server, tmp_path, a2a={"agents": ["sam"], "port": port})
        async with open_services(settings) as services:
            await services.app.directory.create(
                name="sam", persona="I am sam.", human="?", persona_template="sam", human_template="basic", model="m"
            )
            server = A2AServer(runtime=services.runtime, directory=services.app.directory, settings=settings.a2a)
            with pytest.raises(
                ConfigError, match=rf"^cannot listen on 127\.0\.0\.1:{port} for A2A: .*MEMBOT_A2A__PORT"
            ):
                await run_components(services, [server], drain_s=1)
