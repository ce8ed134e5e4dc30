"""The Discord admin commands end to end: the real discord.py command tree against the fake
Discord's INTERACTION_CREATE, callbacks, follow-ups, buttons and modals, over the real admin
service, router, runtime and SQLite store."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import discord
import openai
import pytest

from tests.fakes.discord_bot import DiscordBot, reply
from tests.fakes.discord_server import (
    DiscordFake,
    FakeChannel,
    FakeInteraction,
    FakeUser,
    Permission,
    RecordedRequest,
)
from tests.fakes.llm_fixtures import SleepRecorder
from tests.fakes.llm_server import FakeLLMServer, TextReply

JSON = dict[str, Any]


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


async def _talk(bot: DiscordBot, channel: FakeChannel, user: FakeUser, text: str, answer: str) -> None:
    """`user` says `text` to the bot in `channel`; the agent answers `answer`."""
    bot.llm.enqueue(reply(answer))
    before = len(bot.fake.messages_in(channel, author=bot.fake.bot))
    mention = "" if channel.guild_id is None else f"{bot.fake.bot.mention} "
    await bot.fake.dispatch_message(channel, user, mention + text)
    await bot.fake.wait_for_message(channel, count=before + 1)
    await bot.settle()


async def _answers(bot: DiscordBot, interaction: FakeInteraction, count: int = 1) -> list[RecordedRequest]:
    """The bot's first `count` calls about `interaction` (callback, follow-ups, edits), once made."""

    def about(r: RecordedRequest) -> bool:
        return r.params.get("token") == interaction.token

    await bot.fake.wait_for_request(about, count=count)
    return bot.fake.responses_to(interaction)[:count]


def _content(request: RecordedRequest) -> str:
    body = request.json or {}
    data = body.get("data", body)
    return str(data.get("content") or "")


def _message_of(callback: RecordedRequest) -> JSON:
    message: JSON = callback.response["resource"]["message"]
    return message


def _button(message: JSON, label: str) -> str:
    for row in message["components"]:
        for component in row.get("components", []):
            if component.get("label") == label:
                return str(component["custom_id"])
    raise LookupError(f"no button {label!r} on the message")


async def test_commands_are_synced_once_hidden_from_non_admins_by_default_permissions(bot: DiscordBot) -> None:
    (put,) = bot.fake.requests_to("PUT", "/applications/{application_id}/commands")
    commands = {c["name"]: c for c in put.json}
    assert set(commands) == {"memory", "forget-me"}
    assert int(commands["memory"]["default_member_permissions"]) == discord.Permissions(manage_guild=True).value
    assert commands["memory"]["dm_permission"] is False, "servers only"
    assert commands["forget-me"]["default_member_permissions"] is None
    subcommands = {o["name"] for o in commands["memory"]["options"]}
    assert {"show", "dump", "edit", "reset", "pause", "resume", "heartbeat", "policy", "persona"} <= subcommands
    assert {"export", "forget", "audit", "usage"} <= subcommands


async def test_a_dump_by_a_member_without_manage_server_is_refused_even_if_discord_lets_it_through(
    bot: DiscordBot,
) -> None:
    await _talk(bot, bot.general, bot.alice, "my secret is 42", "noted")
    interaction = await bot.fake.dispatch_command(bot.general, bot.bob, "memory dump")
    (callback,) = await _answers(bot, interaction)

    assert callback.status == 204 or callback.status == 200
    assert "Only members with the Manage Server permission" in _content(callback)
    assert callback.json["data"]["flags"] & 64, "ephemeral"
    await bot.settle()
    assert not [r for r in bot.fake.responses_to(interaction) if r.files], "no file was sent"
    assert await bot.store.list_audit() == []


async def test_an_admin_dump_is_a_json_and_a_markdown_file_and_is_audited(bot: DiscordBot) -> None:
    await _talk(bot, bot.general, bot.alice, "my secret is 42", "noted")
    interaction = await bot.fake.dispatch_command(bot.general, bot.fake.owner, "memory dump")
    callback, followup = await _answers(bot, interaction, count=2)

    assert callback.json == {"type": 5, "data": {"flags": 64}}, "deferred, ephemeral"
    files = {f.filename: f.data.decode() for f in followup.files}
    agent_id = await bot.agent_for(bot.channel_key)
    assert set(files) == {f"agent-{agent_id}.json", f"agent-{agent_id}.md"}
    assert "my secret is 42" in files[f"agent-{agent_id}.json"]
    assert "## Recall" in files[f"agent-{agent_id}.md"] and "my secret is 42" in files[f"agent-{agent_id}.md"]
    (entry,) = await bot.store.list_audit()
    assert (entry.action, entry.agent_id, entry.actor_id) == ("dump", agent_id, str(bot.fake.owner.id))


async def test_reset_all_asks_for_confirmation_then_empties_memory_and_is_audited(bot: DiscordBot) -> None:
    await _talk(bot, bot.general, bot.alice, "remember me", "I will")
    agent_id = await bot.agent_for(bot.channel_key)
    interaction = await bot.fake.dispatch_command(bot.general, bot.fake.owner, "memory reset", {"part": "all"})
    (callback,) = await _answers(bot, interaction)
    assert "Erase the **all** memory" in _content(callback)
    assert await bot.store.get_agent(agent_id) is not None, "nothing happens before the click"

    question = _message_of(callback)
    click = await bot.fake.dispatch_component(question, bot.fake.owner, _button(question, "Confirm"))
    await _answers(bot, click, count=2)  # the deferral, then the edit with the outcome

    assert await bot.store.get_agent(agent_id) is None
    assert await bot.store.get_agent_by_conversation(bot.channel_key) is None
    assert "is deleted" in bot.fake.responses_to(click)[-1].json["content"]
    (entry,) = await bot.store.list_audit(scope=f"discord:{bot.guild.id}")
    assert (entry.action, entry.agent_id) == ("reset_all", agent_id)


async def test_reset_recall_empties_the_messages_and_cancel_changes_nothing(bot: DiscordBot) -> None:
    await _talk(bot, bot.general, bot.alice, "first", "one")
    agent_id = await bot.agent_for(bot.channel_key)
    assert await bot.store.count_messages(agent_id) > 0

    asked = await bot.fake.dispatch_command(bot.general, bot.fake.owner, "memory reset", {"part": "recall"})
    question = _message_of((await _answers(bot, asked))[0])
    cancel = await bot.fake.dispatch_component(question, bot.fake.owner, _button(question, "Cancel"))
    (cancelled,) = await _answers(bot, cancel)
    assert cancelled.json["type"] == 7 and "nothing changed" in cancelled.json["data"]["content"]
    assert await bot.store.count_messages(agent_id) > 0

    asked = await bot.fake.dispatch_command(bot.general, bot.fake.owner, "memory reset", {"part": "recall"})
    question = _message_of((await _answers(bot, asked))[0])
    intruder = await bot.fake.dispatch_component(question, bot.bob, _button(question, "Confirm"))
    assert "Only the member who ran the command" in _content((await _answers(bot, intruder))[0])
    click = await bot.fake.dispatch_component(question, bot.fake.owner, _button(question, "Confirm"))
    await _answers(bot, click, count=2)
    assert await bot.store.count_messages(agent_id) == 0
    assert [e.action for e in await bot.store.list_audit()] == ["reset_recall"]


async def test_edit_opens_a_prefilled_modal_whose_submit_rewrites_the_block(bot: DiscordBot) -> None:
    await _talk(bot, bot.general, bot.alice, "hi", "hello")
    agent_id = await bot.agent_for(bot.channel_key)
    (old,) = [b for b in await bot.store.get_blocks(agent_id) if b.label == "human"]

    opened = await bot.fake.dispatch_command(bot.general, bot.fake.owner, "memory edit", {"block": "human"})
    (callback,) = await _answers(bot, opened)
    assert callback.json["type"] == 9, "a modal"
    (row,) = callback.json["data"]["components"]
    (text_input,) = row["components"]
    assert text_input["value"] == old.value, "prefilled with the block"
    assert text_input["max_length"] == old.limit

    assert str(callback.json["data"]["custom_id"]).startswith("membot:edit-block:"), "one custom_id per form"
    submit = await bot.fake.dispatch_modal_submit(None, {"membot:block-text": "Alice likes tea."}, opened=opened)
    (saved,) = await _answers(bot, submit)
    assert "Saved **human**" in _content(saved)
    (block,) = [b for b in await bot.store.get_blocks(agent_id) if b.label == "human"]
    assert block.value == "Alice likes tea."
    assert [e.action for e in await bot.store.list_audit()] == ["edit_block"]


async def test_show_reports_a_channel_the_bot_could_not_post_in_once(bot: DiscordBot) -> None:
    quiet = bot.fake.add_channel(bot.guild, "quiet")
    bot.fake.forbid_channel(quiet)
    bot.llm.enqueue(reply("you will never see this"))
    await bot.fake.dispatch_message(quiet, bot.alice, f"{bot.fake.bot.mention} hello?")
    await bot.fake.wait_for_request(lambda r: r.is_call("POST", f"/channels/{quiet.id}/messages") and r.status == 403)
    await bot.settle()

    first = await bot.fake.dispatch_command(bot.general, bot.fake.owner, "memory show")
    second = await bot.fake.dispatch_command(bot.general, bot.fake.owner, "memory show")
    (told,) = await _answers(bot, first)
    (again,) = await _answers(bot, second)
    assert f"I could not post in <#{quiet.id}>" in _content(told)
    assert "Recall:" in _content(told)
    assert "could not post" not in _content(again), "reported once, then cleared"


async def test_forget_me_deletes_the_users_own_dm_agent_after_confirmation(bot: DiscordBot) -> None:
    dm = bot.fake.dm_channel(bot.alice)
    await _talk(bot, dm, bot.alice, "my address is 1 Main St", "saved")
    await _talk(bot, bot.general, bot.alice, "hi all", "hi")
    dm_agent = await bot.agent_for(f"discord:dm:{bot.alice.id}")

    asked = await bot.fake.dispatch_command(dm, bot.alice, "forget-me")
    question = _message_of((await _answers(bot, asked))[0])
    click = await bot.fake.dispatch_component(question, bot.alice, _button(question, "Confirm"))
    await _answers(bot, click, count=2)

    assert await bot.store.get_agent(dm_agent) is None
    assert await bot.store.get_agent_by_conversation(bot.channel_key) is not None, "server agents stay"
    assert "everything from our direct messages is deleted" in bot.fake.responses_to(click)[-1].json["content"]
    assert [e.action for e in await bot.store.list_audit()] == ["forget_me"]


async def test_policy_and_persona_set_this_channels_routing_and_template(bot: DiscordBot) -> None:
    done = await bot.fake.dispatch_command(bot.general, bot.fake.owner, "memory policy", {"mode": "per_user"})
    assert "**per_user**" in _content((await _answers(bot, done))[0])
    named = await bot.fake.dispatch_command(bot.general, bot.fake.owner, "memory persona", {"template": "assistant"})
    assert "persona **assistant**" in _content((await _answers(bot, named))[0])
    policy = await bot.store.get_policy(f"discord:{bot.guild.id}", str(bot.general.id))
    assert policy is not None and (policy.mode, policy.persona) == ("per_user", "assistant")

    unknown = await bot.fake.dispatch_command(bot.general, bot.fake.owner, "memory persona", {"template": "nobody"})
    assert "unknown persona template 'nobody'" in _content((await _answers(bot, unknown))[0])

    await _talk(bot, bot.general, bot.alice, "just me", "just you")
    assert await bot.store.get_agent_by_conversation(f"discord:{bot.guild.id}:user:{bot.alice.id}") is not None


async def test_pause_stops_answers_and_audit_lists_what_admins_did(bot: DiscordBot) -> None:
    await _talk(bot, bot.general, bot.alice, "hi", "hello")
    paused = await bot.fake.dispatch_command(bot.general, bot.fake.owner, "memory pause")
    assert "is paused" in _content((await _answers(bot, paused))[0])
    await bot.fake.dispatch_message(bot.general, bot.alice, f"{bot.fake.bot.mention} still there?")
    await bot.settle()
    assert len(bot.llm.chat_requests) == 1, "a paused agent is not run"

    listed = await bot.fake.dispatch_command(bot.general, bot.fake.owner, "memory audit")
    text = _content((await _answers(bot, listed))[0])
    assert "**owner**: pause" in text


async def test_usage_reports_this_servers_tokens(bot: DiscordBot) -> None:
    await _talk(bot, bot.general, bot.alice, "count me", "counted")
    asked = await bot.fake.dispatch_command(bot.general, bot.fake.owner, "memory usage", {"days": 3})
    text = _content((await _answers(bot, asked))[0])
    assert text.startswith("**Tokens ") and " calls" in text

    refused = await bot.fake.dispatch_command(bot.general, bot.bob, "memory usage")
    assert "Only members with the Manage Server permission" in _content((await _answers(bot, refused))[0])


async def test_heartbeat_runs_a_reflection_turn_now(bot: DiscordBot) -> None:
    await _talk(bot, bot.general, bot.alice, "hi", "hello")
    bot.llm.enqueue(TextReply(text="Reflecting: nothing new."))
    asked = await bot.fake.dispatch_command(bot.general, bot.fake.owner, "memory heartbeat")
    assert "it runs now" in _content((await _answers(bot, asked))[0])
    await bot.settle()
    assert len(bot.llm.chat_requests) == 2, "the reflection reached the model"
    assert len(bot.fake.messages_in(bot.general, author=bot.fake.bot)) == 1, "and posted nothing"


async def test_export_and_forget_one_user_of_the_server(bot: DiscordBot) -> None:
    await _talk(bot, bot.general, bot.alice, "alice was here", "hi alice")
    await _talk(bot, bot.general, bot.bob, "bob too", "hi bob")
    agent_id = await bot.agent_for(bot.channel_key)

    exported = await bot.fake.dispatch_command(bot.general, bot.fake.owner, "memory export", {"user": bot.alice})
    _callback, followup = await _answers(bot, exported, count=2)
    (file,) = followup.files
    data = json.loads(file.data)
    said = [m["content"] for entry in data["shared_messages"] for m in entry["messages"]]
    assert any("alice was here" in text for text in said) and not any("bob too" in text for text in said)

    asked = await bot.fake.dispatch_command(bot.general, bot.fake.owner, "memory forget", {"user": bot.alice})
    question = _message_of((await _answers(bot, asked))[0])
    click = await bot.fake.dispatch_component(question, bot.fake.owner, _button(question, "Confirm"))
    await _answers(bot, click, count=2)
    left = [m.content for m in await bot.store.get_messages(agent_id)]
    assert not any("alice was here" in text for text in left) and any("bob too" in text for text in left)
    assert [e.action for e in await bot.store.list_audit()] == ["forget_user", "export_user"]


async def test_memory_commands_in_a_dm_are_refused_in_code(bot: DiscordBot) -> None:
    dm = bot.fake.dm_channel(bot.fake.owner)
    asked = await bot.fake.dispatch_command(dm, bot.fake.owner, "memory show")
    assert "Only members with the Manage Server permission" in _content((await _answers(bot, asked))[0])


async def test_only_the_syncing_process_registers_commands(
    tmp_path: Path,
    discord_fake: DiscordFake,
    llm_server: FakeLLMServer,
    openai_client: openai.AsyncOpenAI,
    sleeps: SleepRecorder,
) -> None:
    other = await DiscordBot.start(
        tmp_path=tmp_path,
        fake=discord_fake,
        llm=llm_server,
        openai_client=openai_client,
        sleeps=sleeps,
        shard_ids=(1,),
        shard_count=2,
    )
    try:
        assert not other.adapter.syncs_commands
        assert not discord_fake.requests_to("PUT", "/applications/{application_id}/commands")
    finally:
        await other.close()


async def test_a_member_whose_role_grants_manage_server_is_an_admin(bot: DiscordBot) -> None:
    mods = bot.fake.add_role(bot.guild, "mods", permissions=Permission.MANAGE_GUILD)
    carol = bot.fake.add_user("carol")
    bot.fake.add_member(bot.guild, carol, roles=[mods])
    await _talk(bot, bot.general, bot.alice, "hi", "hello")
    asked = await bot.fake.dispatch_command(bot.general, carol, "memory show")
    assert "\nRecall: " in _content((await _answers(bot, asked))[0])


async def test_the_admin_permission_is_configurable(
    tmp_path: Path,
    discord_fake: DiscordFake,
    llm_server: FakeLLMServer,
    openai_client: openai.AsyncOpenAI,
    sleeps: SleepRecorder,
) -> None:
    strict = await DiscordBot.start(
        tmp_path=tmp_path,
        fake=discord_fake,
        llm=llm_server,
        openai_client=openai_client,
        sleeps=sleeps,
        admin_permission="administrator",
    )
    try:
        (put,) = discord_fake.requests_to("PUT", "/applications/{application_id}/commands")
        (memory,) = [c for c in put.json if c["name"] == "memory"]
        assert int(memory["default_member_permissions"]) == discord.Permissions(administrator=True).value
        mods = discord_fake.add_role(strict.guild, "mods", permissions=Permission.MANAGE_GUILD)
        carol = discord_fake.add_user("carol")
        discord_fake.add_member(strict.guild, carol, roles=[mods])
        refused = await discord_fake.dispatch_command(strict.general, carol, "memory audit")
        assert "Only members with the Administrator permission" in _content((await _answers(strict, refused))[0])
        allowed = await discord_fake.dispatch_command(strict.general, discord_fake.owner, "memory audit")
        assert "No admin actions recorded" in _content((await _answers(strict, allowed))[0])
    finally:
        await strict.close()
