"""A runtime over a real store (SQLite, and MongoDB through the wire server) and the real
agent loop, answering through the scripted LLM server. The platform is a recording one:
its sink factory rebuilds a sink from `reply_route`, as a real adapter does after a restart."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import openai
import pytest

from bot.agent.directory import AgentDirectory
from bot.agent.llm import OpenAIChatModel
from bot.agent.loop import AgentLoop
from bot.agent.options import shipped_options
from bot.agent.tokens import TokenCounter
from bot.events import InboundMessage, ReplySink
from bot.memory.sqlite import SQLiteStore
from bot.metering import LimitedChatModel
from bot.runtime import Runtime, RuntimeOptions, Store
from tests.fakes.llm_fixtures import SleepRecorder
from tests.fakes.llm_server import FakeLLMServer

MODEL = "gpt-4o-mini"


@dataclass
class Platform:
    """What users of a recording platform saw: replies per conversation, in order."""

    replies: dict[str, list[str]] = field(default_factory=dict)
    ids: Any = field(default_factory=lambda: itertools.count(1))
    on_send: Callable[[str, str], None] | None = None

    def sink(self, message: InboundMessage) -> ReplySink:
        platform = self
        route = message.reply_route or message.conversation_key

        class _Sink:
            async def send(self, text: str) -> str | None:
                platform.replies.setdefault(route, []).append(text)
                if platform.on_send is not None:
                    platform.on_send(route, text)
                return f"reply-{next(platform.ids)}"

            async def typing(self) -> None:
                pass

        return _Sink()

    def all_replies(self) -> list[str]:
        return [text for texts in self.replies.values() for text in texts]


@dataclass
class Clock:
    now: datetime = field(default_factory=lambda: datetime(2026, 5, 1, 12, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@dataclass
class Harness:
    store: Store
    server: FakeLLMServer
    platform: Platform
    clock: Clock
    client: openai.AsyncOpenAI
    sleeps: SleepRecorder
    directory: AgentDirectory
    runtimes: list[Runtime] = field(default_factory=list)

    def loop(self, **options: Any) -> AgentLoop:
        model = LimitedChatModel(
            OpenAIChatModel(client=self.client, model=MODEL, max_retries=1, sleep=self.sleeps),
            max_concurrent=options.pop("max_concurrent", 8),
        )
        return AgentLoop(
            store=self.store,
            model=model,
            counter=TokenCounter(model=MODEL),
            embedder=None,
            options=shipped_options(context_window=16_000, max_output_tokens=1_000, summary_words=200, **options),
            clock=self.clock,
        )

    async def runtime(self, *, owner: str = "replica-a", start: bool = True, **options: Any) -> Runtime:
        runtime = Runtime(
            store=self.store,
            loop=self.loop(),
            sinks={"test": self.platform.sink},
            options=RuntimeOptions(owner=owner, lease_retry_s=0.05, **options),
            clock=self.clock,
        )
        if start:
            await runtime.start()
        self.runtimes.append(runtime)
        return runtime

    async def agent(self, name: str) -> str:
        agent = await self.directory.create(
            name=name,
            persona=f"I am {name}.",
            human="First name: unknown",
            persona_template="sam",
            human_template="basic",
            model=MODEL,
        )
        return agent.id

    def message(self, text: str, *, msg_id: str, conversation: str = "c1", speaker: str = "Ada") -> InboundMessage:
        return InboundMessage(
            platform="test",
            conversation_key=conversation,
            speaker_id=speaker.lower(),
            speaker_name=speaker,
            text=text,
            sent_at=self.clock(),
            platform_message_id=msg_id,
            reply_route=conversation,
        )


async def settle(runtime: Runtime) -> None:
    """Wait until the runtime has no agent with work left."""
    async with asyncio.timeout(10):
        await runtime.wait_idle()


@pytest.fixture(params=["sqlite", "mongodb"])
async def harness(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    llm_server: FakeLLMServer,
    openai_client: openai.AsyncOpenAI,
    sleeps: SleepRecorder,
) -> AsyncIterator[Harness]:
    async with AsyncExitStack() as stack:
        store: Store
        if request.param == "sqlite":
            sqlite = SQLiteStore(tmp_path / "membot.sqlite3")
            await sqlite.open()
            stack.push_async_callback(sqlite.close)
            store = sqlite
        else:
            from tests.contract.mongo_backend import open_mongo_store

            store = await stack.enter_async_context(open_mongo_store())  # type: ignore[arg-type]
        clock = Clock()
        harness = Harness(
            store=store,
            server=llm_server,
            platform=Platform(),
            clock=clock,
            client=openai_client,
            sleeps=sleeps,
            directory=AgentDirectory(store, core_block_limit=2000, clock=clock),
        )
        yield harness
        for runtime in harness.runtimes:
            await runtime.stop(deadline_s=5)
