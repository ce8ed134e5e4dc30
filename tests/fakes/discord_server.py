"""A local Discord on loopback (REST API v10 + gateway) for end-to-end tests through the real discord.py.

Pointing discord.py at it (what membot's Discord adapter must make configurable)
----------------------------------------------------------------------------------
discord.py reads its two addresses from class attributes, so two settings move it whole
(`bot/discord/urls.py` explains which code paths read which):

    from bot.discord.urls import configure_discord_urls
    previous = configure_discord_urls(fake.urls)
    #   discord.http.Route.BASE = fake.base_url                 "http://127.0.0.1:PORT/api/v10"
    #   discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)
    #                                                           "ws://127.0.0.1:PORT/gateway"
    client = discord.Client(intents=intents, guild_ready_timeout=0.05)
    await client.start(fake.token)

So membot's settings need `discord.api_base_url` (default "https://discord.com/api/v10") and
`discord.gateway_url` (default "wss://gateway.discord.gg/"), applied with
`configure_discord_urls` before login. No proxy, connector or patching. The fake also
answers GET /gateway/bot with its own URL (what an `AutoShardedClient` without
`shard_count` connects to) and READY's `resume_gateway_url`, so reconnects stay local.
Two discord.py delays to shorten in tests: `guild_ready_timeout` (on_ready fires that long
after the last GUILD_CREATE; default 2 s) and `before_identify_hook`, which sleeps 5 s
before every IDENTIFY but the first (override it in an AutoShardedClient subclass).

The test API
------------
    fake = DiscordFake(); fake.start()              # or the `discord_fake` fixture
    alice = fake.add_user("alice")
    guild = fake.add_guild("Home", members=[alice])
    general = fake.add_channel(guild, "general")
    ... start the client, await client.wait_until_ready() ...
    await fake.dispatch_message(general, alice, f"{fake.bot.mention} hi")
    reply = await fake.wait_for_message(general)        # the bot's POST, as created
    assert reply["message_reference"]["channel_id"] == str(general.id)

`requests`/`wait_for_request` see every REST call with the status it got; `messages_in`
is a channel's history; `dispatch_command`/`dispatch_component`/`dispatch_modal_submit`
send interactions and `responses_to`/`wait_for_callback` show the answers;
`forbid_channel`, `rate_limit` and `fail_requests` make Discord say no;
`reconnect_shard`, `invalidate_session` and `drop_connection` exercise RESUME.

Limitations: JSON encoding only (no ETF), zlib-stream or no transport compression (no
zstd), no voice, presences, reactions, pins, threads' own routes, webhooks other than
interaction follow-ups, audit-log reasons or real rate-limit buckets (every success says
49 left; 429s only when asked). Permission overwrites are honoured for sending, typing and
reading; role hierarchy is not modelled. A command's `default_member_permissions` is
recorded, not enforced (as if a server admin had granted the command), so the bot's own
permission check is what a test exercises. Users' avatars and the CDN are not served,
attachments are (at the URLs in their payloads).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from aiohttp import web

from bot.discord.urls import DiscordURLs
from tests.fakes.discord_commands import CommandRegistry
from tests.fakes.discord_gateway import Gateway, GatewayConnection, SessionInfo
from tests.fakes.discord_http import HttpFront
from tests.fakes.discord_interactions import FakeInteraction, Interactions, OptionValue
from tests.fakes.discord_models import FakeAttachment, FakeChannel, FakeGuild, FakeMember, FakeRole, FakeUser
from tests.fakes.discord_requests import FailureRules, RecordedFile, RecordedRequest, RequestLog, RequestPredicate
from tests.fakes.discord_rest import RestAPI
from tests.fakes.discord_webhooks import InteractionAPI
from tests.fakes.discord_wire import (
    EVERYONE_PERMISSIONS,
    JSON,
    PRIVILEGED_INTENTS,
    ChannelType,
    Intent,
    Permission,
    Snowflakes,
    application_flags,
    shard_for,
)
from tests.fakes.discord_world import World
from tests.fakes.loopback import LoopbackServer

__all__ = [
    "ChannelType",
    "DiscordFake",
    "FakeAttachment",
    "FakeChannel",
    "FakeGuild",
    "FakeInteraction",
    "FakeMember",
    "FakeRole",
    "FakeUser",
    "GatewayConnection",
    "Intent",
    "Permission",
    "RecordedFile",
    "RecordedRequest",
    "SessionInfo",
]

_T = TypeVar("_T")
_SEND = (
    Permission.SEND_MESSAGES | Permission.SEND_MESSAGES_IN_THREADS | Permission.ATTACH_FILES | Permission.EMBED_LINKS
)


class DiscordFake(LoopbackServer):
    """The emulator. Build its world from the test before or while clients are connected.

    Thread-safe: it serves from its own thread. While clients are connected, the methods that
    change the world block until the matching gateway event (GUILD_CREATE, CHANNEL_UPDATE...)
    is sent; the `dispatch_*` methods are awaitable from any event loop.
    """

    def __init__(
        self,
        *,
        token: str = "fake-discord-bot-token",
        bot_name: str = "membot",
        recommended_shards: int = 1,
        heartbeat_interval_ms: int = 41_250,
        privileged_intents: int = PRIVILEGED_INTENTS,
        interaction_deadline: float | None = 3.0,
    ) -> None:
        """`privileged_intents`: the ones enabled for the application (others close the gateway with 4014);
        `interaction_deadline`: seconds the bot has for the first callback (None: no limit)."""
        self.token = token
        self._world = World(ids=Snowflakes(), bot_name=bot_name, owner_name="owner")
        self._world.application_flags = application_flags(privileged_intents)
        self._commands = CommandRegistry(self._world)
        self._interactions = Interactions(self._world, self._commands, deadline=interaction_deadline)
        self._gateway = Gateway(
            self._world, token=token, heartbeat_interval_ms=heartbeat_interval_ms, privileged_intents=privileged_intents
        )
        self._log = RequestLog()
        self._failures = FailureRules()
        self._http = HttpFront(token=token, log=self._log, failures=self._failures)
        self._rest = RestAPI(
            self._world, commands=self._commands, gateway=self._gateway, recommended_shards=recommended_shards
        )
        self._webhooks = InteractionAPI(self._world, interactions=self._interactions, gateway=self._gateway)
        super().__init__()

    # -- lifecycle ---------------------------------------------------------------------------
    label = "fake Discord"

    def _add_routes(self, app: web.Application) -> None:
        app.router.add_get("/gateway", self._gateway.handle)
        app.router.add_get("/attachments/{channel_id}/{attachment_id}/{filename}", self._rest.download)
        self._http.mount(app, [*self._rest.endpoints(), *self._webhooks.endpoints()])
        self._http.mount_fallback(app)

    async def _on_started(self) -> None:
        self._world.origin = self.origin
        self._gateway.resume_url = self._rest.gateway_url = self.gateway_url

    async def _on_stopping(self) -> None:
        await self._gateway.close_all()  # every gateway socket closed (1001) before the app stops

    @property
    def base_url(self) -> str:
        """The REST base discord.py's `Route.BASE` must be: "http://127.0.0.1:PORT/api/v10"."""
        return f"{self.origin}/api/v10"

    @property
    def gateway_url(self) -> str:
        """The gateway discord.py's `DiscordWebSocket.DEFAULT_GATEWAY` must be: "ws://127.0.0.1:PORT/gateway"."""
        return self.origin.replace("http://", "ws://", 1) + "/gateway"

    @property
    def urls(self) -> DiscordURLs:
        """Both, for `bot.discord.urls.configure_discord_urls`."""
        return DiscordURLs(api_base_url=self.base_url, gateway_url=self.gateway_url)

    def _run(self, coroutine: Coroutine[Any, Any, _T]) -> asyncio.Future[_T]:
        """Run on the fake's loop; awaitable from any loop."""
        if self._loop is None:
            coroutine.close()
            raise RuntimeError("fake Discord not started")
        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, self._loop))

    def _notify(self, event: str, data: JSON, *, guild_id: int | None) -> None:
        """Tell connected shards about a change made from the test's thread (blocks until sent)."""
        if self._loop is not None:
            sending = self._gateway.dispatch(event, data, guild_id=guild_id)
            asyncio.run_coroutine_threadsafe(sending, self._loop).result(timeout=10)

    @property
    def recommended_shards(self) -> int:
        """The `shards` GET /gateway/bot recommends (what an AutoShardedClient without shard_count uses)."""
        return self._rest.recommended_shards

    @recommended_shards.setter
    def recommended_shards(self, count: int) -> None:
        self._rest.recommended_shards = count

    # -- the world ---------------------------------------------------------------------------
    @property
    def bot(self) -> FakeUser:
        """The bot's own user (its id is also the application id)."""
        return self._world.bot

    @property
    def application_id(self) -> int:
        return self._world.application_id

    @property
    def owner(self) -> FakeUser:
        """The application's owner, also the owner of guilds added without one."""
        return self._world.owner

    def add_user(self, username: str, *, bot: bool = False, global_name: str | None = None) -> FakeUser:
        return self._world.add_user(username, bot=bot, global_name=global_name)

    def add_guild(
        self,
        name: str,
        *,
        members: Sequence[FakeUser] = (),
        owner: FakeUser | None = None,
        everyone_permissions: int = EVERYONE_PERMISSIONS,
        bot_permissions: int = 0,
        shard: tuple[int, int] | None = None,
    ) -> FakeGuild:
        """A guild the bot is in (with the owner, `members`, @everyone and the bot's managed role).

        `shard=(i, n)` picks an id that shard i of n owns. Once clients are connected it is sent
        as GUILD_CREATE, as when a bot is added to a server.
        """
        guild = self._world.add_guild(
            name, owner=owner, everyone_permissions=everyone_permissions, bot_permissions=bot_permissions, shard=shard
        )
        for user in members:
            self._world.add_member(guild, user)
        joined = self._world.guild_payload(guild, for_gateway=True)
        del joined["unavailable"]  # a join, not a guild coming back: discord.py then fires on_guild_join
        self._notify("GUILD_CREATE", joined, guild_id=guild.id)
        return guild

    def add_role(self, guild: FakeGuild, name: str, *, permissions: int) -> FakeRole:
        role = self._world.add_role(guild, name, permissions=permissions)
        self._notify("GUILD_ROLE_CREATE", {"guild_id": str(guild.id), "role": role.payload()}, guild_id=guild.id)
        return role

    def add_member(
        self, guild: FakeGuild, user: FakeUser, *, roles: Sequence[FakeRole] = (), nick: str | None = None
    ) -> FakeMember:
        member = self._world.add_member(guild, user, roles=roles, nick=nick)
        self._notify("GUILD_MEMBER_ADD", member.payload() | {"guild_id": str(guild.id)}, guild_id=guild.id)
        return member

    def set_roles(self, guild: FakeGuild, user: FakeUser, roles: Sequence[FakeRole]) -> FakeMember:
        """A moderator changes a member's roles (e.g. takes away the one that made them an admin)."""
        with self._world.lock:
            member = guild.members[user.id]
            member.roles = [r.id for r in roles]
        self._notify("GUILD_MEMBER_UPDATE", member.payload() | {"guild_id": str(guild.id)}, guild_id=guild.id)
        return member

    def add_channel(
        self,
        guild: FakeGuild,
        name: str = "general",
        *,
        type: ChannelType = ChannelType.GUILD_TEXT,
        parent: FakeChannel | None = None,
        topic: str | None = None,
    ) -> FakeChannel:
        """A guild channel; a thread (PUBLIC_THREAD/PRIVATE_THREAD) needs its `parent`."""
        channel = self._world.add_channel(guild, name, type=type, parent=parent, topic=topic)
        event = "THREAD_CREATE" if channel.is_thread else "CHANNEL_CREATE"
        self._notify(event, self._world.channel_payload(channel), guild_id=guild.id)
        return channel

    def dm_channel(self, user: FakeUser) -> FakeChannel:
        """The DM channel between the bot and `user`."""
        return self._world.dm_channel(user)

    def forbid_channel(self, channel: FakeChannel, *, permissions: int = _SEND) -> None:
        """Deny the bot `permissions` (by default sending) in `channel` with a member overwrite.

        Sending then answers 403 {"code": 50013, "message": "Missing Permissions"}; connected
        clients get CHANNEL_UPDATE, so `channel.permissions_for(guild.me)` agrees.
        """
        self._world.deny(channel, self._world.bot, permissions)
        if channel.guild_id is not None:
            event = "THREAD_UPDATE" if channel.is_thread else "CHANNEL_UPDATE"
            self._notify(event, self._world.channel_payload(channel), guild_id=channel.guild_id)

    def messages_in(self, channel: FakeChannel | int, *, author: FakeUser | None = None) -> list[JSON]:
        """The channel's messages (not ephemeral ones), oldest first; only `author`'s if given."""
        channel_id = channel if isinstance(channel, int) else channel.id
        history = self._world.history(channel_id)
        return [m for m in history if author is None or int(m["author"]["id"]) == author.id]

    def commands(self, guild: FakeGuild | None = None) -> list[JSON]:
        """The registered application commands: global ones, or a guild's."""
        return self._commands.in_scope(None if guild is None else guild.id)

    # -- events ------------------------------------------------------------------------------
    async def dispatch_message(
        self,
        channel: FakeChannel,
        author: FakeUser,
        content: str = "",
        *,
        mentions: Sequence[FakeUser] = (),
        referenced_message: JSON | int | None = None,
        attachments: Sequence[FakeAttachment] = (),
        embeds: Sequence[JSON] = (),
        stickers: Sequence[str] = (),
    ) -> JSON:
        """`author` posts in `channel`: stored, then MESSAGE_CREATE to the owning shard.

        Users named as <@id> in `content` count as mentioned, besides `mentions`; replying
        (`referenced_message`) mentions the replied-to author; `stickers` are sticker names.
        Returns the message as stored.
        """
        world = self._world
        guild = world.guild_of(channel)
        if guild is not None and author.id not in guild.members:
            raise LookupError(f"{author.username} is not a member of {guild.name}")
        reference = None
        if referenced_message is not None:
            message_id = referenced_message if isinstance(referenced_message, int) else int(referenced_message["id"])
            if message_id not in world.messages:
                raise LookupError(f"message {message_id} does not exist")
            reference = {"message_id": str(message_id), "channel_id": str(channel.id)}
            if guild is not None:
                reference["guild_id"] = str(guild.id)
        message = world.create_message(
            channel,
            author,
            content=content,
            mentions=mentions,
            reference=reference,
            attachments=attachments,
            embeds=embeds,
            sticker_names=stickers,
        )
        await self._deliver("MESSAGE_CREATE", message, guild_id=channel.guild_id)
        return message

    async def edit_message(self, message: JSON, content: str) -> JSON:
        """The author edits a stored message: its new content, then MESSAGE_UPDATE to the owning shard."""
        edited = self._world.edit_message(int(message["id"]), {"content": content})
        await self._run(self._gateway.echo("MESSAGE_UPDATE", edited))
        return edited

    async def delete_message(self, message: JSON) -> None:
        """The author deletes a stored message: gone from the channel, then MESSAGE_DELETE to the owning shard."""
        deleted = self._world.delete_message(int(message["id"]))
        await self._run(self._gateway.echo("MESSAGE_DELETE", deleted))

    async def dispatch_command(
        self, channel: FakeChannel, user: FakeUser, name: str, options: Mapping[str, OptionValue] | None = None
    ) -> FakeInteraction:
        """`user` runs a registered slash command ("remember", or a subcommand: "memory show").

        Options are typed from the command's registration (a FakeUser for a USER option, ...).
        """
        interaction = self._interactions.command(channel, user, name, options or {})
        await self._deliver("INTERACTION_CREATE", interaction.payload, guild_id=interaction.guild_id)
        return interaction

    async def dispatch_component(
        self, message: JSON, user: FakeUser, custom_id: str, *, values: Sequence[str] | None = None
    ) -> FakeInteraction:
        """`user` clicks the button (or picks `values` in the select) `custom_id` on a stored message."""
        interaction = self._interactions.component(message, user, custom_id, values)
        await self._deliver("INTERACTION_CREATE", interaction.payload, guild_id=interaction.guild_id)
        return interaction

    async def dispatch_modal_submit(
        self,
        custom_id: str | None,
        values: Mapping[str, str | Sequence[str]],
        *,
        user: FakeUser | None = None,
        opened: FakeInteraction | None = None,
    ) -> FakeInteraction:
        """The user submits a modal the bot opened (the one answering `opened`, else the last with
        `custom_id`): `values` by input custom_id."""
        interaction = self._interactions.modal_submit(custom_id, values, user, opened=opened)
        await self._deliver("INTERACTION_CREATE", interaction.payload, guild_id=interaction.guild_id)
        return interaction

    async def dispatch_event(self, event: str, data: JSON, *, guild_id: int | None = None) -> int:
        """Any gateway event, as given, to the owning shard's sessions (those with the intent); returns how many."""
        return await self._run(self._gateway.dispatch(event, data, guild_id=guild_id))

    async def _deliver(self, event: str, data: JSON, *, guild_id: int | None) -> None:
        if await self._run(self._gateway.dispatch(event, data, guild_id=guild_id)) == 0:
            shards = sorted({(s.shard_id, s.shard_count) for s in self.sessions}) or "none"
            raise RuntimeError(f"no gateway session receives {event} for guild {guild_id} (sessions: {shards})")

    async def reconnect_shard(self, shard_id: int = 0) -> None:
        """Send op 7 RECONNECT: discord.py closes the socket and RESUMEs."""
        await self._run(self._gateway.reconnect(shard_id))

    async def invalidate_session(self, shard_id: int = 0, *, resumable: bool = False) -> None:
        """Send op 9 INVALID_SESSION; not resumable makes discord.py IDENTIFY again (after its 5 s hook)."""
        await self._run(self._gateway.invalidate(shard_id, resumable=resumable))

    async def drop_connection(self, shard_id: int = 0, *, code: int = 4000) -> None:
        """Close the shard's socket from Discord's side; the session stays resumable."""
        await self._run(self._gateway.drop(shard_id, code=code))

    @property
    def sessions(self) -> list[SessionInfo]:
        """Every gateway session opened, oldest first (snapshots)."""
        return self._gateway.snapshot()

    @property
    def gateway_connections(self) -> list[GatewayConnection]:
        """Every websocket opened (query: v, encoding, compress)."""
        return list(self._gateway.connections)

    @staticmethod
    def shard_for(guild: FakeGuild | None, shard_count: int) -> int:
        return shard_for(None if guild is None else guild.id, shard_count)

    # -- what the bot did --------------------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        """Every REST call, oldest first, with the status it got."""
        return self._log.all()

    def requests_to(self, method: str, path: str) -> list[RecordedRequest]:
        """Calls of `method` on `path` (concrete, route template such as "/channels/{channel_id}/typing", or fnmatch)."""
        return [r for r in self._log.all() if r.is_call(method, path)]

    async def wait_for_request(
        self,
        predicate: RequestPredicate | None = None,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109
        count: int = 1,
    ) -> RecordedRequest:
        """The `count`-th REST call matching `predicate` (earlier ones count); TimeoutError listing all calls."""
        return await self._log.wait_for(predicate or (lambda _: True), timeout=timeout, count=count)

    async def wait_for_message(self, channel: FakeChannel, *, timeout: float = 5.0, count: int = 1) -> JSON:  # noqa: ASYNC109
        """The `count`-th message the bot created with POST /channels/{id}/messages in `channel`."""
        path = f"/channels/{channel.id}/messages"

        def created(r: RecordedRequest) -> bool:
            return r.is_call("POST", path) and r.status == 200

        request = await self._log.wait_for(created, timeout=timeout, count=count)
        message: JSON = request.response
        return message

    def responses_to(self, interaction: FakeInteraction) -> list[RecordedRequest]:
        """The bot's calls about `interaction`: its callback, follow-ups, edits of its messages."""
        return [r for r in self._log.all() if r.params.get("token") == interaction.token]

    async def wait_for_callback(self, interaction: FakeInteraction, *, timeout: float = 5.0) -> RecordedRequest:  # noqa: ASYNC109
        """The bot's POST /interactions/{id}/{token}/callback for `interaction` (successful or not)."""

        def answers(r: RecordedRequest) -> bool:
            return r.route.endswith("/callback") and r.params.get("token") == interaction.token

        return await self._log.wait_for(answers, timeout=timeout, count=1)

    # -- making Discord say no ---------------------------------------------------------------
    def rate_limit(
        self, method: str, path: str, *, retry_after: float = 0.05, times: int | None = 1, is_global: bool = False
    ) -> None:
        """The next `times` calls of `method` on `path` get 429 with retry_after and X-RateLimit-* headers."""
        self._failures.rate_limit(method, path, retry_after=retry_after, is_global=is_global, times=times)

    def fail_requests(
        self, method: str, path: str, *, status: int, code: int = 0, message: str = "", times: int | None = 1
    ) -> None:
        """The next `times` calls of `method` on `path` get `status` with {"code", "message"}."""
        self._failures.error(method, path, status=status, code=code, message=message or f"{status}", times=times)

    def clear_failures(self) -> None:
        self._failures.clear()
