"""Slack's admin forms and buttons check again when they are used: the shortcut's modal belongs to
the admin who opened it (its `private_metadata` says who and where), and a submission or a
confirmation click looks the clicking user up afresh, so an admin demoted since the form or
the question was shown changes nothing. Through the Slack emulator and the real Bolt app."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from bot.slack.admin import CONFIRM_ACTION
from bot.slack.commands import SHORTCUT_CALLBACK
from tests.fakes.slack_api import ADMIN, ALICE, GENERAL
from tests.fakes.slack_bot import SlackBot, reply


async def _talk(bot: SlackBot) -> str:
    bot.llm.enqueue(reply("noted"))
    await bot.slack.send_event(bot.fake.events.mention("remember that I like tea"))
    await bot.fake.wait_for_call("chat.postMessage")
    await bot.settle()
    return await bot.agent_for(bot.channel_key(GENERAL))


def _demote(bot: SlackBot, user: str) -> None:
    workspace = bot.fake.workspace
    workspace.add_user(dataclasses.replace(workspace.user(user), is_admin=False, is_owner=False))


async def _opened_form(bot: SlackBot) -> dict[str, Any]:
    parent = bot.fake.workspace.messages(GENERAL)[0]
    message = {"type": "message", "user": ALICE, "ts": parent.ts}
    await bot.slack.send_message_shortcut(callback_id=SHORTCUT_CALLBACK, message=message, user=ADMIN)
    opened = await bot.fake.wait_for_call("views.open")
    view: dict[str, Any] = (
        json.loads(opened.args["view"]) if isinstance(opened.args["view"], str) else opened.args["view"]
    )
    return view


async def _submit(bot: SlackBot, view: dict[str, Any], text: str, *, user: str = ADMIN) -> None:
    values = {"command": {"text": {"type": "plain_text_input", "value": text}}}
    assert (
        await bot.slack.send_payload(bot.fake.events.view_submission(view=view, values=values, user=user))
    ).status == 200
    await bot.adapter.wait_requests_done()


def _answers(bot: SlackBot) -> list[str]:
    """Everything shown to anyone after a command: response_url posts and ephemeral messages."""
    posts = [str(p.body.get("text", "")) for p in bot.fake.response_url_posts]
    return posts + [str(c.args.get("text", "")) for c in bot.fake.calls_to("chat.postEphemeral")]


async def test_the_modal_names_who_opened_it_and_refuses_anyone_else(slack_bot: SlackBot) -> None:
    bot = slack_bot
    agent = await _talk(bot)
    view = await _opened_form(bot)
    metadata = json.loads(view["private_metadata"])
    assert (metadata["user"], metadata["team"]) == (ADMIN, bot.fake.app.team_id)

    await _submit(bot, view, "pause", user=ALICE)

    assert any("opened by someone else" in text for text in _answers(bot))
    assert not (await bot.store.get_agent(agent)).is_paused  # type: ignore[union-attr]
    assert await bot.store.list_audit(limit=10) == []


async def test_an_admin_demoted_after_opening_the_modal_changes_nothing(slack_bot: SlackBot) -> None:
    bot = slack_bot
    agent = await _talk(bot)
    view = await _opened_form(bot)
    await bot.slack.send_slash_command("/membot", "show", user=ADMIN)  # the admin check is now cached
    await bot.fake.wait_for_response_url_post()
    _demote(bot, ADMIN)

    await _submit(bot, view, "pause")

    assert any("Only workspace admins" in text for text in _answers(bot))
    assert not (await bot.store.get_agent(agent)).is_paused  # type: ignore[union-attr]
    assert await bot.store.list_audit(limit=10) == []


async def test_an_admin_demoted_before_clicking_confirm_changes_nothing(slack_bot: SlackBot) -> None:
    bot = slack_bot
    agent = await _talk(bot)
    await bot.slack.send_slash_command("/membot", "reset all", user=ADMIN)
    question = await bot.fake.wait_for_response_url_post()
    actions = next(b for b in question.body["blocks"] if b["type"] == "actions")
    confirm = next(e for e in actions["elements"] if e["action_id"] == CONFIRM_ACTION)
    _demote(bot, ADMIN)

    message = {"type": "message", "ts": bot.fake.workspace.new_ts(), "text": question.body["text"]}
    message["blocks"] = question.body["blocks"]
    await bot.slack.send_block_action(message=message, action_id=CONFIRM_ACTION, value=confirm["value"], user=ADMIN)
    await bot.adapter.wait_requests_done()

    assert any("Only workspace admins" in text for text in _answers(bot))
    assert await bot.store.get_agent(agent) is not None
    assert await bot.store.list_audit(limit=10) == []


@pytest.mark.parametrize(
    "value", ["[1, 2]", "not json", '"reset"', '{"op": "reset", "agent": "x", "scope": "everything"}']
)
async def test_a_button_value_we_did_not_write_does_nothing(
    slack_bot: SlackBot, value: str, caplog: pytest.LogCaptureFixture
) -> None:
    bot = slack_bot
    agent = await _talk(bot)
    message = {"type": "message", "ts": bot.fake.workspace.new_ts(), "text": "?", "blocks": []}
    await bot.slack.send_block_action(message=message, action_id=CONFIRM_ACTION, value=value, user=ADMIN)
    await bot.adapter.wait_requests_done()

    assert any("no longer does anything" in text or "malformed" in text for text in _answers(bot))
    assert await bot.store.get_agent(agent) is not None
    assert [r.getMessage() for r in caplog.records if r.exc_info is not None] == []
