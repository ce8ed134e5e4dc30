"""The `store` fixture: every contract test runs once per `MemoryStore` implementation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.memory.sqlite import SQLiteStore
from bot.memory.store import MemoryStore


@pytest.fixture(params=["sqlite", "mongodb"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MemoryStore]:
    if request.param == "sqlite":
        sqlite_store = SQLiteStore(tmp_path / "membot.sqlite3")
        await sqlite_store.open()
        try:
            yield sqlite_store
        finally:
            await sqlite_store.close()
        return
    try:
        from tests.contract.mongo_backend import open_mongo_store
    except ModuleNotFoundError as error:
        if error.name != "tests.contract.mongo_backend":
            raise
        pytest.skip("mongo backend not built yet")
    async with open_mongo_store() as mongo_store:
        yield mongo_store
