"""The fake Discord's bot REST routes (v10): identity, channels and messages, guilds, application commands.

Answered as Discord answers them. Sending checks the bot's permissions in the channel
(403 with 50001 Missing Access without VIEW_CHANNEL, 50013 Missing Permissions without
SEND_MESSAGES, ATTACH_FILES for files, READ_MESSAGE_HISTORY for replies) and Discord's
message rules (50006 empty, 50035 over 2000 characters or a reply to an unknown message).
What the bot creates, edits or deletes is echoed over the gateway as
MESSAGE_CREATE/UPDATE/DELETE, as Discord does. Interaction callbacks and follow-ups are in
`tests.fakes.discord_webhooks`; the pipeline every call goes through in `tests.fakes.discord_http`.
"""

from __future__ import annotations

from aiohttp import web

from tests.fakes.discord_commands import CommandRegistry
from tests.fakes.discord_gateway import Gateway
from tests.fakes.discord_http import Call, Endpoint, uploads
from tests.fakes.discord_models import FakeChannel
from tests.fakes.discord_requests import Reply
from tests.fakes.discord_wire import JSON, DiscordHTTPError, ErrorCode, Permission, form_error
from tests.fakes.discord_world import World

__all__ = ["RestAPI"]


class RestAPI:
    """The bot-token routes; `endpoints()` for the HTTP front, `download` for attachment URLs."""

    def __init__(self, world: World, *, commands: CommandRegistry, gateway: Gateway, recommended_shards: int) -> None:
        self._world = world
        self._commands = commands
        self._gateway = gateway
        self.recommended_shards = recommended_shards
        self.gateway_url = ""  # set by the server once it knows its port

    def endpoints(self) -> list[Endpoint]:
        endpoints = [
            Endpoint("GET", "/gateway", self._gateway_url, needs_auth=False),
            Endpoint("GET", "/gateway/bot", self._gateway_bot),
            Endpoint("GET", "/users/@me", self._me),
            Endpoint("POST", "/users/@me/channels", self._open_dm),
            Endpoint("GET", "/users/{user_id}", self._user),
            Endpoint("GET", "/oauth2/applications/@me", self._application),
            Endpoint("GET", "/applications/@me", self._application),
            Endpoint("GET", "/channels/{channel_id}", self._channel_info),
            Endpoint("GET", "/channels/{channel_id}/messages", self._history),
            Endpoint("POST", "/channels/{channel_id}/messages", self._send),
            Endpoint("GET", "/channels/{channel_id}/messages/{message_id}", self._message),
            Endpoint("PATCH", "/channels/{channel_id}/messages/{message_id}", self._edit),
            Endpoint("DELETE", "/channels/{channel_id}/messages/{message_id}", self._delete),
            Endpoint("POST", "/channels/{channel_id}/typing", self._typing),
            Endpoint("GET", "/guilds/{guild_id}", self._guild),
            Endpoint("GET", "/guilds/{guild_id}/members/{user_id}", self._member),
        ]
        for scope in ("/applications/{application_id}", "/applications/{application_id}/guilds/{guild_id}"):
            endpoints += [
                Endpoint("GET", f"{scope}/commands", self._commands_list),
                Endpoint("PUT", f"{scope}/commands", self._commands_overwrite),
                Endpoint("POST", f"{scope}/commands", self._commands_create),
                Endpoint("GET", f"{scope}/commands/{{command_id}}", self._commands_get),
                Endpoint("PATCH", f"{scope}/commands/{{command_id}}", self._commands_edit),
                Endpoint("DELETE", f"{scope}/commands/{{command_id}}", self._commands_delete),
            ]
        return endpoints

    async def download(self, request: web.Request) -> web.StreamResponse:
        """GET /attachments/{channel_id}/{attachment_id}/{filename}: the URL in attachment payloads."""
        attachment_id = request.match_info["attachment_id"]
        blob = self._world.blobs.get(int(attachment_id)) if attachment_id.isdigit() else None
        if blob is None or blob.filename != request.match_info["filename"]:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=blob.data, content_type=blob.content_type.split(";")[0])

    # -- helpers -------------------------------------------------------------------------
    def _channel(self, call: Call, *, needs: int = Permission.VIEW_CHANNEL) -> FakeChannel:
        """The path's channel, if the bot may do `needs` there (403 50001 / 50013 otherwise)."""
        channel = self._world.channels.get(call.id("channel_id"))
        if channel is None:
            raise DiscordHTTPError.of(404, ErrorCode.UNKNOWN_CHANNEL, "Unknown Channel")
        granted = self._world.permissions(self._world.bot.id, channel)
        if not granted & Permission.VIEW_CHANNEL:
            raise DiscordHTTPError.of(403, ErrorCode.MISSING_ACCESS, "Missing Access")
        if needs & ~granted:
            raise DiscordHTTPError.of(403, ErrorCode.MISSING_PERMISSIONS, "Missing Permissions")
        return channel

    def _sending(self, call: Call) -> int:
        """What sending this call needs: SEND_MESSAGES (in threads: _IN_THREADS), files, replies."""
        channel = self._world.channels.get(call.id("channel_id"))
        in_thread = channel is not None and channel.is_thread
        needs = Permission.VIEW_CHANNEL | (
            Permission.SEND_MESSAGES_IN_THREADS if in_thread else Permission.SEND_MESSAGES
        )
        if call.files:
            needs |= Permission.ATTACH_FILES
        if call.body.get("message_reference"):
            needs |= Permission.READ_MESSAGE_HISTORY
        return needs

    def _stored(self, channel: FakeChannel, call: Call) -> JSON:
        message = self._world.messages.get(call.id("message_id"))
        if message is None or int(message["channel_id"]) != channel.id:
            raise DiscordHTTPError.of(404, ErrorCode.UNKNOWN_MESSAGE, "Unknown Message")
        return message

    # -- identity ------------------------------------------------------------------------
    async def _gateway_url(self, call: Call) -> Reply:
        return Reply(status=200, body={"url": self.gateway_url})

    async def _gateway_bot(self, call: Call) -> Reply:
        limit = {"total": 1000, "remaining": 999, "reset_after": 14_400_000, "max_concurrency": 1}
        body = {"url": self.gateway_url, "shards": self.recommended_shards, "session_start_limit": limit}
        return Reply(status=200, body=body)

    async def _me(self, call: Call) -> Reply:
        return Reply(status=200, body=self._world.bot.payload() | {"verified": True, "mfa_enabled": False})

    async def _user(self, call: Call) -> Reply:
        user = self._world.users.get(call.id("user_id"))
        if user is None:
            raise DiscordHTTPError.of(404, ErrorCode.UNKNOWN_USER, "Unknown User")
        return Reply(status=200, body=user.payload())

    async def _open_dm(self, call: Call) -> Reply:
        user = self._world.users.get(int(call.body.get("recipient_id") or 0))
        if user is None:
            raise DiscordHTTPError(400, form_error("recipient_id", "NUMBER_TYPE_COERCE", "Invalid Recipient(s)"))
        return Reply(status=200, body=self._world.channel_payload(self._world.dm_channel(user)))

    async def _application(self, call: Call) -> Reply:
        world = self._world
        info: JSON = {
            "id": str(world.application_id),
            "name": world.bot.username,
            "icon": None,
            "description": "",
            "summary": "",
            "type": None,
            "hook": True,
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": "0" * 64,
            "owner": world.owner.payload(),
            "team": None,
            "flags": world.application_flags,
            "bot": world.bot.payload(),
            "redirect_uris": [],
            "interactions_endpoint_url": None,
            "approximate_guild_count": len(world.guilds),
            "integration_types_config": {"0": {}},
        }
        return Reply(status=200, body=info)

    # -- channels and messages -------------------------------------------------------------
    async def _channel_info(self, call: Call) -> Reply:
        return Reply(status=200, body=self._world.channel_payload(self._channel(call)))

    async def _history(self, call: Call) -> Reply:
        """GET messages: newest first, `limit` (1-100, default 50), `before`/`after` a message id."""
        channel = self._channel(call, needs=Permission.VIEW_CHANNEL | Permission.READ_MESSAGE_HISTORY)
        messages = self._world.history(channel.id)
        limit = max(1, min(100, int(call.query.get("limit", "50"))))
        if "before" in call.query:
            messages = [m for m in messages if int(m["id"]) < int(call.query["before"])]
        if "after" in call.query:
            messages = [m for m in messages if int(m["id"]) > int(call.query["after"])][:limit]
        return Reply(status=200, body=list(reversed(messages[-limit:])))

    async def _send(self, call: Call) -> Reply:
        channel = self._channel(call, needs=self._sending(call))
        message = self._world.create_from_body(channel, self._world.bot, call.body, uploads(call))
        await self._gateway.echo("MESSAGE_CREATE", message)
        return Reply(status=200, body=message)

    async def _message(self, call: Call) -> Reply:
        channel = self._channel(call, needs=Permission.VIEW_CHANNEL | Permission.READ_MESSAGE_HISTORY)
        return Reply(status=200, body=self._stored(channel, call))

    async def _edit(self, call: Call) -> Reply:
        message = self._stored(self._channel(call), call)
        if int(message["author"]["id"]) != self._world.bot.id:
            message_text = "Cannot edit a message authored by another user"
            raise DiscordHTTPError.of(403, ErrorCode.CANNOT_EDIT_OTHERS_MESSAGE, message_text)
        edited = self._world.edit_message(int(message["id"]), call.body, uploads(call))
        await self._gateway.echo("MESSAGE_UPDATE", edited)
        return Reply(status=200, body=edited)

    async def _delete(self, call: Call) -> Reply:
        message = self._stored(self._channel(call), call)
        if int(message["author"]["id"]) != self._world.bot.id:
            self._channel(call, needs=Permission.VIEW_CHANNEL | Permission.MANAGE_MESSAGES)
        await self._gateway.echo("MESSAGE_DELETE", self._world.delete_message(int(message["id"])))
        return Reply(status=204)

    async def _typing(self, call: Call) -> Reply:
        channel = self._world.channels.get(call.id("channel_id"))
        sending = Permission.SEND_MESSAGES_IN_THREADS if channel and channel.is_thread else Permission.SEND_MESSAGES
        self._channel(call, needs=Permission.VIEW_CHANNEL | sending)
        return Reply(status=204)

    # -- guilds ------------------------------------------------------------------------------
    async def _guild(self, call: Call) -> Reply:
        guild = self._world.guilds.get(call.id("guild_id"))
        if guild is None:
            raise DiscordHTTPError.of(404, ErrorCode.UNKNOWN_GUILD, "Unknown Guild")
        return Reply(status=200, body=self._world.guild_payload(guild, for_gateway=False))

    async def _member(self, call: Call) -> Reply:
        guild = self._world.guilds.get(call.id("guild_id"))
        if guild is None:
            raise DiscordHTTPError.of(404, ErrorCode.UNKNOWN_GUILD, "Unknown Guild")
        member = guild.members.get(call.id("user_id"))
        if member is None:
            raise DiscordHTTPError.of(404, ErrorCode.UNKNOWN_MEMBER, "Unknown Member")
        return Reply(status=200, body=member.payload())

    # -- application commands --------------------------------------------------------------
    def _scope(self, call: Call) -> int | None:
        """None for global commands, else the guild's id; 403 Missing Access for another app or guild."""
        if call.id("application_id") != self._world.application_id:
            raise DiscordHTTPError.of(403, ErrorCode.MISSING_ACCESS, "Missing Access")
        if "guild_id" not in call.params:
            return None
        if call.id("guild_id") not in self._world.guilds:
            raise DiscordHTTPError.of(403, ErrorCode.MISSING_ACCESS, "Missing Access")
        return call.id("guild_id")

    async def _commands_list(self, call: Call) -> Reply:
        return Reply(status=200, body=self._commands.in_scope(self._scope(call)))

    async def _commands_overwrite(self, call: Call) -> Reply:
        if not isinstance(call.json, list):
            problem = form_error("_root", "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")
            raise DiscordHTTPError(400, problem)
        return Reply(status=200, body=self._commands.overwrite(self._scope(call), call.json))

    async def _commands_create(self, call: Call) -> Reply:
        command, created = self._commands.upsert(self._scope(call), call.body)
        return Reply(status=201 if created else 200, body=command)

    async def _commands_get(self, call: Call) -> Reply:
        return Reply(status=200, body=self._commands.get(self._scope(call), call.id("command_id")))

    async def _commands_edit(self, call: Call) -> Reply:
        return Reply(status=200, body=self._commands.edit(self._scope(call), call.id("command_id"), call.body))

    async def _commands_delete(self, call: Call) -> Reply:
        self._commands.delete(self._scope(call), call.id("command_id"))
        return Reply(status=204)
