"""The composition root: builds every long-lived resource from the settings, once, and
closes them in reverse order. Only the CLI calls it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from bot.agent.directory import AgentDirectory
from bot.agent.loop import AgentLoop
from bot.agent.model_info import ContextWindowChoice, resolve_context_window
from bot.agent.options import shipped_options
from bot.agent.templates import Templates
from bot.agent.tokens import TokenCounter
from bot.config import Settings
from bot.errors import ConfigError
from bot.memory.embeddings import Embedder
from bot.memory.sqlite import SQLiteStore
from bot.metering import LimitedChatModel
from bot.runtime import Store
from bot.sdk_clients import DeferredChatModel, DeferredEmbedder

__all__ = ["App", "open_app", "open_store", "prepare_data_dir", "templates_of"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class App:
    settings: Settings
    #: Memory, coordination and policies: both stores implement the runtime's full protocol.
    store: Store
    loop: AgentLoop
    directory: AgentDirectory
    model: DeferredChatModel
    #: The window prompts are budgeted against, and where that number came from.
    context_window: ContextWindowChoice
    #: The persona and human templates, and who may name which.
    templates: Templates


@asynccontextmanager
async def open_store(settings: Settings) -> AsyncIterator[Store]:
    """The configured store, opened (schema checked) and closed on exit."""
    store: Store
    if settings.store.kind == "mongodb":
        if settings.store.mongodb_uri is None:
            raise ConfigError("MONGODB_URI: required when MEMBOT_STORE__KIND is mongodb")
        store = _mongo_store(
            settings.store.mongodb_uri.get_secret_value(),
            database=settings.store.mongodb_database,
            wait_for_server_s=settings.store.mongodb_wait_s,
        )
    else:
        store = SQLiteStore(settings.store.sqlite_path)
    async with _opened(store):
        yield store


@asynccontextmanager
async def open_store_url(url: str, *, database: str, must_exist: bool = False) -> AsyncIterator[Store]:
    """A store named on the command line: `sqlite:PATH` or a `mongodb://` URI."""
    store: Store
    if url.startswith("sqlite:"):
        path = _sqlite_path(url)
        if must_exist and not await asyncio.to_thread(path.is_file):
            raise ConfigError(f"{url}: no such SQLite file")
        store = SQLiteStore(path)
    elif url.startswith(("mongodb://", "mongodb+srv://")):
        store = _mongo_store(url, database=database)
    else:
        raise ConfigError(f"{url!r}: name a store as sqlite:PATH or mongodb://HOST/...")
    async with _opened(store):
        yield store


def _mongo_store(uri: str, *, database: str, wait_for_server_s: float = 0.0) -> Store:
    """The MongoDB store, or one clear line when pymongo (the `mongodb` extra) is missing."""
    try:
        from bot.memory.mongo import MongoStore
    except ImportError as exc:
        raise ConfigError("the MongoDB store needs pymongo: pip install 'membot[mongodb]'") from exc
    return MongoStore(uri, database=database, wait_for_server_s=wait_for_server_s)


@asynccontextmanager
async def _opened(store: Store) -> AsyncIterator[None]:
    await store.open()
    try:
        yield
    finally:
        await store.close()


def _sqlite_path(url: str) -> Path:
    return Path(url.removeprefix("sqlite:").removeprefix("//")).expanduser()


def prepare_data_dir(settings: Settings) -> None:
    """Make `data_dir`, and the SQLite file's folder, now: a path that cannot be used is one line
    at start-up (`ConfigError`), not a traceback from whatever first writes there."""
    folders = [("MEMBOT_DATA_DIR", settings.data_dir)]
    if settings.store.kind == "sqlite":
        folders.append(("MEMBOT_STORE__SQLITE_PATH", settings.store.sqlite_path.parent))
    for name, folder in folders:
        if name != "MEMBOT_DATA_DIR" and folder == settings.data_dir:
            name = "MEMBOT_DATA_DIR"
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"{name} ({folder}): cannot create the folder: {exc.strerror or exc}") from None
        # The SQLite file is written there; the data folder itself may be read-only (templates from
        # a read-only mount, the store in MongoDB).
        if (
            settings.store.kind == "sqlite"
            and folder == settings.store.sqlite_path.parent
            and not os.access(folder, os.W_OK | os.X_OK)
        ):
            raise ConfigError(f"{name} ({folder}): the folder is not writable by this user (uid {os.getuid()})")


@asynccontextmanager
async def open_app(settings: Settings) -> AsyncIterator[App]:
    """Store, LLM client, embedder and agent loop, wired by keyword."""
    await asyncio.to_thread(prepare_data_dir, settings)
    async with AsyncExitStack() as stack:
        store = await stack.enter_async_context(open_store(settings))
        llm = settings.llm
        model = DeferredChatModel(llm)
        stack.push_async_callback(model.aclose)
        embedder: Embedder | None = None
        if settings.embeddings.model:
            deferred = DeferredEmbedder(
                settings.embeddings,
                model=settings.embeddings.model,
                timeout_s=llm.timeout_s,
                fallback_base_url=llm.base_url,
            )
            stack.push_async_callback(deferred.aclose)
            embedder = deferred
        agent = settings.agent
        window = await resolve_context_window(llm)
        options = shipped_options(
            context_window=window.tokens,
            max_output_tokens=llm.max_output_tokens,
            warning_fraction=agent.memory_warning_fraction,
            max_chained_steps=agent.max_chained_steps,
            keep_last_messages=agent.keep_last_messages,
            evict_fraction=agent.evict_fraction,
            max_user_message_chars=agent.max_user_message_chars,
            login_gap=timedelta(minutes=agent.login_gap_minutes),
            core_block_limit=agent.core_block_limit,
        )
        loop = AgentLoop(
            store=store,
            # One cap on LLM calls in flight for every agent of this process (FIFO, no starvation).
            model=LimitedChatModel(model, max_concurrent=settings.runtime.max_concurrent_llm_calls),
            counter=TokenCounter(model=llm.model),
            embedder=embedder,
            options=options,
        )
        directory = AgentDirectory(store, core_block_limit=agent.core_block_limit)
        yield App(
            settings=settings,
            store=store,
            loop=loop,
            directory=directory,
            model=model,
            context_window=window,
            templates=templates_of(settings),
        )


def templates_of(settings: Settings) -> Templates:
    """The templates of this installation: `agent.templates_dir` (else `data_dir`) and the defaults."""
    agent = settings.agent
    return Templates(
        root=agent.templates_dir or settings.data_dir,
        default_persona=agent.persona,
        default_human=agent.human,
        block_limit=agent.core_block_limit,
    )
