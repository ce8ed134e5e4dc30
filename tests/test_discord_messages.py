"""The Discord adapter's harder inputs, end to end through the real discord.py against the fake
Discord: attachments into archival memory, edits and deletes racing a turn, stickers, a long
Nitro message, threads remembered across a restart, reduced intents, and the invite URL."""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import discord
import openai
import pytest

from bot.cli import main
from tests.fakes.discord_bot import DiscordBot, reply
from tests.fakes.discord_server import ChannelType, DiscordFake, FakeAttachment
from tests.fakes.llm_fixtures import SleepRecorder
from tests.fakes.llm_server import Computed, FakeLLMServer, Step
from tests.test_documents import make_pdf


@pytest.fixture
def start_bot(
    tmp_path: Path,
    discord_fake: DiscordFake,
    llm_server: FakeLLMServer,
    openai_client: openai.AsyncOpenAI,
    sleeps: SleepRecorder,
) -> Callable[..., Any]:
    async def start(**settings: Any) -> DiscordBot:
        return await DiscordBot.start(
            tmp_path=tmp_path, fake=discord_fake, llm=llm_server, openai_client=openai_client, sleeps=sleeps, **settings
        )

    return start


@pytest.fixture
async def bot(start_bot: Callable[..., Any]) -> AsyncIterator[DiscordBot]:
    started: DiscordBot = await start_bot()
    try:
        yield started
    finally:
        await started.close()


class Gate:
    """An LLM step that waits (in the LLM server's thread) until the test opens the gate."""

    def __init__(self, then: Step) -> None:
        self.reached = threading.Event()
        self._open = threading.Event()
        self._then = then

    def step(self) -> Computed:
        def respond(_request: dict[str, Any]) -> Step:
            self.reached.set()
            self._open.wait(timeout=10)
            return self._then

        return Computed(respond)

    async def wait_reached(self) -> None:
        assert await asyncio.to_thread(self.reached.wait, 10), "the turn never reached the LLM"

    def open(self) -> None:
        self._open.set()


async def _until(condition: Callable[[], Any], *, timeout: float = 5.0) -> None:  # noqa: ASYNC109
    """Wait for the store to show what a gateway event (handled in the client's task) changed."""
    async with asyncio.timeout(timeout):
        while not await condition():  # noqa: ASYNC110  # the store is polled: events land in discord.py's tasks
            await asyncio.sleep(0.01)


# -- attachments ---------------------------------------------------------------------------------


async def test_a_text_file_the_user_asks_to_remember_goes_into_archival_memory(bot: DiscordBot) -> None:
    notes = FakeAttachment(filename="notes.txt", data=b"The boat is called Marigold.\n", content_type="text/plain")
    photo = FakeAttachment(filename="boat.png", data=b"\x89PNG", content_type="image/png")
    bot.llm.enqueue(reply("saved it"))
    await bot.fake.dispatch_message(
        bot.general, bot.alice, f"{bot.fake.bot.mention} remember this file", attachments=[notes, photo]
    )
    await bot.fake.wait_for_message(bot.general)
    await bot.settle()

    agent_id = await bot.agent_for(bot.channel_key)
    (passage,) = await bot.store.list_passages(agent_id, offset=0, limit=10)
    assert "The boat is called Marigold." in passage.text and "notes.txt" in passage.text
    turn = bot.user_turns(0)[-1]
    assert "[file: notes.txt, saved to archival memory as 1 passages]" in turn
    assert "[image: boat.png]" in turn, "images are only named"


async def test_a_file_without_a_request_to_save_is_only_named(bot: DiscordBot) -> None:
    notes = FakeAttachment(filename="notes.txt", data=b"Marigold", content_type="text/plain")
    bot.llm.enqueue(reply("nice"))
    await bot.fake.dispatch_message(bot.general, bot.alice, f"{bot.fake.bot.mention} look", attachments=[notes])
    await bot.fake.wait_for_message(bot.general)
    await bot.settle()
    assert await bot.store.count_passages(await bot.agent_for(bot.channel_key)) == 0
    assert bot.user_turns(0)[-1].endswith("] look\n[file: notes.txt]")


async def test_a_file_over_the_size_limit_is_refused_clearly_and_nothing_is_saved(
    start_bot: Callable[..., Any],
) -> None:
    bot: DiscordBot = await start_bot(max_attachment_bytes=1_000)
    try:
        big = FakeAttachment(filename="big.txt", data=b"x" * 2_000_000, content_type="text/plain")
        bot.llm.enqueue(reply("sorry about that"))
        await bot.fake.dispatch_message(bot.general, bot.alice, f"{bot.fake.bot.mention} save this", attachments=[big])
        await bot.fake.wait_for_message(bot.general, count=2)
        await bot.settle()
        contents = [m["content"] for m in bot.fake.messages_in(bot.general, author=bot.fake.bot)]
        assert "I did not save that: big.txt is 2.0 MB, over the 1 kB limit." in contents
        assert await bot.store.count_passages(await bot.agent_for(bot.channel_key)) == 0
        assert "[file: big.txt, not saved: big.txt is 2.0 MB" in bot.user_turns(0)[-1]
        assert not bot.fake.requests_to("GET", "/attachments/*"), "never downloaded"
    finally:
        await bot.close()


# -- bad input -----------------------------------------------------------------------------------


async def test_a_sticker_only_mention_is_answered_with_the_sticker_named(bot: DiscordBot) -> None:
    bot.llm.enqueue(reply("cute"))
    await bot.fake.dispatch_message(bot.general, bot.alice, bot.fake.bot.mention, stickers=["wave"])
    await bot.fake.wait_for_message(bot.general)
    await bot.settle()
    assert bot.user_turns(0)[-1].endswith("] [sticker: wave]")


async def test_a_4000_character_nitro_message_is_answered_and_kept_whole_in_recall(bot: DiscordBot) -> None:
    long = " ".join(f"word{i:04d}" for i in range(445))[:3990] + " THE END"
    assert len(long) == 3998
    bot.llm.enqueue(reply("that was long"))
    await bot.fake.dispatch_message(bot.general, bot.alice, f"{bot.fake.bot.mention} {long}")
    posted = await bot.fake.wait_for_message(bot.general)
    await bot.settle()
    assert posted["content"] == "that was long"
    agent_id = await bot.agent_for(bot.channel_key)
    stored = [m.content for m in await bot.store.get_messages(agent_id) if m.role == "user"]
    assert any(long in content for content in stored)


async def _busy_agent(bot: DiscordBot) -> Gate:
    """A first message whose turn is held at the LLM, so the next one waits in the inbox."""
    gate = Gate(reply("first answer"))
    bot.llm.enqueue(gate.step())
    await bot.fake.dispatch_message(bot.general, bot.alice, f"{bot.fake.bot.mention} first")
    await gate.wait_reached()
    return gate


async def _pending_texts(bot: DiscordBot) -> list[str]:
    return [entry.payload for entry in await bot.store.inbox_pending(limit=10)]


async def test_a_message_deleted_before_its_turn_ran_is_not_answered(bot: DiscordBot) -> None:
    gate = await _busy_agent(bot)
    doomed = await bot.fake.dispatch_message(bot.general, bot.bob, f"{bot.fake.bot.mention} never mind this")
    await _until(lambda: _has_pending(bot, "never mind this"))
    await bot.fake.delete_message(doomed)
    await _until(lambda: _lacks_pending(bot, "never mind this"))
    gate.open()
    await bot.fake.wait_for_message(bot.general)
    await bot.settle()

    assert len(bot.llm.chat_requests) == 1, "only the first message got a turn"
    recall = [m.content for m in await bot.store.get_messages(await bot.agent_for(bot.channel_key))]
    assert not any("never mind this" in c for c in recall)


async def test_a_message_edited_before_its_turn_ran_is_answered_with_the_new_text(bot: DiscordBot) -> None:
    gate = await _busy_agent(bot)
    bot.llm.enqueue(reply("answer to the edit"))
    typo = await bot.fake.dispatch_message(bot.general, bot.bob, f"{bot.fake.bot.mention} whats teh time")
    await _until(lambda: _has_pending(bot, "whats teh time"))
    await bot.fake.edit_message(typo, f"{bot.fake.bot.mention} what is the time?")
    await _until(lambda: _has_pending(bot, "what is the time?"))
    gate.open()
    second = await bot.fake.wait_for_message(bot.general, count=2)
    await bot.settle()

    assert second["content"] == "answer to the edit"
    assert second["message_reference"]["message_id"] == typo["id"]
    turn = bot.user_turns(1)
    assert any(t.endswith("] what is the time?") for t in turn)
    assert not any("teh" in t for t in turn)


async def test_after_its_turn_started_an_edit_is_ignored_and_a_delete_still_lets_the_reply_post(
    bot: DiscordBot,
) -> None:
    gate = Gate(reply("answered anyway"))
    bot.llm.enqueue(gate.step())
    sent = await bot.fake.dispatch_message(bot.general, bot.alice, f"{bot.fake.bot.mention} original words")
    await gate.wait_reached()
    await bot.fake.edit_message(sent, f"{bot.fake.bot.mention} changed words")
    await bot.fake.delete_message(sent)
    gate.open()
    posted = await bot.fake.wait_for_message(bot.general)
    await bot.settle()

    assert posted["content"] == "answered anyway"
    assert posted.get("message_reference") is None, "the reply lost its reference, not its post"
    assert len(bot.llm.chat_requests) == 1
    assert await bot.store.inbox_pending(limit=10) == []


async def _has_pending(bot: DiscordBot, text: str) -> bool:
    return any(text in payload for payload in await _pending_texts(bot))


async def _lacks_pending(bot: DiscordBot, text: str) -> bool:
    return not await _has_pending(bot, text)


# -- threads and intents ---------------------------------------------------------------------------


async def test_a_thread_the_bot_was_mentioned_in_is_still_answered_after_a_restart(bot: DiscordBot) -> None:
    other_thread_owner = bot.fake.add_user("carol")
    bot.fake.add_member(bot.guild, other_thread_owner)
    thread = bot.fake.add_channel(bot.guild, "trip", type=ChannelType.PUBLIC_THREAD, parent=bot.general)
    thread.owner_id = other_thread_owner.id  # a thread someone else started
    bot.llm.enqueue(reply("joined"), reply("still here"))
    await bot.fake.dispatch_message(thread, bot.alice, f"{bot.fake.bot.mention} plan the trip with us")
    await bot.fake.wait_for_message(thread)
    await bot.settle()

    await bot.restart()
    await bot.fake.dispatch_message(thread, bot.bob, "what about Tuesday?")
    posted = await bot.fake.wait_for_message(thread, count=2)
    await bot.settle()
    assert posted["content"] == "still here"
    assert bot.user_turns(1)[-1].endswith("] what about Tuesday?")


async def test_without_the_message_content_intent_mentions_and_dms_still_work(
    start_bot: Callable[..., Any], discord_fake: DiscordFake
) -> None:
    bot: DiscordBot = await start_bot(message_content_intent=False)
    try:
        (session,) = discord_fake.sessions
        assert not session.intents & discord.Intents(message_content=True).value
        bot.adapter._settings = bot.adapter._settings.model_copy(update={"free_response_channels": (bot.general.id,)})
        bot.llm.enqueue(reply("heard the mention"), reply("heard the dm"))
        await bot.fake.dispatch_message(bot.general, bot.alice, "chatter the bot cannot read")
        await bot.fake.dispatch_message(bot.general, bot.alice, f"{bot.fake.bot.mention} can you read me?")
        assert (await bot.fake.wait_for_message(bot.general))["content"] == "heard the mention"
        await bot.settle()
        dm = bot.fake.dm_channel(bot.bob)
        await bot.fake.dispatch_message(dm, bot.bob, "and in private?")
        assert (await bot.fake.wait_for_message(dm))["content"] == "heard the dm"
        await bot.settle()
        assert bot.user_turns(0)[-1].endswith("] can you read me?")
        assert len(bot.llm.chat_requests) == 2, "the unreadable free-response message got no turn"
    finally:
        await bot.close()


# -- invite URL ------------------------------------------------------------------------------------


def test_invite_url_has_the_application_id_from_the_token_and_exactly_the_needed_permissions(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    token = base64.b64encode(b"123456789012345678").decode().rstrip("=") + ".GAbCdE.secretsecretsecret"
    monkeypatch.setenv("DISCORD_TOKEN", token)
    assert main(["discord", "invite-url"]) == 0
    url = capsys.readouterr().out.strip()
    needed = discord.Permissions(
        view_channel=True, send_messages=True, send_messages_in_threads=True, read_message_history=True
    )
    assert url == (
        "https://discord.com/oauth2/authorize?client_id=123456789012345678"
        f"&scope=bot+applications.commands&permissions={needed.value}"
    )
    monkeypatch.setenv("MEMBOT_DISCORD__APPLICATION_ID", "42")
    assert main(["discord", "invite-url"]) == 0
    assert "client_id=42&" in capsys.readouterr().out


def test_invite_url_without_a_token_or_an_id_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["discord", "invite-url"]) == 2
    assert "no Discord application id: set MEMBOT_DISCORD__APPLICATION_ID" in capsys.readouterr().err


async def test_a_pdf_the_user_asks_to_save_goes_into_archival_and_a_broken_one_is_refused(bot: DiscordBot) -> None:
    good = FakeAttachment(
        filename="menu.pdf", data=make_pdf(["Soup of the day: lentil."]), content_type="application/pdf"
    )
    broken = FakeAttachment(filename="broken.pdf", data=b"%PDF-1.7\nnot really", content_type="application/pdf")
    bot.llm.enqueue(reply("kept the menu"))
    await bot.fake.dispatch_message(
        bot.general, bot.alice, f"{bot.fake.bot.mention} please save these", attachments=[good, broken]
    )
    await bot.fake.wait_for_message(bot.general, count=2)
    await bot.settle()
    (passage,) = await bot.store.list_passages(await bot.agent_for(bot.channel_key), offset=0, limit=10)
    assert "Soup of the day: lentil." in passage.text
    contents = [m["content"] for m in bot.fake.messages_in(bot.general, author=bot.fake.bot)]
    assert any(c.startswith("I did not save that: broken.pdf is not a readable PDF") for c in contents)
