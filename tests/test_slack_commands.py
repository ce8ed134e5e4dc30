"""`/membot` end to end: signed slash commands, button clicks, the message shortcut and
`@membot admin ...` through the real Bolt app, answered at the fake's `response_url`s, over
the real admin service and store."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest

from bot.slack.admin import CANCEL_ACTION, CONFIRM_ACTION
from bot.slack.commands import MODAL_CALLBACK, SHORTCUT_CALLBACK
from tests.fakes.llm_fixtures import SleepRecorder
from tests.fakes.llm_server import FakeLLMServer
from tests.fakes.slack_api import ADMIN, ALICE, BOB, GENERAL, OWNER, FakeSlack, ResponseUrlPost
from tests.fakes.slack_bot import SlackBot, reply


@pytest.fixture
async def bot(
    tmp_path: Path,
    slack_fake: FakeSlack,
    llm_server: FakeLLMServer,
    openai_client: openai.AsyncOpenAI,
    sleeps: SleepRecorder,
) -> AsyncIterator[SlackBot]:
    started = await SlackBot.start(
        tmp_path=tmp_path,
        fake=slack_fake,
        llm=llm_server,
        openai_client=openai_client,
        sleeps=sleeps,
        admin_users=(BOB,),
    )
    try:
        yield started
    finally:
        await started.close()


async def _talk(bot: SlackBot, text: str = "remember that I like tea") -> str:
    """Alice mentions the bot in #general and gets an answer; returns the channel agent's id."""
    bot.llm.enqueue(reply("noted"))
    await bot.slack.send_event(bot.fake.events.mention(text))
    await bot.fake.wait_for_call("chat.postMessage")
    await bot.settle()
    return await bot.agent_for(bot.channel_key(GENERAL))


async def _command(bot: SlackBot, text: str, *, user: str = ADMIN, count: int = 1) -> ResponseUrlPost:
    """Run `/membot text` as `user`; the `count`-th answer at a response_url."""
    delivery = await bot.slack.send_slash_command("/membot", text, user=user)
    assert delivery.status == 200
    assert delivery.body == "", "acknowledged at once, answered at the response_url"
    return (await bot.fake.wait_for_response_url_posts(count))[-1]


def _as_message(post: ResponseUrlPost, bot: SlackBot) -> dict[str, Any]:
    """The ephemeral message a response_url post showed, as a block_actions payload carries it."""
    return {
        "type": "message",
        "ts": bot.fake.workspace.new_ts(),
        "text": post.body["text"],
        "blocks": post.body["blocks"],
    }


def _button(post: ResponseUrlPost, action_id: str) -> dict[str, Any]:
    actions = next(b for b in post.body["blocks"] if b["type"] == "actions")
    return next(e for e in actions["elements"] if e["action_id"] == action_id)


async def test_a_member_who_is_not_an_admin_is_refused_a_dump(bot: SlackBot) -> None:
    await _talk(bot)

    post = await _command(bot, "dump", user=ALICE)

    assert "Only workspace admins and owners" in post.body["text"]
    assert post.body["response_type"] == "ephemeral"
    assert bot.fake.calls_to("files.getUploadURLExternal") == []
    assert await bot.store.list_audit(limit=10) == []


async def test_reset_asks_for_confirmation_then_empties_recall_and_is_audited(bot: SlackBot) -> None:
    agent = await _talk(bot)
    assert await bot.store.count_messages(agent) > 0

    question = await _command(bot, "reset recall", user=OWNER)

    assert "Reset *recall* memory" in question.body["text"]
    assert await bot.store.count_messages(agent) > 0, "nothing happens before the click"
    confirm = _button(question, CONFIRM_ACTION)
    delivery = await bot.slack.send_block_action(
        message=_as_message(question, bot), action_id=CONFIRM_ACTION, value=confirm["value"], user=OWNER
    )
    assert delivery.status == 200
    done = await bot.fake.wait_for_response_url_post(lambda p: "Deleted" in p.body.get("text", ""))

    assert done.body["replace_original"] is True
    assert await bot.store.count_messages(agent) == 0
    (entry,) = await bot.store.list_audit(limit=10)
    assert (entry.action, entry.actor_id, entry.agent_id, entry.scope) == (
        "reset_recall",
        OWNER,
        agent,
        f"slack:{bot.fake.app.team_id}",
    )


async def test_a_confirmation_clicked_by_a_non_admin_does_nothing(bot: SlackBot) -> None:
    agent = await _talk(bot)
    question = await _command(bot, "reset all")
    confirm = _button(question, CONFIRM_ACTION)

    await bot.slack.send_block_action(
        message=_as_message(question, bot), action_id=CONFIRM_ACTION, value=confirm["value"], user=ALICE
    )

    refused = await bot.fake.wait_for_response_url_post(lambda p: "Only workspace admins" in p.body.get("text", ""))
    assert refused.user == ALICE
    assert await bot.store.get_agent(agent) is not None
    assert await bot.store.list_audit(limit=10) == []


async def test_cancel_changes_nothing(bot: SlackBot) -> None:
    agent = await _talk(bot)
    question = await _command(bot, "reset all")

    await bot.slack.send_block_action(message=_as_message(question, bot), action_id=CANCEL_ACTION, user=ADMIN)

    await bot.fake.wait_for_response_url_post(lambda p: p.body.get("text", "").startswith("Cancelled"))
    assert await bot.store.get_agent(agent) is not None


async def test_dump_goes_to_the_admins_dm_as_a_json_file(bot: SlackBot) -> None:
    agent = await _talk(bot, "my cat is called Tom")

    post = await _command(bot, "dump")

    assert post.body["text"].startswith("Sent the dump of this agent to your DM")
    complete = await bot.fake.wait_for_call("files.completeUploadExternal")
    dm = bot.fake.calls_to("conversations.open")[0]
    assert dm.args["users"] == ADMIN
    assert complete.args["channel_id"] == dm.response["channel"]["id"]
    dumped = json.loads(bot.fake.workspace.files.get(json.loads(complete.args["files"])[0]["id"]).content)
    assert dumped["agent"]["id"] == agent
    assert any("my cat is called Tom" in m["content"] for m in dumped["messages"])
    (entry,) = await bot.store.list_audit(limit=10)
    assert (entry.action, entry.actor_id) == ("dump", ADMIN)


async def test_configured_admin_users_may_run_commands(bot: SlackBot) -> None:
    await _talk(bot)

    post = await _command(bot, "show", user=BOB)

    assert "*persona*" in post.body["text"]
    assert "Recall: " in post.body["text"]


async def test_pause_resume_policy_and_audit(bot: SlackBot) -> None:
    agent = await _talk(bot)

    assert "Paused" in (await _command(bot, "pause", count=1)).body["text"]
    assert (await bot.store.get_agent(agent)).is_paused  # type: ignore[union-attr]
    assert "Resumed" in (await _command(bot, "resume", count=2)).body["text"]
    edited = await _command(bot, "edit human Alice prefers tea", count=3)
    assert "*human* is now 17 characters" in edited.body["text"]
    human = next(b for b in await bot.store.get_blocks(agent) if b.label == "human")
    assert human.value == "Alice prefers tea"
    policy = await _command(bot, "policy per_user server", count=4)
    assert "`per_user`" in policy.body["text"]
    stored = await bot.store.get_policy(f"slack:{bot.fake.app.team_id}", None)
    assert stored is not None and stored.mode == "per_user"
    audit = await _command(bot, "audit 5", count=5)
    for action in ("pause", "resume", "set_policy", "edit_block"):
        assert action in audit.body["text"]


async def test_an_unknown_subcommand_shows_the_help(bot: SlackBot) -> None:
    post = await _command(bot, "frobnicate")
    assert "Unknown subcommand `frobnicate`" in post.body["text"]
    assert "`reset core|recall|archival|all [@user]`" in post.body["text"]


async def test_forget_a_user_after_confirmation(bot: SlackBot) -> None:
    bot.llm.enqueue(reply("hi alice"))
    await bot.slack.send_event(bot.fake.events.message("this is private"))
    await bot.fake.wait_for_call("chat.postMessage")
    await bot.settle()
    dm_agent = await bot.agent_for(f"slack:dm:{ALICE}")

    question = await _command(bot, f"forget <@{ALICE}|alice>")
    confirm = _button(question, CONFIRM_ACTION)
    await bot.slack.send_block_action(
        message=_as_message(question, bot), action_id=CONFIRM_ACTION, value=confirm["value"], user=ADMIN
    )

    await bot.fake.wait_for_response_url_post(lambda p: p.body.get("text", "").startswith("Forgot"))
    # A workspace admin reaches the workspace's agents, not people's DMs with the bot.
    assert await bot.store.get_agent(dm_agent) is not None
    (entry,) = await bot.store.list_audit(limit=10)
    assert (entry.action, entry.detail.split()[0]) == ("forget_user", f"user={ALICE}")


async def test_admin_by_mention_in_a_thread_answers_ephemerally_there(bot: SlackBot) -> None:
    await _talk(bot)
    thread = bot.fake.events.mention("start")  # a thread in #general
    bot.llm.enqueue(reply("thread started"))
    await bot.slack.send_event(thread)
    await bot.fake.wait_for_calls("chat.postMessage", 2)
    await bot.settle()
    requests_before = len(bot.llm.chat_requests)

    admin_mention = bot.fake.events.mention("admin show", user=ADMIN, thread_ts=thread["ts"])
    twin = {**admin_mention, "type": "message", "channel_type": "channel"}
    envelope = bot.fake.events.envelope(admin_mention)
    await bot.slack.send_event(twin)
    await bot.slack.send_envelope(envelope)
    await bot.slack.send_envelope(envelope, retry_num=1, retry_reason="http_timeout")

    answer = await bot.fake.wait_for_call("chat.postEphemeral")
    await bot.adapter.wait_requests_done()
    await bot.settle()
    assert (answer.args["user"], answer.args["channel"], answer.args["thread_ts"]) == (ADMIN, GENERAL, thread["ts"])
    assert "*persona*" in answer.args["text"]
    assert len(bot.llm.chat_requests) == requests_before, "admin commands never reach the agent"
    assert len(bot.fake.calls_to("chat.postEphemeral")) == 1


async def test_the_message_shortcut_asks_for_a_subcommand_and_runs_it(bot: SlackBot) -> None:
    agent = await _talk(bot)
    parent = bot.fake.workspace.messages(GENERAL)[0]
    in_thread = {"type": "message", "user": ALICE, "ts": bot.fake.workspace.new_ts(), "thread_ts": parent.ts}

    await bot.slack.send_message_shortcut(callback_id=SHORTCUT_CALLBACK, message=in_thread, user=ADMIN)

    opened = await bot.fake.wait_for_call("views.open")
    view = json.loads(opened.args["view"]) if isinstance(opened.args["view"], str) else opened.args["view"]
    assert view["callback_id"] == MODAL_CALLBACK
    values = {"command": {"text": {"type": "plain_text_input", "value": "pause"}}}
    submission = bot.fake.events.view_submission(view=view, values=values, user=ADMIN)
    assert (await bot.slack.send_payload(submission)).status == 200

    post = await bot.fake.wait_for_response_url_post()
    assert "Paused" in post.body["text"]
    assert post.user == ADMIN
    assert (await bot.store.get_agent(agent)).is_paused  # type: ignore[union-attr]


async def test_an_expired_response_url_falls_back_to_an_ephemeral_message(bot: SlackBot) -> None:
    bot.fake.expire_response_urls()

    await bot.slack.send_slash_command("/membot", "dump", user=ALICE)

    answer = await bot.fake.wait_for_call("chat.postEphemeral")
    assert answer.args["user"] == ALICE
    assert "Only workspace admins" in answer.args["text"]
    (post,) = bot.fake.response_url_posts
    assert post.status == 404


async def test_usage_reports_the_workspaces_tokens_and_resets_its_budget(bot: SlackBot) -> None:
    from datetime import UTC, datetime

    from bot.memory.usage_store import UsageRecord

    agent = await _talk(bot)
    scope = f"slack:{bot.fake.app.team_id}"
    today = datetime.now(UTC).date()
    await bot.store.record_usage(
        UsageRecord(
            day=today,
            scope=scope,
            channel=GENERAL,
            agent_id=agent,
            user_id=f"slack:{ALICE}",
            model="gpt-4o-mini",
            prompt_tokens=1200,
            completion_tokens=34,
            calls=2,
        )
    )
    await bot.store.record_usage(
        UsageRecord(day=today, scope="slack:T0OTHER", agent_id="x", prompt_tokens=999, calls=1)
    )

    report = await _command(bot, "usage 3")

    assert f"`{today:%Y-%m-%d}` 1,200 prompt + 34 completion tokens, 2 calls" in report.body["text"]
    assert "Total: 1,234 tokens in 2 calls" in report.body["text"], "only this workspace's usage"
    reset = await _command(bot, "usage reset", count=2)
    assert reset.body["text"].startswith("The workspace's daily budget starts afresh")
    (entry,) = await bot.store.list_audit(limit=10)
    assert entry.action == "reset_budget"


async def test_in_a_dm_there_is_no_workspace_agent_to_manage(bot: SlackBot) -> None:
    form = bot.fake.events.slash_command(
        "/membot", "show", user=ADMIN, channel=bot.fake.workspace.channel("D0ALICE01").id
    )

    await bot.slack.send_form(form)

    post = await bot.fake.wait_for_response_url_post()
    assert "run `/membot` in a channel" in post.body["text"]
    assert await bot.store.list_agents(limit=10) == [], "no agent was created by asking"


async def test_heartbeat_gives_the_agent_a_quiet_reflection_step(bot: SlackBot) -> None:
    await _talk(bot)
    posts_before = len(bot.fake.calls_to("chat.postMessage"))
    bot.llm.enqueue(reply("a thought for no one"))

    post = await _command(bot, "heartbeat")

    assert post.body["text"].startswith("Heartbeat queued")
    await bot.settle()
    assert len(bot.llm.chat_requests) == 2, "the reflection ran"
    assert len(bot.fake.calls_to("chat.postMessage")) == posts_before, "and told no one"
    (entry,) = await bot.store.list_audit(limit=10)
    assert entry.action == "heartbeat_now"
