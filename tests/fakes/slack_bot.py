"""membot's whole Slack stack over the fake Slack, for end-to-end tests.

`SlackBot.start(...)` builds what `membot run slack` builds, from real parts: a SQLite store
in the test's directory, the agent loop on the scripted LLM server (through the real
`openai` SDK), router, runtime, admin service and `SlackAdapter`, whose Bolt app serves HTTP
mode on a free loopback port (or connects to the fake's Socket Mode with `socket=True`).
`restart()` closes the adapter and runtime and builds them again over the same store file,
as a redeploy would. `slack` sends Slack's signed requests to the adapter's Request URL.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai

from bot.config import SlackSettings
from bot.slack_adapter import SlackAdapter
from tests.fakes.bot_core import MODEL, BotCore, HasBotCore, open_bot_core, reply
from tests.fakes.llm_fixtures import SleepRecorder
from tests.fakes.llm_server import FakeLLMServer
from tests.fakes.slack_api import FakeSlack, SlackRequestSender

__all__ = ["MODEL", "SlackBot", "reply"]


@dataclass
class SlackBot(HasBotCore):
    fake: FakeSlack
    llm: FakeLLMServer
    path: Path
    openai_client: openai.AsyncOpenAI
    sleeps: SleepRecorder
    settings: SlackSettings
    core: BotCore = field(init=False)
    adapter: SlackAdapter = field(init=False)
    slack: SlackRequestSender = field(init=False)
    _stack: AsyncExitStack = field(init=False, default_factory=AsyncExitStack)
    #: The operator's templates folder (`personas/`, `humans/`); None: shipped templates only.
    templates_root: Path | None = None

    @classmethod
    async def start(
        cls,
        *,
        tmp_path: Path,
        fake: FakeSlack,
        llm: FakeLLMServer,
        openai_client: openai.AsyncOpenAI,
        sleeps: SleepRecorder,
        socket: bool = False,
        templates_root: Path | None = None,
        **settings: Any,
    ) -> SlackBot:
        tokens: dict[str, Any] = (
            {"app_token": fake.app.app_token} if socket else {"signing_secret": fake.app.signing_secret}
        )
        options = SlackSettings(
            bot_token=fake.app.bot_token,
            api_base_url=fake.base_url,
            host="127.0.0.1",
            port=0,
            **(tokens | settings),
        )
        bot = cls(
            fake=fake,
            llm=llm,
            path=tmp_path / "membot.sqlite3",
            openai_client=openai_client,
            sleeps=sleeps,
            settings=options,
            templates_root=templates_root,
        )
        await bot._open()
        return bot

    @property
    def url(self) -> str:
        """The Request URL of the running adapter (HTTP mode)."""
        return f"http://127.0.0.1:{self.adapter.http_port}{self.settings.path}"

    async def _open(self) -> None:
        self._stack = AsyncExitStack()
        try:
            await self._build(self._stack)
        except BaseException:
            await self._stack.aclose()
            raise

    async def _build(self, stack: AsyncExitStack) -> None:
        core = self.core = await open_bot_core(
            stack,
            path=self.path,
            llm=self.llm,
            openai_client=self.openai_client,
            sleeps=self.sleeps,
            templates_root=self.templates_root,
        )
        runtime = core.runtime
        adapter = self.adapter = SlackAdapter(
            settings=self.settings, router=core.router, runtime=runtime, admin=core.admin, threads=core.store
        )
        await runtime.start()
        stack.push_async_callback(runtime.stop, deadline_s=5)
        serving = asyncio.create_task(adapter.run())

        async def stop_serving() -> None:
            await adapter.close()
            await asyncio.wait_for(serving, 5)

        stack.push_async_callback(stop_serving)
        waiting = asyncio.create_task(adapter.wait_serving())
        await asyncio.wait({serving, waiting}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        if serving.done():
            waiting.cancel()
            serving.result()  # raises what stopped it
        assert waiting.done(), "the Slack adapter did not start serving within 10 s"
        self.slack = self.fake.requests_to(self.url)
        stack.push_async_callback(self.slack.close)

    async def close(self) -> None:
        await self._stack.aclose()

    async def restart(self) -> None:
        """Close the adapter, runtime and store, and build them again over the same file."""
        await self.close()
        await self._open()

    def channel_key(self, channel: str) -> str:
        return f"slack:{self.fake.app.team_id}:channel:{channel}"
