"""The Discord adapter end to end: the real discord.py against the fake Discord, the real
router, runtime and agent loop over SQLite, answering through the scripted LLM server."""

from __future__ import annotations

import asyncio
import os
import re
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest

from bot.cli import main
from bot.commands import run
from bot.config import load_settings
from bot.discord_adapter import EMPTY_MENTION
from tests.fakes.discord_bot import DiscordBot, reply
from tests.fakes.discord_server import ChannelType, DiscordFake, FakeAttachment
from tests.fakes.llm_fixtures import SleepRecorder
from tests.fakes.llm_server import FakeLLMServer

Bot = DiscordBot


@pytest.fixture
async def bot(
    tmp_path: Path,
    discord_fake: DiscordFake,
    llm_server: FakeLLMServer,
    openai_client: openai.AsyncOpenAI,
    sleeps: SleepRecorder,
) -> AsyncIterator[DiscordBot]:
    started = await DiscordBot.start(
        tmp_path=tmp_path, fake=discord_fake, llm=llm_server, openai_client=openai_client, sleeps=sleeps
    )
    try:
        yield started
    finally:
        await started.close()


async def test_a_mention_in_a_channel_is_answered_there_as_a_reply_by_the_channels_agent(bot: Bot) -> None:
    bot.llm.enqueue(reply("Hello alice!"))
    sent = await bot.fake.dispatch_message(bot.general, bot.alice, f"{bot.fake.bot.mention} hi there")
    posted = await bot.fake.wait_for_message(bot.general)
    await bot.settle()
    assert posted["content"] == "Hello alice!"
    assert posted["message_reference"]["message_id"] == sent["id"]
    request = bot.fake.requests_to("POST", f"/channels/{bot.general.id}/messages")[0]
    assert request.json is not None
    assert request.json["allowed_mentions"] == {"parse": ["users"], "replied_user": True}
    agent = await bot.agent_for(f"discord:{bot.guild.id}:channel:{bot.general.id}")
    assert (await bot.store.get_agent(agent)) is not None
    (turn,) = bot.user_turns(0)[-1:]
    assert turn.endswith("] hi there"), "the bot's mention is stripped"
    assert bot.fake.requests_to("POST", f"/channels/{bot.general.id}/typing")


async def test_two_people_in_a_shared_channel_talk_to_one_agent_that_knows_who_is_who(bot: Bot) -> None:
    bot.llm.enqueue(reply("hi alice"), reply("hi bob"))
    await bot.fake.dispatch_message(bot.general, bot.alice, f"{bot.fake.bot.mention} I'm Alice")
    await bot.fake.wait_for_message(bot.general)
    await bot.settle()
    await bot.fake.dispatch_message(bot.general, bot.bob, f"<@{bot.fake.bot.id}> and I'm Bob")
    await bot.fake.wait_for_message(bot.general, count=2)
    await bot.settle()
    turns = bot.user_turns(1)
    assert any(f"alice ({bot.alice.id})] I'm Alice" in t for t in turns)
    assert any(f"bob ({bot.bob.id})] and I'm Bob" in t for t in turns)
    agents = await bot.store.list_agents(limit=10)
    assert len(agents) == 1


async def test_a_dm_goes_to_a_different_agent(bot: Bot) -> None:
    bot.llm.enqueue(reply("in the channel"), reply("in private"))
    await bot.fake.dispatch_message(bot.general, bot.alice, f"{bot.fake.bot.mention} public")
    await bot.fake.wait_for_message(bot.general)
    await bot.settle()
    dm = bot.fake.dm_channel(bot.alice)
    await bot.fake.dispatch_message(dm, bot.alice, "private, no mention needed")
    posted = await bot.fake.wait_for_message(dm)
    await bot.settle()
    assert posted["content"] == "in private"
    channel_agent = await bot.agent_for(f"discord:{bot.guild.id}:channel:{bot.general.id}")
    dm_agent = await bot.agent_for(f"discord:dm:{bot.alice.id}")
    assert channel_agent != dm_agent
    assert "public" not in " ".join(bot.user_turns(1)), "the DM agent never saw the channel"


async def test_a_5000_character_reply_arrives_as_three_well_formed_messages(bot: Bot) -> None:
    intro = " ".join(f"Sentence {i} of the answer." for i in range(58))
    code = "```python\n" + "\n".join(f"print('line {i}')" for i in range(90)) + "\n```"
    outro = " ".join(f"More words in sentence {i}." for i in range(70))
    text = f"{intro}\n\n{code}\n\n{outro}"
    assert 4900 < len(text) <= 5000
    bot.llm.enqueue(reply(text))
    sent = await bot.fake.dispatch_message(bot.general, bot.alice, f"{bot.fake.bot.mention} long please")
    await bot.fake.wait_for_message(bot.general, count=3)
    await bot.settle()
    posted = bot.fake.messages_in(bot.general, author=bot.fake.bot)
    assert [m["content"] for m in posted] == [intro, code, outro], "cut at paragraphs, the code block whole"
    for message in posted:
        assert len(message["content"]) <= 2000
        assert len(re.findall(r"^```", message["content"], re.MULTILINE)) % 2 == 0, "fences intact"
    assert posted[0]["message_reference"]["message_id"] == sent["id"]
    assert all("message_reference" not in m or m["message_reference"] is None for m in posted[1:])


async def test_the_same_message_create_twice_is_answered_once(bot: Bot) -> None:
    bot.llm.enqueue(reply("once"))
    sent = await bot.fake.dispatch_message(bot.general, bot.alice, f"{bot.fake.bot.mention} hello")
    await bot.fake.dispatch_event("MESSAGE_CREATE", sent, guild_id=bot.guild.id)
    await bot.fake.wait_for_message(bot.general)
    await bot.settle()
    await asyncio.sleep(0.1)  # a second turn, if any, would have started by now
    await bot.settle()
    assert [m["content"] for m in bot.fake.messages_in(bot.general, author=bot.fake.bot)] == ["once"]
    assert bot.runtime.stats.duplicates_dropped == 1


async def _answered_after(bot: Bot, quiet: Any) -> None:
    """Dispatch `quiet`, then a mention that is answered; only the mention reached the LLM."""
    bot.llm.enqueue(reply("only this"))
    await quiet
    await bot.fake.dispatch_message(bot.general, bot.alice, f"{bot.fake.bot.mention} now me")
    await bot.fake.wait_for_message(bot.general)
    await bot.settle()
    assert len(bot.llm.chat_requests) == 1
    assert bot.user_turns(0)[-1].endswith("] now me")


async def test_a_message_mentioning_someone_else_but_not_the_bot_is_not_answered(bot: Bot) -> None:
    # Even in a channel where the bot answers every message.
    bot.adapter._settings = bot.adapter._settings.model_copy(update={"free_response_channels": (bot.general.id,)})
    await _answered_after(bot, bot.fake.dispatch_message(bot.general, bot.alice, f"{bot.bob.mention} lunch?"))


async def test_messages_from_bots_are_ignored(bot: Bot) -> None:
    other = bot.fake.add_user("otherbot", bot=True)
    bot.fake.add_member(bot.guild, other)
    await _answered_after(bot, bot.fake.dispatch_message(bot.general, other, f"{bot.fake.bot.mention} beep"))


async def test_in_a_thread_the_bot_started_it_answers_without_a_mention(bot: Bot) -> None:
    thread = bot.fake.add_channel(bot.guild, "plans", type=ChannelType.PUBLIC_THREAD, parent=bot.general)
    bot.llm.enqueue(reply("in the thread"))
    await bot.fake.dispatch_message(thread, bot.alice, "what next?")
    posted = await bot.fake.wait_for_message(thread)
    await bot.settle()
    assert posted["content"] == "in the thread"
    # A thread follows its parent channel's agent.
    await bot.agent_for(f"discord:{bot.guild.id}:channel:{bot.general.id}")


async def test_an_attachment_only_mention_is_described_to_the_agent(bot: Bot) -> None:
    bot.llm.enqueue(reply("nice picture"), reply("you rang?"))
    photo = FakeAttachment(filename="cat.png", data=b"\x89PNG", content_type="image/png")
    notes = FakeAttachment(filename="notes.pdf", data=b"%PDF", content_type="application/pdf")
    await bot.fake.dispatch_message(bot.general, bot.alice, bot.fake.bot.mention, attachments=[photo, notes])
    await bot.fake.wait_for_message(bot.general)
    await bot.settle()
    assert bot.user_turns(0)[-1].endswith("] [image: cat.png]\n[file: notes.pdf]")
    await bot.fake.dispatch_message(bot.general, bot.alice, f" {bot.fake.bot.mention} ")
    await bot.fake.wait_for_message(bot.general, count=2)
    await bot.settle()
    assert bot.user_turns(1)[-1].endswith(f"] {EMPTY_MENTION}")


async def test_a_channel_without_permission_is_logged_once_and_not_retried(
    bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    bot.fake.forbid_channel(bot.general)
    bot.llm.enqueue(reply("first"), reply("second"))
    for text in ("one", "two"):
        await bot.fake.dispatch_message(bot.general, bot.alice, f"{bot.fake.bot.mention} {text}")
        await bot.fake.wait_for_request(
            lambda r: r.is_call("POST", f"/channels/{bot.general.id}/messages") and r.status == 403,
            count=1 if text == "one" else 2,
        )
        await bot.settle()
    assert len(bot.fake.requests_to("POST", f"/channels/{bot.general.id}/messages")) == 2
    warnings = [r for r in caplog.records if "no permission to post" in r.getMessage()]
    assert len(warnings) == 1
    assert await bot.store.inbox_pending(limit=10) == []


def test_run_discord_without_a_token_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "discord"]) == 2
    assert "no Discord bot token: set DISCORD_TOKEN" in capsys.readouterr().err


async def test_run_discord_serves_until_sigterm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, discord_fake: DiscordFake, llm_server: FakeLLMServer
) -> None:
    """The composition root: settings -> store, router, runtime, scheduler, adapter; a signal stops it all."""
    alice = discord_fake.add_user("alice")
    monkeypatch.setenv("DISCORD_TOKEN", discord_fake.token)
    monkeypatch.setenv("MEMBOT_DISCORD__API_BASE_URL", discord_fake.base_url)
    monkeypatch.setenv("MEMBOT_DISCORD__GATEWAY_URL", discord_fake.gateway_url)
    monkeypatch.setenv("OPENAI_BASE_URL", llm_server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("MEMBOT_DATA_DIR", str(tmp_path))
    settings = load_settings(env_file=None)
    llm_server.enqueue(reply("hello from the service"))
    served = asyncio.create_task(run(settings, ["discord"]))
    async with asyncio.timeout(10):
        while not discord_fake.sessions:  # noqa: ASYNC110  # the fake's sessions live in its own thread
            await asyncio.sleep(0.02)
    dm = discord_fake.dm_channel(alice)
    await discord_fake.dispatch_message(dm, alice, "hi")
    posted = await discord_fake.wait_for_message(dm, timeout=10)
    assert posted["content"] == "hello from the service"
    os.kill(os.getpid(), signal.SIGTERM)
    assert await asyncio.wait_for(served, 10) == 0
