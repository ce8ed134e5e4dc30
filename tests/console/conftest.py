"""A seeded world served by the ops server with the console (SQLite; some tests also MongoDB)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest

from bot.agent.llm import OpenAIChatModel
from bot.memory.sqlite import SQLiteStore
from bot.runtime import Store
from tests.console.world import MODEL, Client, World, client, make_world, seed, serving
from tests.contract.conftest import store as store


@dataclass
class Console:
    world: World
    base: str
    client: Client


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "membot.sqlite3")
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


async def _console(store: Store, openai_client: openai.AsyncOpenAI) -> AsyncIterator[Console]:
    world = make_world(store, OpenAIChatModel(client=openai_client, model=MODEL, max_retries=0))
    await seed(world)
    async with serving(world) as base, client(base) as browser:
        yield Console(world=world, base=base, client=browser)


@pytest.fixture
async def console(sqlite_store: SQLiteStore, openai_client: openai.AsyncOpenAI) -> AsyncIterator[Console]:
    """The console over SQLite, not logged in."""
    async for served in _console(sqlite_store, openai_client):
        yield served


@pytest.fixture
async def any_console(store: Store, openai_client: openai.AsyncOpenAI) -> AsyncIterator[Console]:
    """The console over each store (SQLite, MongoDB through the wire server)."""
    async for served in _console(store, openai_client):
        yield served
