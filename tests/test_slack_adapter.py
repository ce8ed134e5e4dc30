"""The Slack adapter end to end: the real slack-bolt and slack_sdk against the fake Slack (HTTP
mode with signed requests, and Socket Mode), the real router, runtime and agent loop over
SQLite, answering through the scripted LLM server."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest

from bot.slack.replies import MESSAGE_LIMIT
from bot.slack_adapter import EMPTY_MENTION
from tests.fakes.llm_fixtures import SleepRecorder
from tests.fakes.llm_server import Computed, FakeLLMServer, Step
from tests.fakes.slack_api import ALICE, BOB, DM_ALICE, GENERAL, RANDOM, FakeSlack
from tests.fakes.slack_bot import SlackBot, reply
from tests.fakes.slack_wire import AppIdentity


@pytest.fixture
async def bot(
    tmp_path: Path,
    slack_fake: FakeSlack,
    llm_server: FakeLLMServer,
    openai_client: openai.AsyncOpenAI,
    sleeps: SleepRecorder,
) -> AsyncIterator[SlackBot]:
    started = await SlackBot.start(
        tmp_path=tmp_path, fake=slack_fake, llm=llm_server, openai_client=openai_client, sleeps=sleeps
    )
    try:
        yield started
    finally:
        await started.close()


def _in_thread(ts: str) -> Any:
    return lambda call: call.args.get("thread_ts") == ts


async def test_a_mention_in_a_channel_is_answered_in_its_thread_by_the_channels_agent(bot: SlackBot) -> None:
    bot.llm.enqueue(reply("Hello **alice**, see [the docs](https://example.com)!"))
    mention = bot.fake.events.mention("what do you remember?")

    delivery = await bot.slack.send_event(mention)

    assert delivery.status == 200
    posted = await bot.fake.wait_for_call("chat.postMessage", _in_thread(mention["ts"]))
    await bot.settle()
    assert posted.args["channel"] == GENERAL
    assert posted.args["text"] == "Hello *alice*, see <https://example.com|the docs>!", "Markdown became mrkdwn"
    assert (await bot.store.get_agent_by_conversation(bot.channel_key(GENERAL))) is not None
    turn = bot.user_turns(0)[-1]
    assert turn.endswith(f" alice ({ALICE})] what do you remember?"), "named from users.info; the mention stripped"
    assert await bot.store.inbox_pending(limit=10) == []


async def test_a_dm_is_answered_in_the_dm_by_a_separate_agent(bot: SlackBot) -> None:
    bot.llm.enqueue(reply("in the channel"), reply("in private"))
    await bot.slack.send_event(bot.fake.events.mention("public"))
    await bot.fake.wait_for_call("chat.postMessage")
    await bot.settle()

    assert (await bot.slack.send_event(bot.fake.events.message("private, no mention needed"))).status == 200

    posted = await bot.fake.wait_for_call("chat.postMessage", lambda c: c.args["channel"] == DM_ALICE)
    await bot.settle()
    assert posted.args["text"] == "in private"
    assert "thread_ts" not in posted.args, "a top-level DM is answered at the top level"
    channel_agent = await bot.agent_for(bot.channel_key(GENERAL))
    dm_agent = await bot.agent_for(f"slack:dm:{ALICE}")
    assert channel_agent != dm_agent
    assert "public" not in " ".join(bot.user_turns(1)), "the DM agent never saw the channel"


@pytest.mark.parametrize("signature", ["wrong_secret", "stale", "missing"])
async def test_a_badly_signed_event_is_refused_with_401_and_nothing_is_stored(bot: SlackBot, signature: Any) -> None:
    delivery = await bot.slack.send_event(bot.fake.events.mention("let me in"), signature=signature)

    assert delivery.status == 401
    assert await bot.store.inbox_pending(limit=10) == []
    assert await bot.store.list_agents(limit=10) == []
    assert bot.llm.chat_requests == []
    assert bot.fake.calls_to("chat.postMessage") == []


async def test_a_retried_event_is_answered_once(bot: SlackBot) -> None:
    bot.llm.enqueue(reply("once"))
    envelope = bot.fake.events.envelope(bot.fake.events.mention("hello"))

    first = await bot.slack.send_envelope(envelope)
    retry = await bot.slack.send_envelope(envelope, retry_num=1, retry_reason="http_timeout")

    assert (first.status, retry.status) == (200, 200)
    await bot.fake.wait_for_call("chat.postMessage")
    await bot.settle()
    assert [c.args["text"] for c in bot.fake.calls_to("chat.postMessage")] == ["once"]
    assert bot.runtime.stats.duplicates_dropped == 1


@pytest.mark.parametrize("first", ["app_mention", "message"])
async def test_the_app_mention_and_message_twins_of_one_message_are_answered_once(bot: SlackBot, first: str) -> None:
    bot.llm.enqueue(reply("one answer"))
    mention = bot.fake.events.mention("twins?")
    twin = {**mention, "type": "message", "channel_type": "channel"}
    events = [mention, twin] if first == "app_mention" else [twin, mention]

    for event in events:
        assert (await bot.slack.send_event(event)).status == 200

    await bot.fake.wait_for_call("chat.postMessage")
    await bot.settle()
    assert [c.args["text"] for c in bot.fake.calls_to("chat.postMessage")] == ["one answer"]
    assert bot.runtime.stats.duplicates_dropped == 1


async def test_the_ack_returns_while_the_llm_is_still_thinking(bot: SlackBot) -> None:
    """Slack gives up after 3 s: the event is acknowledged once stored, not once answered."""
    asked, release = threading.Event(), threading.Event()

    def slow(_request: Any) -> Step:
        asked.set()
        release.wait(10)  # holds the fake LLM's thread until the test has its ack
        return reply("sorry for the wait")

    bot.llm.enqueue(Computed(respond=slow))
    mention = bot.fake.events.mention("think hard")

    delivery = await bot.slack.send_event(mention)

    assert delivery.status == 200
    assert bot.fake.calls_to("chat.postMessage") == [], "acknowledged before any answer existed"
    assert len(await bot.store.inbox_pending(limit=10)) == 1, "stored before the ack"
    assert await asyncio.to_thread(asked.wait, 10), "the turn went on to the LLM after the ack"
    release.set()
    posted = await bot.fake.wait_for_call("chat.postMessage", timeout=10)
    await bot.settle()
    assert posted.args["text"] == "sorry for the wait"


async def test_a_long_reply_is_streamed_into_one_message_in_the_thread(bot: SlackBot) -> None:
    paragraphs = [f"Paragraph {i}: " + " ".join(f"word{j}" for j in range(60)) for i in range(20)]
    paragraphs[3] += " <!here>"  # no pinging the channel, streamed or not
    text = "\n\n".join(paragraphs) + "\n\n```python\nprint('kept')\n```"
    assert 8_000 < len(text) < 12_000
    bot.llm.enqueue(reply(text))
    mention = bot.fake.events.mention("tell me everything")

    await bot.slack.send_event(mention)

    stop = await bot.fake.wait_for_call("chat.stopStream")
    await bot.settle()
    (start,) = bot.fake.calls_to("chat.startStream")
    assert (start.args["thread_ts"], start.args["recipient_user_id"]) == (mention["ts"], ALICE)
    appends = bot.fake.calls_to("chat.appendStream")
    assert appends and all(len(c.args["markdown_text"]) <= MESSAGE_LIMIT for c in appends)
    streamed = bot.fake.workspace.message(GENERAL, stop.args["ts"])
    defused = text.replace("<!here>", "<\u200b!here>")
    assert (streamed.text, streamed.stream, streamed.thread_ts) == (defused, "stopped", mention["ts"])
    assert bot.fake.calls_to("chat.postMessage") == []
    assert bot.fake.calls_to("chat.update") == []


async def test_without_streaming_a_long_reply_is_posted_in_parts_with_fences_intact(bot: SlackBot) -> None:
    bot.fake.fail("chat.startStream", "unknown_method")
    intro = " ".join(f"Sentence {i} of the answer." for i in range(110))
    code = "```python\n" + "\n".join(f"print('line {i}')" for i in range(150)) + "\n```"
    outro = " ".join(f"More words in sentence {i}." for i in range(90))
    text = f"{intro}\n\n{code}\n\n{outro}"
    assert len(text) > 2 * MESSAGE_LIMIT
    bot.llm.enqueue(reply(text))
    mention = bot.fake.events.mention("long please")

    await bot.slack.send_event(mention)

    await bot.fake.wait_for_calls("chat.postMessage", 3, _in_thread(mention["ts"]))
    await bot.settle()
    posts = [c.args["text"] for c in bot.fake.calls_to("chat.postMessage")]
    assert all(len(post) <= MESSAGE_LIMIT for post in posts)
    assert all(len(re.findall(r"^```", post, re.MULTILINE)) % 2 == 0 for post in posts), "fences balanced"
    assert "\n".join(posts).count("print('line 149')") == 1, "nothing lost or doubled"
    assert "```python" not in "".join(posts), "Slack shows no language tag"
    assert bot.fake.calls_to("chat.update") == []


async def test_edits_deletions_bots_and_its_own_echo_are_ignored(bot: SlackBot) -> None:
    bot.llm.enqueue(reply("only this"))
    events = bot.fake.events
    said = events.message("hello", channel=DM_ALICE)
    bot_reply = await bot.adapter.client.chat_postMessage(channel=GENERAL, text="I said something")
    quiet = [
        events.edit(DM_ALICE, said["ts"], "hello (edited)"),
        events.delete(DM_ALICE, said["ts"]),
        events.bot_message(f"{events.bot_mention} beep", channel=GENERAL),
        events.own_message_echo(GENERAL, bot_reply["ts"]),
        events.message("just chatting", channel=GENERAL, user=BOB),
    ]
    for event in quiet:
        assert (await bot.slack.send_event(event)).status == 200

    await bot.slack.send_event(events.message("now me"))

    await bot.fake.wait_for_call("chat.postMessage", lambda c: c.args["channel"] == DM_ALICE)
    await bot.settle()
    assert len(bot.llm.chat_requests) == 1
    assert bot.user_turns(0)[-1].endswith("] now me")


async def test_events_from_another_workspace_are_ignored(bot: SlackBot) -> None:
    stranger = AppIdentity(team_id="T0STRANGER")
    body = bot.fake.events.envelope(bot.fake.events.mention("hi from elsewhere"))
    body |= {"team_id": stranger.team_id, "authorizations": stranger.authorizations()}

    assert (await bot.slack.send_envelope(body)).status == 200

    assert await bot.store.inbox_pending(limit=10) == []
    assert await bot.store.list_agents(limit=10) == []


async def test_in_a_thread_it_joined_it_answers_without_a_mention_also_after_a_restart(bot: SlackBot) -> None:
    bot.llm.enqueue(reply("joined"), reply("still here"), reply("after the restart"))
    mention = bot.fake.events.mention("start a thread")
    await bot.slack.send_event(mention)
    await bot.fake.wait_for_call("chat.postMessage")
    await bot.settle()

    await bot.slack.send_event(bot.fake.events.message("no mention", channel=GENERAL, thread_ts=mention["ts"]))
    await bot.fake.wait_for_calls("chat.postMessage", 2)
    await bot.settle()
    # Someone else addressed in the thread: not for the bot.
    to_bob = bot.fake.events.message(f"<@{BOB}> what do you think?", channel=GENERAL, thread_ts=mention["ts"])
    await bot.slack.send_event(to_bob)
    # A thread it was never in: not for the bot either.
    other = bot.fake.events.message("elsewhere", channel=GENERAL, user=BOB)
    await bot.slack.send_event(bot.fake.events.message("reply", channel=GENERAL, thread_ts=other["ts"]))
    await bot.restart()
    await bot.slack.send_event(bot.fake.events.message("still there?", channel=GENERAL, thread_ts=mention["ts"]))

    await bot.fake.wait_for_calls("chat.postMessage", 3)
    await bot.settle()
    texts = [c.args["text"] for c in bot.fake.calls_to("chat.postMessage")]
    assert texts == ["joined", "still here", "after the restart"]
    assert all(c.args["thread_ts"] == mention["ts"] for c in bot.fake.calls_to("chat.postMessage"))
    assert len(await bot.store.list_agents(limit=10)) == 1, "the thread follows its channel's agent"


async def test_a_files_only_mention_is_described_to_the_agent(bot: SlackBot) -> None:
    bot.llm.enqueue(reply("nice"), reply("you rang?"))
    photo = bot.fake.workspace.host_file(name="cat.png", content=b"\x89PNG", user=ALICE)
    notes = bot.fake.workspace.host_file(name="notes.pdf", content=b"%PDF-1.4", user=ALICE)
    await bot.slack.send_event(bot.fake.events.mention("", files=[photo, notes]))
    await bot.fake.wait_for_call("chat.postMessage")
    await bot.settle()
    assert bot.user_turns(0)[-1].endswith("] [image: cat.png]\n[file: notes.pdf]")

    await bot.slack.send_event(bot.fake.events.mention(" "))
    await bot.fake.wait_for_calls("chat.postMessage", 2)
    await bot.settle()
    assert bot.user_turns(1)[-1].endswith(f"] {EMPTY_MENTION}")


async def test_a_channel_that_refuses_the_bot_is_logged_once_and_the_turn_is_closed(
    bot: SlackBot, caplog: pytest.LogCaptureFixture
) -> None:
    bot.llm.enqueue(reply("first"), reply("second"))
    for text in ("one", "two"):
        bot.fake.fail("chat.postMessage", "not_in_channel", channel=GENERAL)
        await bot.slack.send_event(bot.fake.events.mention(text))
        count = 1 if text == "one" else 2
        await bot.fake.wait_for_calls("chat.postMessage", count, lambda c: not c.ok)
        await bot.settle()

    warnings = [r for r in caplog.records if "refuses the bot's messages" in r.getMessage()]
    assert len(warnings) == 1
    assert await bot.store.inbox_pending(limit=10) == []
    agent = await bot.agent_for(bot.channel_key(GENERAL))
    assert await bot.store.count_messages(agent) >= 4, "both turns were recorded"


async def test_a_rate_limited_post_is_retried_by_slack_sdks_handler(
    bot: SlackBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    from slack_sdk.http_retry import builtin_async_handlers

    # The handler sleeps Retry-After plus random() seconds; no jitter keeps this exact.
    monkeypatch.setattr(builtin_async_handlers, "random", type("NoJitter", (), {"random": staticmethod(lambda: 0.0)}))
    bot.fake.rate_limit("chat.postMessage", retry_after=0, times=1)
    bot.llm.enqueue(reply("patience"))

    await bot.slack.send_event(bot.fake.events.mention("hi"))

    await bot.fake.wait_for_call("chat.postMessage", lambda c: c.ok)
    await bot.settle()
    assert [(c.status, c.args["text"]) for c in bot.fake.calls_to("chat.postMessage")] == [
        (429, "patience"),
        (200, "patience"),
    ]


async def test_a_channel_without_the_bot_gets_no_answer_and_no_retries(bot: SlackBot) -> None:
    bot.llm.enqueue(reply("can't post here"))
    await bot.slack.send_event(bot.fake.events.mention("hello?", channel=RANDOM))
    await bot.fake.wait_for_call("chat.postMessage")
    await bot.settle()
    (call,) = bot.fake.calls_to("chat.postMessage")
    assert call.response["error"] == "not_in_channel"
    assert await bot.store.inbox_pending(limit=10) == []


async def test_socket_mode_acks_after_storing_and_answers_in_the_thread(
    tmp_path: Path,
    slack_fake: FakeSlack,
    llm_server: FakeLLMServer,
    openai_client: openai.AsyncOpenAI,
    sleeps: SleepRecorder,
) -> None:
    bot = await SlackBot.start(
        tmp_path=tmp_path, fake=slack_fake, llm=llm_server, openai_client=openai_client, sleeps=sleeps, socket=True
    )
    try:
        assert bot.adapter.is_ready()
        await slack_fake.socket.wait_for_connection()  # the fake's side of it, too
        llm_server.enqueue(reply("over the socket"))
        mention = slack_fake.events.mention("hi")
        envelope = await slack_fake.socket.send_events_api(slack_fake.events.envelope(mention))
        retry = await slack_fake.socket.send_events_api(
            slack_fake.events.envelope(mention), retry_attempt=1, retry_reason="timeout"
        )
        await slack_fake.socket.wait_for_ack(envelope)
        await slack_fake.socket.wait_for_ack(retry)
        posted = await slack_fake.wait_for_call("chat.postMessage", _in_thread(mention["ts"]))
        await bot.settle()
        assert posted.args["text"] == "over the socket"
        assert len(slack_fake.calls_to("chat.postMessage")) == 1
        assert slack_fake.calls_to("apps.connections.open")[0].token == slack_fake.app.app_token
    finally:
        await bot.close()
    assert not bot.adapter.is_ready()


async def test_the_request_url_is_verified_with_the_challenge(bot: SlackBot) -> None:
    delivery = await bot.slack.send_url_verification("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P")

    assert (delivery.status, delivery.json()) == (
        200,
        {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"},
    )
    assert bot.adapter.is_ready()


async def test_a_post_still_rate_limited_after_the_retries_is_logged_and_the_turn_closed(
    bot: SlackBot, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from slack_sdk.http_retry import builtin_async_handlers

    monkeypatch.setattr(builtin_async_handlers, "random", type("NoJitter", (), {"random": staticmethod(lambda: 0.0)}))
    bot.fake.rate_limit("chat.postMessage", retry_after=0, times=None)
    bot.llm.enqueue(reply("never delivered"))

    await bot.slack.send_event(bot.fake.events.mention("hi"))

    await bot.fake.wait_for_calls("chat.postMessage", 3)
    await bot.settle()
    assert len(bot.fake.calls_to("chat.postMessage")) == 3, "one try and two retries, then it gives up"
    assert any("ratelimited" in r.getMessage() for r in caplog.records)
    assert await bot.store.inbox_pending(limit=10) == []


async def test_a_stream_that_breaks_off_continues_in_new_messages(bot: SlackBot) -> None:
    text = "\n\n".join(f"Part {i}: " + "lorem ipsum " * 40 for i in range(16))
    assert len(text) > 2 * MESSAGE_LIMIT
    bot.fake.fail("chat.appendStream", "message_not_in_streaming_state", times=None)
    bot.llm.enqueue(reply(text))
    mention = bot.fake.events.mention("go on")

    await bot.slack.send_event(mention)

    await bot.fake.wait_for_call("chat.postMessage", _in_thread(mention["ts"]))
    await bot.settle()
    (start,) = bot.fake.calls_to("chat.startStream")
    shown = start.args["markdown_text"] + "".join(c.args["text"] for c in bot.fake.calls_to("chat.postMessage"))
    assert shown.replace(" ", "").replace("\n", "") == text.replace(" ", "").replace("\n", ""), "all of it, once"


async def test_a_very_long_message_is_answered_and_kept_whole_in_recall(bot: SlackBot) -> None:
    bot.llm.enqueue(reply("that was long"))
    long_text = "word " * 6_000

    await bot.slack.send_event(bot.fake.events.message(long_text))

    await bot.fake.wait_for_call("chat.postMessage")
    await bot.settle()
    agent = await bot.agent_for(f"slack:dm:{ALICE}")
    stored = await bot.store.get_messages(agent, from_seq=1, limit=50)
    assert any(m.content.endswith(long_text.strip()) for m in stored)


async def test_server_errors_are_retried_by_slack_sdks_handler(bot: SlackBot) -> None:
    bot.fake.fail("chat.postMessage", "fatal_error", status=503, times=1)
    bot.llm.enqueue(reply("second time lucky"))

    await bot.slack.send_event(bot.fake.events.mention("hi"))

    await bot.fake.wait_for_call("chat.postMessage", lambda c: c.ok, timeout=10)
    await bot.settle()
    assert [c.status for c in bot.fake.calls_to("chat.postMessage")] == [503, 200]


async def test_other_bots_are_answered_when_allowed(
    tmp_path: Path,
    slack_fake: FakeSlack,
    llm_server: FakeLLMServer,
    openai_client: openai.AsyncOpenAI,
    sleeps: SleepRecorder,
) -> None:
    bot = await SlackBot.start(
        tmp_path=tmp_path,
        fake=slack_fake,
        llm=llm_server,
        openai_client=openai_client,
        sleeps=sleeps,
        allow_bots=True,
    )
    try:
        llm_server.enqueue(reply("hello, fellow bot"))
        event = slack_fake.events.mention("status?")
        event |= {"bot_id": "B0OTHER01", "bot_profile": {"id": "B0OTHER01", "name": "other-bot"}}
        await bot.slack.send_event(event)
        posted = await slack_fake.wait_for_call("chat.postMessage")
        await bot.settle()
        assert posted.args["text"] == "hello, fellow bot"
    finally:
        await bot.close()


async def test_a_passing_streaming_failure_falls_back_for_that_reply_only(bot: SlackBot) -> None:
    long = " ".join(f"Sentence {i}." for i in range(600))
    assert len(long) > MESSAGE_LIMIT
    bot.fake.fail("chat.startStream", "internal_error", times=1)
    bot.llm.enqueue(reply(long), reply(long))

    threads = []
    for text in ("first", "second"):
        mention = bot.fake.events.mention(text)
        threads.append(mention["ts"])
        await bot.slack.send_event(mention)
        await bot.fake.wait_for_calls("chat.startStream", len(threads))
        await bot.settle()

    assert [c.ok for c in bot.fake.calls_to("chat.startStream")] == [False, True]
    posts = bot.fake.calls_to("chat.postMessage")
    assert len(posts) >= 2 and all(c.args["thread_ts"] == threads[0] for c in posts), "the first reply, in parts"
    (stop,) = bot.fake.calls_to("chat.stopStream")
    assert bot.fake.workspace.message(GENERAL, stop.args["ts"]).thread_ts == threads[1], "the second, streamed"
