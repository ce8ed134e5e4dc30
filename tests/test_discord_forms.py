"""`/memory edit` forms are bound to the interaction that opened them: with two forms open at once
(two guilds, two admins) each submission writes the block it was opened for, whatever the
order, audited as the admin who submitted it; a form whose member, permission or agent no
longer holds is refused, and a form this process no longer knows gets a clear answer. Through
the Discord emulator and the real discord.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tests.fakes.discord_bot import DiscordBot, reply
from tests.fakes.discord_server import (
    FakeChannel,
    FakeGuild,
    FakeInteraction,
    FakeUser,
    Permission,
    RecordedRequest,
)


@dataclass
class Server:
    guild: FakeGuild
    channel: FakeChannel
    admin: FakeUser
    agent_id: str = ""


async def _answers(bot: DiscordBot, interaction: FakeInteraction, count: int = 1) -> list[RecordedRequest]:
    def about(r: RecordedRequest) -> bool:
        return r.params.get("token") == interaction.token

    await bot.fake.wait_for_request(about, count=count)
    return bot.fake.responses_to(interaction)[:count]


def _content(request: RecordedRequest) -> str:
    body: Any = request.json or {}
    return str(body.get("data", body).get("content") or "")


async def _agent_in(bot: DiscordBot, server: Server) -> str:
    """Someone talks to the bot in the server's channel; its agent's id."""
    bot.llm.enqueue(reply("hello"))
    before = len(bot.fake.messages_in(server.channel, author=bot.fake.bot))
    await bot.fake.dispatch_message(server.channel, bot.alice, f"{bot.fake.bot.mention} hi")
    await bot.fake.wait_for_message(server.channel, count=before + 1)
    await bot.settle()
    return await bot.agent_for(f"discord:{server.guild.id}:channel:{server.channel.id}")


async def _two_servers(bot: DiscordBot) -> tuple[Server, Server]:
    home = Server(guild=bot.guild, channel=bot.general, admin=bot.fake.owner)
    carol = bot.fake.add_user("carol")
    away_guild = bot.fake.add_guild("Away", owner=carol, members=[bot.alice])
    away = Server(guild=away_guild, channel=bot.fake.add_channel(away_guild, "lobby"), admin=carol)
    home.agent_id = await _agent_in(bot, home)
    away.agent_id = await _agent_in(bot, away)
    return home, away


async def _open(bot: DiscordBot, server: Server, block: str = "human") -> FakeInteraction:
    opened = await bot.fake.dispatch_command(server.channel, server.admin, "memory edit", {"block": block})
    (callback,) = await _answers(bot, opened)
    assert callback.json["type"] == 9, "a modal"
    return opened


async def _submit(bot: DiscordBot, opened: FakeInteraction, text: str, user: FakeUser | None = None) -> str:
    submitted = await bot.fake.dispatch_modal_submit(None, {"membot:block-text": text}, opened=opened, user=user)
    (answer,) = await _answers(bot, submitted)
    return _content(answer)


async def _human(bot: DiscordBot, agent_id: str) -> str:
    return next(b.value for b in await bot.store.get_blocks(agent_id) if b.label == "human")


@pytest.mark.parametrize("order", ["home first", "away first"])
async def test_two_open_forms_in_two_guilds_each_write_their_own_agent(discord_bot: DiscordBot, order: str) -> None:
    bot = discord_bot
    home, away = await _two_servers(bot)
    home_form = await _open(bot, home)
    away_form = await _open(bot, away)
    assert home_form.modal is not None and away_form.modal is not None
    assert home_form.modal["custom_id"] != away_form.modal["custom_id"], "one custom_id per opened form"

    forms = [(home, home_form, "Home: Alice likes tea."), (away, away_form, "Away: Alice likes chess.")]
    for _server, form, text in forms if order == "home first" else forms[::-1]:
        assert "Saved **human**" in await _submit(bot, form, text), "every submission is answered"

    assert await _human(bot, home.agent_id) == "Home: Alice likes tea."
    assert await _human(bot, away.agent_id) == "Away: Alice likes chess."
    for server in (home, away):
        (entry,) = await bot.store.list_audit(scope=f"discord:{server.guild.id}")
        assert (entry.action, entry.agent_id, entry.actor_id) == ("edit_block", server.agent_id, str(server.admin.id))


async def test_a_form_submitted_by_another_member_is_refused(discord_bot: DiscordBot) -> None:
    bot = discord_bot
    home = Server(guild=bot.guild, channel=bot.general, admin=bot.fake.owner)
    home.agent_id = await _agent_in(bot, home)
    before = await _human(bot, home.agent_id)
    mods = bot.fake.add_role(bot.guild, "mods", permissions=Permission.MANAGE_GUILD)
    bot.fake.add_member(bot.guild, bot.bob, roles=[mods])
    form = await _open(bot, home)

    answer = await _submit(bot, form, "Bob was here.", user=bot.bob)

    assert "opened by someone else" in answer
    assert await _human(bot, home.agent_id) == before
    assert await bot.store.list_audit() == []


async def test_a_member_who_lost_the_permission_cannot_submit_the_form(discord_bot: DiscordBot) -> None:
    bot = discord_bot
    mods = bot.fake.add_role(bot.guild, "mods", permissions=Permission.MANAGE_GUILD)
    carol = bot.fake.add_user("carol")
    bot.fake.add_member(bot.guild, carol, roles=[mods])
    home = Server(guild=bot.guild, channel=bot.general, admin=carol)
    home.agent_id = await _agent_in(bot, home)
    before = await _human(bot, home.agent_id)
    form = await _open(bot, home)
    bot.fake.set_roles(bot.guild, carol, [])

    answer = await _submit(bot, form, "still an admin?")

    assert "Only members with the Manage Server permission" in answer
    assert await _human(bot, home.agent_id) == before
    assert await bot.store.list_audit() == []


async def test_a_form_for_an_agent_that_was_replaced_is_refused(discord_bot: DiscordBot) -> None:
    bot = discord_bot
    home = Server(guild=bot.guild, channel=bot.general, admin=bot.fake.owner)
    home.agent_id = await _agent_in(bot, home)
    form = await _open(bot, home)
    await bot.store.delete_agent(home.agent_id)  # /memory reset all meanwhile
    replacement = await _agent_in(bot, home)

    answer = await _submit(bot, form, "for the old agent")

    assert "changed since the form was opened" in answer
    assert await _human(bot, replacement) != "for the old agent"


async def test_a_form_the_bot_no_longer_knows_gets_a_clear_answer(discord_bot: DiscordBot) -> None:
    bot = discord_bot
    home = Server(guild=bot.guild, channel=bot.general, admin=bot.fake.owner)
    home.agent_id = await _agent_in(bot, home)
    before = await _human(bot, home.agent_id)
    form = await _open(bot, home)
    await bot.restart()  # a redeploy: forms opened before it are gone

    answer = await _submit(bot, form, "after the restart")

    assert "This form has expired" in answer
    assert await _human(bot, home.agent_id) == before


async def test_a_confirmation_clicked_after_losing_the_permission_does_nothing(discord_bot: DiscordBot) -> None:
    bot = discord_bot
    mods = bot.fake.add_role(bot.guild, "mods", permissions=Permission.MANAGE_GUILD)
    carol = bot.fake.add_user("carol")
    bot.fake.add_member(bot.guild, carol, roles=[mods])
    home = Server(guild=bot.guild, channel=bot.general, admin=carol)
    home.agent_id = await _agent_in(bot, home)
    asked = await bot.fake.dispatch_command(bot.general, carol, "memory reset", {"part": "all"})
    (callback,) = await _answers(bot, asked)
    question = callback.response["resource"]["message"]
    confirm = next(
        c["custom_id"] for row in question["components"] for c in row["components"] if c.get("label") == "Confirm"
    )
    bot.fake.set_roles(bot.guild, carol, [])

    click = await bot.fake.dispatch_component(question, carol, confirm)
    await _answers(bot, click, count=2)

    assert "Only an admin can do that" in str(bot.fake.responses_to(click)[-1].json)
    assert await bot.store.get_agent(home.agent_id) is not None
    assert await bot.store.list_audit() == []
