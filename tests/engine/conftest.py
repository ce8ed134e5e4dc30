"""An engine on the embedded store, talking to the scripted LLM server through the real SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import openai
import pytest

from bot.agent.directory import AgentDirectory
from bot.agent.llm import OpenAIChatModel
from bot.agent.loop import AgentLoop, TurnResult
from bot.agent.options import shipped_options
from bot.agent.tokens import TokenCounter
from bot.events import InboundMessage
from bot.memory.openai_embeddings import OpenAIEmbedder
from bot.memory.sqlite import SQLiteStore
from bot.memory.store import AgentRecord
from tests.fakes.llm_fixtures import SleepRecorder
from tests.fakes.llm_server import FakeLLMServer

MODEL = "gpt-4o-mini"


class RecordingSink:
    """The terminal's sink without a terminal: what the user would have seen."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.typing_calls = 0

    async def send(self, text: str) -> str | None:
        self.sent.append(text)
        return f"reply-{len(self.sent)}"

    async def typing(self) -> None:
        self.typing_calls += 1


@dataclass
class Engine:
    store: SQLiteStore
    loop: AgentLoop
    directory: AgentDirectory
    agent: AgentRecord
    server: FakeLLMServer
    sink: RecordingSink
    sleeps: SleepRecorder
    clock: list[datetime] = field(default_factory=list)

    def now(self) -> datetime:
        return self.clock[0]

    def advance(self, delta: timedelta) -> None:
        self.clock[0] += delta

    def message(
        self, text: str, *, speaker: str = "Ada", speaker_id: str = "u1", at: datetime | None = None
    ) -> InboundMessage:
        return InboundMessage(
            platform="test",
            conversation_key="test:1",
            speaker_id=speaker_id,
            speaker_name=speaker,
            text=text,
            sent_at=at or self.now(),
            platform_message_id=None,
        )

    async def say(self, text: str, **kwargs: Any) -> TurnResult:
        return await self.loop.run_turn(self.agent.id, [self.message(text, **kwargs)], reply=self.sink)

    def request_messages(self, index: int = -1) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = self.server.chat_requests[index].body["messages"]
        return messages

    def system_prompt(self, index: int = -1) -> str:
        content: str = self.request_messages(index)[0]["content"]
        return content


EngineFactory = Callable[..., Any]


@pytest.fixture
async def make_engine(
    tmp_path: Path, llm_server: FakeLLMServer, openai_client: openai.AsyncOpenAI, sleeps: SleepRecorder
) -> AsyncIterator[EngineFactory]:
    stores: list[SQLiteStore] = []

    async def factory(
        *,
        context_window: int = 16_000,
        max_output_tokens: int = 1_000,
        with_embeddings: bool = False,
        max_retries: int = 2,
        llm_timeout: float | None = None,
        **options: Any,
    ) -> Engine:
        store = SQLiteStore(tmp_path / f"membot-{len(stores)}.sqlite3")
        await store.open()
        stores.append(store)
        clock = [datetime(2026, 5, 1, 12, 0, tzinfo=UTC)]
        model = OpenAIChatModel(
            client=openai_client, model=MODEL, max_retries=max_retries, timeout=llm_timeout, sleep=sleeps
        )
        embedder = OpenAIEmbedder(client=openai_client, model="fake-embed", sleep=sleeps) if with_embeddings else None
        loop = AgentLoop(
            store=store,
            model=model,
            counter=TokenCounter(model=MODEL),
            embedder=embedder,
            options=shipped_options(
                context_window=context_window, max_output_tokens=max_output_tokens, summary_words=200, **options
            ),
            clock=lambda: clock[0],
        )
        directory = AgentDirectory(
            store, core_block_limit=options.get("core_block_limit", 2000), clock=lambda: clock[0]
        )
        agent = await directory.create(
            name="sam",
            persona="I am Sam, a friendly companion.",
            human="First name: unknown",
            persona_template="sam",
            human_template="basic",
            model=MODEL,
        )
        return Engine(
            store=store,
            loop=loop,
            directory=directory,
            agent=agent,
            server=llm_server,
            sink=RecordingSink(),
            sleeps=sleeps,
            clock=clock,
        )

    yield factory
    for store in stores:
        await store.close()
