"""Pytest fixtures for the fake Discord (registered in tests/conftest.py via `pytest_plugins`).

`discord_fake` is a started `DiscordFake` with discord.py pointed at it (through
`bot.discord.urls.configure_discord_urls`, as the adapter will do), restored and stopped
after the test. `connected` runs a real discord.py client against it until the block ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator

import discord
import pytest

from bot.discord.urls import configure_discord_urls
from tests.fakes.discord_server import DiscordFake

__all__ = ["connected", "discord_fake", "fast_client_options"]


def fast_client_options() -> dict[str, float]:
    """discord.py Client options for tests: on_ready 50 ms after the last GUILD_CREATE, not 2 s."""
    return {"guild_ready_timeout": 0.05}


@pytest.fixture
def discord_fake() -> Iterator[DiscordFake]:
    """A started fake Discord; discord.py's REST base and gateway point at it for the test."""
    fake = DiscordFake()
    fake.start()
    previous = configure_discord_urls(fake.urls)
    try:
        yield fake
    finally:
        configure_discord_urls(previous)
        fake.stop()


@contextlib.asynccontextmanager
async def connected(
    client: discord.Client,
    fake: DiscordFake,
    *,
    timeout: float = 10.0,  # noqa: ASYNC109
) -> AsyncIterator[discord.Client]:
    """Log `client` in, connect it and wait for on_ready; close it (and await its task) on exit.

    A client that fails to log in (bad token) or stops before it is ready (disallowed
    intents) raises its error here, closed.
    """
    try:
        await client.login(fake.token)
    except BaseException:
        await client.close()
        raise
    task = asyncio.create_task(client.connect(), name="discord-client-connect")
    ready = asyncio.create_task(client.wait_until_ready())
    try:
        done, _ = await asyncio.wait({task, ready}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()
            raise RuntimeError("discord.py client stopped before it was ready")
        if ready not in done:
            raise TimeoutError(f"discord.py client not ready within {timeout} s")
        yield client
    finally:
        ready.cancel()
        await client.close()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout)
