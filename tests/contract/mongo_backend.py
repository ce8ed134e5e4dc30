"""The MongoDB side of the contract suite: a mongoeco wire server, or a real server when asked.

`open_mongo_store()` yields an opened `MongoStore` on a fresh database. By default it talks to
one mongoeco wire server started on a free loopback port on first use and shared by the whole
test session (a fresh database name per store keeps tests apart). Set
`MEMBOT_TEST_MONGODB_URI=mongodb://...` to run against a real MongoDB instead, and
`MEMBOT_TEST_MONGODB_TRANSACTIONS=always` to take the transaction path on the wire server (which
says it is standalone). Both are read when this module is imported, because the suite's autouse
fixture clears `MEMBOT_*` during tests. `WireServer` is also used directly by the Mongo-only tests (stop, restart, users, fail points).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import os
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

from mongoeco.engines.memory import MemoryEngine
from mongoeco.engines.sqlite import SQLiteEngine
from mongoeco.wire.auth import WireAuthUser
from mongoeco.wire.proxy import AsyncMongoEcoProxyServer
from pymongo import AsyncMongoClient

from bot.memory.mongo import MongoStore

__all__ = ["REAL_MONGODB_URI", "TRANSACTIONS", "WireServer", "open_mongo_store", "shared_uri"]

#: A real server to test against instead of mongoeco (read once, at import).
REAL_MONGODB_URI: str | None = os.environ.get("MEMBOT_TEST_MONGODB_URI") or None
#: `always` runs the stores in transactions even on the (standalone) wire server: the replica-set path.
TRANSACTIONS: str = os.environ.get("MEMBOT_TEST_MONGODB_TRANSACTIONS", "auto")

# mongoeco has no profile for every pymongo release; 4.19 is the newest it knows and matches 4.20's wire use.
_PYMONGO_PROFILE = "4.19"
_MONGODB_DIALECT = "8.0"


class WireServer:
    """A mongoeco wire server on 127.0.0.1 in its own thread and event loop.

    `engine="sqlite"` with a `path` keeps the data across `stop()`/`start()` (a server that
    comes back); `port` pins the port so a restarted server is found at the same URI.
    """

    def __init__(
        self,
        *,
        engine: Literal["memory", "sqlite"] = "memory",
        path: Path | None = None,
        port: int = 0,
        users: tuple[WireAuthUser, ...] = (),
    ) -> None:
        self._engine, self._path, self._port, self._users = engine, path, port, users
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._proxy: AsyncMongoEcoProxyServer | None = None

    @property
    def port(self) -> int:
        return self._port

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self._port}/?directConnection=true"

    def start(self) -> str:
        ready: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="mongoeco-wire", daemon=True)
        self._thread.start()
        self._port = ready.result(timeout=10)
        return self.uri

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._thread = self._loop = self._stop = self._proxy = None

    def run[T](self, work: Callable[[Any], Coroutine[Any, Any, T]]) -> T:
        """Run `work(server_side_client)` on the server's loop: set-up a wire client cannot do."""
        assert self._loop is not None
        assert self._proxy is not None
        client = self._proxy._client
        return asyncio.run_coroutine_threadsafe(work(client), self._loop).result(timeout=30)

    def _run(self, ready: concurrent.futures.Future[int]) -> None:
        try:
            asyncio.run(self._serve(ready))
        except BaseException as error:  # surface start-up failures to start()
            if not ready.done():
                ready.set_exception(error)

    async def _serve(self, ready: concurrent.futures.Future[int]) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        engine = (
            MemoryEngine()
            if self._engine == "memory"
            else SQLiteEngine(str(self._path or ":memory:"), executor_workers=1)
        )
        proxy = AsyncMongoEcoProxyServer(
            engine=engine,
            port=self._port,
            mongodb_dialect=_MONGODB_DIALECT,
            pymongo_profile=_PYMONGO_PROFILE,
            auth_users=self._users,
        )
        self._proxy = proxy
        try:
            address = await proxy.start()
            ready.set_result(address.port)
            await self._stop.wait()
        finally:
            await proxy.close()


_shared: WireServer | None = None
_shared_lock = threading.Lock()


def shared_uri() -> str:
    """The URI of the session-wide server (a real one if MEMBOT_TEST_MONGODB_URI was set)."""
    global _shared
    if REAL_MONGODB_URI:
        return REAL_MONGODB_URI
    with _shared_lock:
        if _shared is None:
            _shared = WireServer()
            _shared.start()
            atexit.register(_shared.stop)
        return _shared.uri


@asynccontextmanager
async def open_mongo_store(**options: Any) -> AsyncIterator[MongoStore]:
    """An opened MongoStore on a database of its own, dropped afterwards."""
    uri = shared_uri()
    database = f"membot_test_{uuid.uuid4().hex[:12]}"
    options.setdefault("connect_timeout_s", 5.0)
    options.setdefault("transactions", TRANSACTIONS)
    store = MongoStore(uri, database=database, **options)
    await store.open()
    try:
        yield store
    finally:
        await store.close()
        admin: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri, serverSelectionTimeoutMS=5000)
        try:
            await admin.drop_database(database)
        finally:
            await admin.close()
