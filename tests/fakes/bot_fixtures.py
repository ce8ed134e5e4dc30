"""Pytest fixtures for whole test bots (registered in tests/conftest.py via `pytest_plugins`).

`discord_bot` and `slack_bot` are membot's Discord and Slack stacks over the fakes
(`DiscordBot`, `SlackBot`), closed after the test. They start from the shipped templates
unless a test module overrides `bot_templates` with an operator's templates folder.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import openai
import pytest

from tests.fakes.discord_bot import DiscordBot
from tests.fakes.discord_server import DiscordFake
from tests.fakes.llm_fixtures import SleepRecorder
from tests.fakes.llm_server import FakeLLMServer
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_bot import SlackBot

__all__ = ["bot_templates", "discord_bot", "slack_bot"]


@pytest.fixture
def bot_templates() -> Path | None:
    """The operator's templates folder the test bots read (`personas/`, `humans/`); None: shipped only."""
    return None


@pytest.fixture
async def discord_bot(
    tmp_path: Path,
    discord_fake: DiscordFake,
    llm_server: FakeLLMServer,
    openai_client: openai.AsyncOpenAI,
    sleeps: SleepRecorder,
    bot_templates: Path | None,
) -> AsyncIterator[DiscordBot]:
    started = await DiscordBot.start(
        tmp_path=tmp_path,
        fake=discord_fake,
        llm=llm_server,
        openai_client=openai_client,
        sleeps=sleeps,
        templates_root=bot_templates,
    )
    try:
        yield started
    finally:
        await started.close()


@pytest.fixture
async def slack_bot(
    tmp_path: Path,
    slack_fake: FakeSlack,
    llm_server: FakeLLMServer,
    openai_client: openai.AsyncOpenAI,
    sleeps: SleepRecorder,
    bot_templates: Path | None,
) -> AsyncIterator[SlackBot]:
    started = await SlackBot.start(
        tmp_path=tmp_path,
        fake=slack_fake,
        llm=llm_server,
        openai_client=openai_client,
        sleeps=sleeps,
        templates_root=bot_templates,
    )
    try:
        yield started
    finally:
        await started.close()
