"""The platform-neutral part of a test bot: a SQLite store, the agent loop on the scripted LLM
server, router, runtime and admin service, as `membot run` wires them. The Discord and Slack
harnesses (`discord_bot.py`, `slack_bot.py`) put their adapter on top."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import openai

from bot.admin import AdminService
from bot.agent.directory import AgentDirectory
from bot.agent.llm import OpenAIChatModel
from bot.agent.loop import AgentLoop
from bot.agent.options import shipped_options
from bot.agent.templates import Templates
from bot.agent.tokens import TokenCounter
from bot.memory.sqlite import SQLiteStore
from bot.router import Router
from bot.runtime import Runtime, RuntimeOptions
from tests.fakes.llm_fixtures import SleepRecorder
from tests.fakes.llm_server import FakeLLMServer, ToolCallReply, tool_call

__all__ = ["MODEL", "BotCore", "HasBotCore", "open_bot_core", "reply"]

MODEL = "gpt-4o-mini"


def reply(text: str) -> ToolCallReply:
    """The model's step: send `text` to the user and end the turn."""
    return ToolCallReply(calls=(tool_call("send_message", {"message": text}),))


@dataclass(frozen=True, slots=True, kw_only=True)
class BotCore:
    store: SQLiteStore
    llm: FakeLLMServer
    loop: AgentLoop
    router: Router
    runtime: Runtime
    admin: AdminService

    async def settle(self) -> None:
        """Wait until no agent has work left."""
        async with asyncio.timeout(10):
            await self.runtime.wait_idle()

    async def agent_for(self, key: str) -> str:
        agent = await self.store.get_agent_by_conversation(key)
        assert agent is not None, f"no agent for {key}"
        return agent.id

    def user_turns(self, request: int) -> list[str]:
        """The user messages of the `request`-th LLM request (0 = the first)."""
        body = self.llm.chat_requests[request].body
        return [str(m["content"]) for m in body["messages"] if m["role"] == "user"]


async def open_bot_core(
    stack: AsyncExitStack,
    *,
    path: Path,
    llm: FakeLLMServer,
    openai_client: openai.AsyncOpenAI,
    sleeps: SleepRecorder,
    templates_root: Path | None = None,
) -> BotCore:
    """Store, loop, router, runtime and admin over `path`; the runtime is started and every
    part is closed by `stack` (so a harness can restart over the same file). `templates_root`
    is the operator's templates folder (`personas/`, `humans/` inside)."""

    store = SQLiteStore(path)
    await store.open()
    stack.push_async_callback(store.close)
    directory = AgentDirectory(store, core_block_limit=2000)
    templates = Templates(root=templates_root, block_limit=2000)
    loop = AgentLoop(
        store=store,
        model=OpenAIChatModel(client=openai_client, model=MODEL, max_retries=1, sleep=sleeps),
        counter=TokenCounter(model=MODEL),
        embedder=None,
        options=shipped_options(context_window=16_000, max_output_tokens=1_000, summary_words=200),
    )
    router = Router(
        store=store,
        directory=directory,
        templates=templates,
        model=MODEL,
    )
    runtime = Runtime(store=store, loop=loop, sinks={}, options=RuntimeOptions(owner="test", lease_retry_s=0.05))
    admin = AdminService(store=store, directory=directory, loop=loop, templates=templates, runtime=runtime)
    return BotCore(store=store, llm=llm, loop=loop, router=router, runtime=runtime, admin=admin)


class HasBotCore:
    """What a platform harness exposes of its core (tests write `bot.store`, `await bot.settle()`)."""

    core: BotCore

    @property
    def store(self) -> SQLiteStore:
        return self.core.store

    @property
    def runtime(self) -> Runtime:
        return self.core.runtime

    @property
    def admin(self) -> AdminService:
        return self.core.admin

    async def settle(self) -> None:
        await self.core.settle()

    async def agent_for(self, key: str) -> str:
        return await self.core.agent_for(key)

    def user_turns(self, request: int) -> list[str]:
        return self.core.user_turns(request)
