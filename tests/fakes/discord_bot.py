"""membot's whole Discord stack over the fake Discord, for end-to-end tests.

`DiscordBot.start(...)` builds what `membot run discord` builds, from real parts: a SQLite
store in the test's directory, the agent loop on the scripted LLM server (through the real
`openai` SDK), router, runtime, admin service and `DiscordAdapter`, with discord.py
connected to the fake. `restart()` closes the client and runtime and builds them again over
the same store file, as a redeploy would.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai

from bot.config import DiscordSettings
from bot.discord_adapter import DiscordAdapter
from tests.fakes.bot_core import MODEL, BotCore, HasBotCore, open_bot_core, reply
from tests.fakes.discord_fixtures import connected, fast_client_options
from tests.fakes.discord_server import DiscordFake, FakeChannel, FakeGuild, FakeUser
from tests.fakes.llm_fixtures import SleepRecorder
from tests.fakes.llm_server import FakeLLMServer

__all__ = ["MODEL", "DiscordBot", "reply"]


@dataclass
class DiscordBot(HasBotCore):
    fake: DiscordFake
    llm: FakeLLMServer
    path: Path
    openai_client: openai.AsyncOpenAI
    sleeps: SleepRecorder
    settings: DiscordSettings
    alice: FakeUser
    bob: FakeUser
    guild: FakeGuild
    general: FakeChannel
    core: BotCore = field(init=False)
    adapter: DiscordAdapter = field(init=False)
    _stack: AsyncExitStack = field(init=False, default_factory=AsyncExitStack)
    #: The operator's templates folder (`personas/`, `humans/`); None: shipped templates only.
    templates_root: Path | None = None

    @classmethod
    async def start(
        cls,
        *,
        tmp_path: Path,
        fake: DiscordFake,
        llm: FakeLLMServer,
        openai_client: openai.AsyncOpenAI,
        sleeps: SleepRecorder,
        templates_root: Path | None = None,
        **settings: Any,
    ) -> DiscordBot:
        alice = fake.add_user("alice")
        bob = fake.add_user("bob")
        guild = fake.add_guild("Home", members=[alice, bob])
        general = fake.add_channel(guild, "general")
        options = DiscordSettings(api_base_url=fake.base_url, gateway_url=fake.gateway_url, **settings)
        bot = cls(
            fake=fake,
            llm=llm,
            path=tmp_path / "membot.sqlite3",
            openai_client=openai_client,
            sleeps=sleeps,
            settings=options,
            alice=alice,
            bob=bob,
            guild=guild,
            general=general,
            templates_root=templates_root,
        )
        await bot._open()
        return bot

    async def _open(self) -> None:
        stack = self._stack = AsyncExitStack()
        core = self.core = await open_bot_core(
            stack,
            path=self.path,
            llm=self.llm,
            openai_client=self.openai_client,
            sleeps=self.sleeps,
            templates_root=self.templates_root,
        )
        self.adapter = DiscordAdapter(
            settings=self.settings,
            router=core.router,
            runtime=core.runtime,
            store=core.store,
            admin=core.admin,
            archival=core.loop.archival,
            client_options=fast_client_options(),
        )
        await core.runtime.start()
        stack.push_async_callback(core.runtime.stop, deadline_s=5)
        await stack.enter_async_context(connected(self.adapter.client, self.fake))

    async def close(self) -> None:
        await self._stack.aclose()

    async def restart(self) -> None:
        """Stop everything but the store's file and start again: a redeploy."""
        await self.close()
        await self._open()

    # -- helpers for tests -------------------------------------------------------------------
    @property
    def channel_key(self) -> str:
        return f"discord:{self.guild.id}:channel:{self.general.id}"
