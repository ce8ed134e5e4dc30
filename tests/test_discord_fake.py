"""The fake Discord under the real discord.py: login, gateway, REST, sharding, resume, app commands.

These tests prove the emulator, not membot: a plain `discord.Client` (or `AutoShardedClient`,
or a `CommandTree`) pointed at the fake by `bot.discord.urls`, as the adapter will be.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable

import aiohttp
import discord
import pytest
from discord import app_commands

from bot.discord.urls import DISCORD, configure_discord_urls, current_discord_urls
from tests.fakes.discord_fixtures import connected, fast_client_options
from tests.fakes.discord_server import ChannelType, DiscordFake, FakeChannel, FakeGuild, FakeUser, RecordedRequest
from tests.fakes.discord_wire import Intent


def _intents(*, message_content: bool = True) -> discord.Intents:
    intents = discord.Intents.default()
    intents.message_content = message_content
    return intents


def _client(**options: object) -> discord.Client:
    return discord.Client(intents=_intents(), **fast_client_options(), **options)  # type: ignore[arg-type]


class _Inbox:
    """Messages a client receives from others (its own echoes skipped), to await one by one."""

    def __init__(self, client: discord.Client) -> None:
        self.queue: asyncio.Queue[discord.Message] = asyncio.Queue()

        @client.event
        async def on_message(message: discord.Message) -> None:
            if client.user is not None and message.author.id != client.user.id:
                self.queue.put_nowait(message)

    async def next(self) -> discord.Message:
        return await asyncio.wait_for(self.queue.get(), 5)


@pytest.fixture
def home(discord_fake: DiscordFake) -> tuple[FakeUser, FakeGuild, FakeChannel]:
    alice = discord_fake.add_user("alice")
    guild = discord_fake.add_guild("Home", members=[alice])
    return alice, guild, discord_fake.add_channel(guild, "general")


def _posts_to(channel: FakeChannel) -> Callable[[RecordedRequest], bool]:
    return lambda r: r.is_call("POST", f"/channels/{channel.id}/messages")


async def test_fixture_points_discord_py_at_the_fake_and_restores_it(discord_fake: DiscordFake) -> None:
    assert current_discord_urls() == discord_fake.urls
    assert discord_fake.base_url.endswith("/api/v10")
    assert discord_fake.gateway_url.startswith("ws://127.0.0.1:")
    assert current_discord_urls() != DISCORD


async def test_client_logs_in_and_sees_its_guild_on_ready(
    discord_fake: DiscordFake, home: tuple[FakeUser, FakeGuild, FakeChannel]
) -> None:
    alice, guild, general = home
    client = _client()
    async with connected(client, discord_fake):
        assert client.user is not None and client.user.id == discord_fake.bot.id
        assert client.application_id == discord_fake.application_id
        seen = client.get_guild(guild.id)
        assert seen is not None and seen.name == "Home" and seen.me is not None
        assert seen.member_count == 3 and seen.get_member(alice.id) is None  # no GUILD_MEMBERS intent
        channel = client.get_channel(general.id)
        assert isinstance(channel, discord.TextChannel) and channel.name == "general"
        assert channel.permissions_for(seen.me).send_messages

    login = discord_fake.requests_to("GET", "/users/@me")[0]
    assert login.headers["Authorization"] == f"Bot {discord_fake.token}"
    assert discord_fake.requests_to("GET", "/oauth2/applications/@me")[0].status == 200
    (connection,) = discord_fake.gateway_connections
    assert connection.query == {"v": "10", "encoding": "json", "compress": "zlib-stream"}
    (session,) = discord_fake.sessions
    assert session.intents & Intent.MESSAGE_CONTENT and (session.shard_id, session.shard_count) == (0, 1)
    assert session.identify["token"] == "<redacted>" and session.identify["properties"]["browser"] == "discord.py"


async def test_message_create_reaches_on_message_with_author_content_and_mentions(
    discord_fake: DiscordFake, home: tuple[FakeUser, FakeGuild, FakeChannel]
) -> None:
    alice, _, general = home
    client = _client()
    inbox = _Inbox(client)
    async with connected(client, discord_fake):
        await discord_fake.dispatch_message(general, alice, f"{discord_fake.bot.mention} remember milk")
        message = await inbox.next()
    assert message.author.id == alice.id and isinstance(message.author, discord.Member)
    assert message.content == f"<@{discord_fake.bot.id}> remember milk"
    assert [u.id for u in message.mentions] == [discord_fake.bot.id]
    assert message.channel.id == general.id and message.guild is not None


async def test_without_message_content_intent_guild_messages_arrive_empty_unless_mentioned(
    discord_fake: DiscordFake, home: tuple[FakeUser, FakeGuild, FakeChannel]
) -> None:
    alice, _, general = home
    client = discord.Client(intents=_intents(message_content=False), **fast_client_options())  # type: ignore[arg-type]
    inbox = _Inbox(client)
    async with connected(client, discord_fake):
        await discord_fake.dispatch_message(general, alice, "plain chatter")
        assert (await inbox.next()).content == ""
        await discord_fake.dispatch_message(general, alice, f"{discord_fake.bot.mention} hello")
        assert (await inbox.next()).content.endswith("hello")
        await discord_fake.dispatch_message(discord_fake.dm_channel(alice), alice, "a secret")
        dm = await inbox.next()
    assert dm.content == "a secret" and isinstance(dm.channel, discord.DMChannel)


async def test_threads_are_channels_the_client_knows_and_can_answer_in(
    discord_fake: DiscordFake, home: tuple[FakeUser, FakeGuild, FakeChannel]
) -> None:
    alice, guild, general = home
    thread = discord_fake.add_channel(guild, "plans", type=ChannelType.PUBLIC_THREAD, parent=general)
    client = _client()
    inbox = _Inbox(client)
    async with connected(client, discord_fake):
        await discord_fake.dispatch_message(thread, alice, "in the thread")
        message = await inbox.next()
        assert isinstance(message.channel, discord.Thread) and message.channel.parent_id == general.id
        await message.channel.send("answered in the thread")
    assert discord_fake.messages_in(thread, author=discord_fake.bot)[0]["content"] == "answered in the thread"


async def test_reply_typing_and_file_go_over_rest_as_discord_py_sends_them(
    discord_fake: DiscordFake, home: tuple[FakeUser, FakeGuild, FakeChannel]
) -> None:
    alice, guild, general = home
    client = _client()
    downloaded: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    @client.event
    async def on_message(message: discord.Message) -> None:  # what a bot does, in its own task
        if message.author.bot:
            return
        await message.channel.typing()
        await message.reply("hello alice", mention_author=False)
        sent = await message.channel.send("notes", file=discord.File(io.BytesIO(b"line 1\n"), filename="notes.txt"))
        downloaded.set_result(await sent.attachments[0].read())

    async with connected(client, discord_fake):
        original = await discord_fake.dispatch_message(general, alice, "hello bot")
        reply_call = await discord_fake.wait_for_request(_posts_to(general))
        file_call = await discord_fake.wait_for_request(_posts_to(general), count=2)
        assert await asyncio.wait_for(downloaded, 5) == b"line 1\n"

    (typing,) = discord_fake.requests_to("POST", "/channels/{channel_id}/typing")
    assert typing.status == 204 and typing.params == {"channel_id": str(general.id)}
    assert reply_call.json["content"] == "hello alice"
    assert reply_call.json["message_reference"] == {
        "message_id": int(original["id"]),
        "channel_id": general.id,
        "guild_id": guild.id,
    }
    assert reply_call.json["allowed_mentions"]["replied_user"] is False
    assert reply_call.response["type"] == 19 and reply_call.response["mentions"] == []
    assert reply_call.response["referenced_message"]["id"] == original["id"]
    (upload,) = file_call.files
    assert (upload.field, upload.filename, upload.data) == ("files[0]", "notes.txt", b"line 1\n")
    assert file_call.json["content"] == "notes"
    (attachment,) = file_call.response["attachments"]
    assert (attachment["filename"], attachment["content_type"], attachment["size"]) == ("notes.txt", "text/plain", 7)
    bot_messages = discord_fake.messages_in(general, author=discord_fake.bot)
    assert [m["content"] for m in bot_messages] == ["hello alice", "notes"]


async def test_forbidden_channel_raises_discord_forbidden_with_missing_permissions(
    discord_fake: DiscordFake, home: tuple[FakeUser, FakeGuild, FakeChannel]
) -> None:
    _, guild, general = home
    client = _client()
    async with connected(client, discord_fake):
        channel = client.get_channel(general.id)
        assert isinstance(channel, discord.TextChannel)
        updated = client.wait_for("guild_channel_update", timeout=5)  # listening from here on
        discord_fake.forbid_channel(general)
        await updated
        me = client.get_guild(guild.id)
        assert me is not None and me.me is not None and not channel.permissions_for(me.me).send_messages
        with pytest.raises(discord.Forbidden) as raised:
            await channel.send("hello?")
        with pytest.raises(discord.Forbidden):
            await channel.typing()
    assert raised.value.status == 403 and raised.value.code == 50013 and raised.value.text == "Missing Permissions"


async def test_edits_and_deletes_are_echoed_to_the_client(
    discord_fake: DiscordFake, home: tuple[FakeUser, FakeGuild, FakeChannel]
) -> None:
    _, _, general = home
    client = _client()
    async with connected(client, discord_fake):
        channel = client.get_channel(general.id)
        assert isinstance(channel, discord.TextChannel)
        echoed = client.wait_for("message", timeout=5)
        sent = await channel.send("draft")
        assert (await echoed).id == sent.id  # Discord echoes the bot's own messages
        edited = client.wait_for("message_edit", timeout=5)
        await sent.edit(content="final")
        before, after = await edited
        assert (before.content, after.content) == ("draft", "final")
        fetched = await channel.fetch_message(sent.id)
        assert fetched.content == "final" and fetched.edited_at is not None
        deleted = client.wait_for("message_delete", timeout=5)
        await sent.delete()
        assert (await deleted).id == sent.id
    assert discord_fake.messages_in(general) == []
    assert [r.status for r in discord_fake.requests_to("PATCH", "/channels/{channel_id}/messages/{message_id}")] == [
        200
    ]


async def test_world_changes_reach_a_connected_client_and_dms_open(discord_fake: DiscordFake) -> None:
    alice = discord_fake.add_user("alice", global_name="Alice")
    client = _client()
    async with connected(client, discord_fake):
        joined = client.wait_for("guild_join", timeout=5)
        guild = discord_fake.add_guild("Later", members=[alice])
        assert (await joined).id == guild.id
        created = client.wait_for("guild_channel_create", timeout=5)
        general = discord_fake.add_channel(guild, "general", topic="chat")
        channel = await created
        assert isinstance(channel, discord.TextChannel) and (channel.id, channel.topic) == (general.id, "chat")
        user = await client.fetch_user(alice.id)
        dm = await user.send("hello from the bot")
        assert isinstance(dm.channel, discord.DMChannel)
    assert discord_fake.messages_in(discord_fake.dm_channel(alice))[0]["content"] == "hello from the bot"
    assert user.display_name == "Alice"


async def test_discord_py_retries_a_429_by_itself(
    discord_fake: DiscordFake, home: tuple[FakeUser, FakeGuild, FakeChannel]
) -> None:
    _, _, general = home
    client = _client()
    async with connected(client, discord_fake):
        channel = client.get_channel(general.id)
        assert isinstance(channel, discord.TextChannel)
        discord_fake.rate_limit("POST", "/channels/{channel_id}/messages", retry_after=0.05)
        sent = await channel.send("patience")
    limited, served = discord_fake.requests_to("POST", f"/channels/{general.id}/messages")
    assert (limited.status, served.status) == (429, 200)
    assert limited.response == {"message": "You are being rate limited.", "retry_after": 0.05, "global": False}
    assert limited.json == served.json and sent.content == "patience"


async def test_too_long_content_is_a_400_invalid_form_body(
    discord_fake: DiscordFake, home: tuple[FakeUser, FakeGuild, FakeChannel]
) -> None:
    _, _, general = home
    client = _client()
    async with connected(client, discord_fake):
        channel = client.get_channel(general.id)
        assert isinstance(channel, discord.TextChannel)
        with pytest.raises(discord.HTTPException) as raised:
            await channel.send("x" * 2001)
    assert raised.value.status == 400 and raised.value.code == 50035
    assert "Must be 2000 or fewer in length." in raised.value.text


async def test_a_wrong_token_is_a_login_failure(discord_fake: DiscordFake) -> None:
    client = _client()
    with pytest.raises(discord.LoginFailure):
        await client.login("not-the-token")
    await client.close()
    assert discord_fake.requests_to("GET", "/users/@me")[0].status == 401


async def test_disallowed_privileged_intent_closes_the_gateway_with_4014() -> None:
    with DiscordFake(privileged_intents=Intent.GUILD_MEMBERS) as fake:
        previous = configure_discord_urls(fake.urls)
        try:
            with pytest.raises(discord.PrivilegedIntentsRequired):
                async with connected(_client(), fake):
                    pass
        finally:
            configure_discord_urls(previous)
    assert len(fake.gateway_connections) == 1  # no reconnect after 4014


class _ShardedClient(discord.AutoShardedClient):
    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """No 5 s pause between shards' IDENTIFYs (discord.py's default, for Discord's identify limit)."""


@pytest.mark.parametrize("shard_count", [2, None], ids=["shard_count=2", "from-gateway-bot"])
async def test_autosharded_client_gets_each_guild_on_its_shard(
    discord_fake: DiscordFake, shard_count: int | None
) -> None:
    discord_fake.recommended_shards = 2
    alice = discord_fake.add_user("alice")
    channels = {}
    for shard_id in (0, 1):
        guild = discord_fake.add_guild(f"guild-{shard_id}", members=[alice], shard=(shard_id, 2))
        channels[shard_id] = discord_fake.add_channel(guild)
    client = _ShardedClient(intents=_intents(), shard_count=shard_count, **fast_client_options())  # type: ignore[arg-type]
    inbox = _Inbox(client)
    async with connected(client, discord_fake):
        assert sorted(client.shards) == [0, 1]
        for shard_id, channel in channels.items():
            before = {s.shard_id: s.seq for s in discord_fake.sessions}
            await discord_fake.dispatch_message(channel, alice, f"for shard {shard_id}")
            message = await inbox.next()
            after = {s.shard_id: s.seq for s in discord_fake.sessions}
            assert message.content == f"for shard {shard_id}"
            assert message.guild is not None and message.guild.shard_id == shard_id
            assert {s: after[s] - before[s] for s in (0, 1)} == {shard_id: 1, 1 - shard_id: 0}
        await discord_fake.dispatch_message(discord_fake.dm_channel(alice), alice, "a DM")
        assert (await inbox.next()).content == "a DM"
    assert sorted((s.shard_id, s.shard_count) for s in discord_fake.sessions) == [(0, 2), (1, 2)]
    assert len(discord_fake.requests_to("GET", "/gateway/bot")) == (1 if shard_count is None else 0)


@pytest.mark.parametrize("break_it", ["drop_connection", "reconnect_shard"])
async def test_client_resumes_and_gets_what_it_missed(
    discord_fake: DiscordFake, home: tuple[FakeUser, FakeGuild, FakeChannel], break_it: str
) -> None:
    alice, _, general = home
    client = _client()
    inbox = _Inbox(client)
    async with connected(client, discord_fake):
        resumed = client.wait_for("resumed", timeout=5)
        await getattr(discord_fake, break_it)(0)
        await discord_fake.dispatch_message(general, alice, "while you were away")
        assert (await inbox.next()).content == "while you were away"
        await resumed
    (session,) = discord_fake.sessions
    assert session.resumes == 1
    assert len(discord_fake.gateway_connections) == 2


async def test_slash_command_syncs_runs_and_answers_ephemerally(
    discord_fake: DiscordFake, home: tuple[FakeUser, FakeGuild, FakeChannel]
) -> None:
    alice, guild, general = home
    client = _client()
    tree = app_commands.CommandTree(client)
    answered: asyncio.Future[discord.InteractionCallbackResponse[discord.Client]] = (
        asyncio.get_running_loop().create_future()
    )

    @tree.command(name="remember", description="Store a note")
    @app_commands.describe(note="What to remember")
    async def remember(interaction: discord.Interaction, note: str) -> None:
        answered.set_result(await interaction.response.send_message(f"noted: {note}", ephemeral=True))

    async with connected(client, discord_fake):
        synced = await tree.sync()
        interaction = await discord_fake.dispatch_command(general, alice, "remember", {"note": "milk"})
        callback = await discord_fake.wait_for_callback(interaction)
        response = await asyncio.wait_for(answered, 5)

    (put,) = discord_fake.requests_to("PUT", "/applications/{application_id}/commands")
    assert put.params["application_id"] == str(discord_fake.application_id)
    assert [c["name"] for c in put.json] == ["remember"] and [c.name for c in synced] == ["remember"]
    assert [c["name"] for c in discord_fake.commands()] == ["remember"] and not discord_fake.commands(guild)
    assert interaction.payload["data"]["options"] == [{"name": "note", "type": 3, "value": "milk"}]
    assert callback.status == 200 and callback.query == {"with_response": "1"}
    assert callback.json["type"] == 4 and callback.json["data"]["content"] == "noted: milk"
    assert callback.json["data"]["flags"] & 64
    assert response.is_ephemeral() and isinstance(response.resource, discord.InteractionMessage)
    assert discord_fake.messages_in(general) == []  # ephemeral: never in the channel


async def test_button_opens_a_modal_whose_submit_is_answered_after_a_deferral(
    discord_fake: DiscordFake, home: tuple[FakeUser, FakeGuild, FakeChannel]
) -> None:
    alice, guild, general = home
    client = _client()
    tree = app_commands.CommandTree(client)
    finished: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    class Note(discord.ui.Modal, title="A note"):
        text: discord.ui.TextInput[Note] = discord.ui.TextInput(label="Note", custom_id="note-text")

        async def on_submit(self, interaction: discord.Interaction) -> None:
            await interaction.response.defer(thinking=True)
            await interaction.followup.send(f"saved {self.text.value}")
            finished.set_result(self.text.value)

    class Panel(discord.ui.View):
        @discord.ui.button(label="Add", custom_id="add-note")
        async def add(self, interaction: discord.Interaction, button: discord.ui.Button[Panel]) -> None:
            await interaction.response.send_modal(Note(custom_id="note-modal"))

    @tree.command(name="panel", description="Show the panel", guild=discord.Object(guild.id))
    async def panel(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("Notes", view=Panel())

    async with connected(client, discord_fake):
        await tree.sync(guild=discord.Object(guild.id))
        shown = await discord_fake.dispatch_command(general, alice, "panel")
        await discord_fake.wait_for_callback(shown)
        (panel_message,) = discord_fake.messages_in(general)
        click = await discord_fake.dispatch_component(panel_message, alice, "add-note")
        assert (await discord_fake.wait_for_callback(click)).json["type"] == 9
        submit = await discord_fake.dispatch_modal_submit("note-modal", {"note-text": "buy milk"})
        assert await asyncio.wait_for(finished, 5) == "buy milk"

    assert discord_fake.requests_to("PUT", f"/applications/{discord_fake.application_id}/guilds/{guild.id}/commands")
    callback, followup = discord_fake.responses_to(submit)
    assert callback.json == {"type": 5}
    assert followup.status == 200 and followup.query["wait"] == "1"
    thinking = discord_fake.messages_in(general)[-1]
    assert thinking["id"] == followup.response["id"] and thinking["content"] == "saved buy milk"
    assert thinking["flags"] == 0  # the follow-up replaced the "thinking" message


async def test_unknown_routes_are_recorded_404s_and_waits_time_out_loudly(discord_fake: DiscordFake) -> None:
    async with aiohttp.ClientSession() as session, session.get(f"{discord_fake.base_url}/nowhere") as response:
        assert response.status == 404 and response.headers["Content-Type"] == "application/json"
        assert await response.json() == {"message": "404: Not Found", "code": 0}
    (unknown,) = discord_fake.requests
    assert (unknown.route, unknown.path, unknown.status) == ("*", "/nowhere", 404)
    with pytest.raises(TimeoutError, match=r"GET /nowhere -> 404"):
        await discord_fake.wait_for_request(lambda r: r.method == "DELETE", timeout=0.05)
