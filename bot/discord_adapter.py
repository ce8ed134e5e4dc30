"""The Discord adapter: discord.py messages in, `InboundMessage`s to the runtime; replies out.

    MESSAGE_CREATE ─> admits? (self, bots, allow/block lists) ─> addressed to us? ─> Place
        ─> router.route ─> InboundMessage ─> runtime.submit(keys=["discord:msg:ID"])
    runtime ─> sink_for(message) ─> typing, split at 2000 chars, reply to the triggering message

The bot answers when mentioned, when a message replies to it, in DMs, in threads it started
or was mentioned in, and in free-response channels; it stays quiet when a message mentions
other people but not it. discord.py is imported here and in `bot.discord_urls` only.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import Any

import discord

from bot.config import DiscordSettings
from bot.discord_urls import DiscordURLs, configure_discord_urls
from bot.errors import ConfigError
from bot.events import InboundMessage, ReplySink
from bot.router import Place, Router
from bot.runtime import Runtime
from bot.text_split import split_message

__all__ = ["PLATFORM", "DiscordAdapter", "build_intents"]

_log = logging.getLogger(__name__)

PLATFORM = "discord"
MESSAGE_LIMIT = 2000
ALLOWED_MENTIONS = discord.AllowedMentions(everyone=False, roles=False, users=True, replied_user=True)
EMPTY_MENTION = "[mentioned you without saying anything]"


def build_intents(*, message_content: bool) -> discord.Intents:
    """Guilds, guild messages and DMs; message content when the application may have it."""
    intents = discord.Intents.none()
    intents.guilds = True
    intents.guild_messages = True
    intents.dm_messages = True
    intents.message_content = message_content
    return intents


class DiscordAdapter:
    """One sharded discord.py client feeding one runtime through one router."""

    def __init__(
        self,
        *,
        settings: DiscordSettings,
        router: Router,
        runtime: Runtime,
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = PLATFORM
        self._settings = settings
        self._router = router
        self._runtime = runtime
        options: dict[str, Any] = dict(client_options or {})
        if settings.shard_ids is not None:
            options["shard_ids"] = list(settings.shard_ids)
        self.client = discord.AutoShardedClient(
            intents=build_intents(message_content=settings.message_content_intent),
            shard_count=settings.shard_count,
            allowed_mentions=ALLOWED_MENTIONS,
            **options,
        )
        self.client.event(self.on_message)
        #: Threads where someone mentioned the bot: it keeps answering there (this process only).
        self._joined_threads: set[int] = set()
        #: Channels where sending was refused, logged once each.
        self._forbidden_channels: set[int] = set()
        runtime.register_sink(PLATFORM, self.sink_for)

    async def run(self) -> None:
        """Point discord.py at the configured endpoints, log in and stay connected until closed."""
        if self._settings.token is None:
            raise ConfigError("no Discord bot token: set DISCORD_TOKEN (or MEMBOT_DISCORD__TOKEN)")
        token = self._settings.token.get_secret_value()
        configure_discord_urls(
            DiscordURLs(api_base_url=self._settings.api_base_url, gateway_url=self._settings.gateway_url)
        )
        try:
            await self.client.start(token)
        except discord.LoginFailure:
            raise ConfigError(
                "Discord refused the bot token (DISCORD_TOKEN): reset it in the developer portal"
            ) from None
        except discord.PrivilegedIntentsRequired:
            raise ConfigError(
                "Discord refused the message content intent: enable it for the bot in the developer portal, "
                "or set MEMBOT_DISCORD__MESSAGE_CONTENT_INTENT=false (then the bot reads only mentions and DMs)"
            ) from None

    async def close(self) -> None:
        await self.client.close()

    def is_ready(self) -> bool:
        return self.client.is_ready() and not self.client.is_closed()

    # -- inbound -----------------------------------------------------------------------------
    async def on_message(self, message: discord.Message) -> None:
        """discord.py's event: hand an admitted, addressed message to its agent."""
        me = self.client.user
        if me is None:
            return
        reason = self._refusal(message, me)
        if reason is not None:
            _log.debug("ignored message %s: %s", message.id, reason)
            return
        if not self._is_addressed(message, me):
            return
        channel = message.channel
        if isinstance(channel, discord.Thread) and _mentions(message, me):
            self._joined_threads.add(channel.id)
        place = Place(
            platform=PLATFORM,
            server_id=str(message.guild.id) if message.guild is not None else None,
            channel_id=str(channel.id),
            thread_parent_id=str(channel.parent_id) if isinstance(channel, discord.Thread) else None,
            user_id=str(message.author.id),
        )
        route = await self._router.route(place)
        inbound = InboundMessage(
            platform=PLATFORM,
            conversation_key=route.conversation_key,
            speaker_id=str(message.author.id),
            speaker_name=message.author.display_name,
            text=message_text(message, me),
            sent_at=message.created_at,
            platform_message_id=str(message.id),
            attachments=tuple(a.url for a in message.attachments),
            reply_route=json.dumps({"channel": str(channel.id), "message": str(message.id)}),
            is_shared_conversation=route.is_shared,
            scope=route.scope,
        )
        await self._runtime.submit(route.agent_id, inbound, keys=[f"discord:msg:{message.id}"])

    def _refusal(self, message: discord.Message, me: discord.ClientUser) -> str | None:
        """Why this message is not for any agent (the one cross-cutting check), or None."""
        author = message.author
        if author.id == me.id:
            return "our own message"
        if author.bot and not self._settings.allow_bots:
            return "from a bot"
        if message.type not in (discord.MessageType.default, discord.MessageType.reply):
            return "a system message"
        settings = self._settings
        if author.id in settings.blocked_users:
            return "user blocked"
        roles = {role.id for role in author.roles} if isinstance(author, discord.Member) else set()
        if roles & set(settings.blocked_roles):
            return "role blocked"
        is_dm = message.guild is None
        if is_dm:
            allows_everyone = not settings.allowed_users
        else:
            allows_everyone = not settings.allowed_users and not settings.allowed_roles
        if not (allows_everyone or author.id in settings.allowed_users or roles & set(settings.allowed_roles)):
            return "user not allowed"
        if not is_dm:
            channels = _channel_ids(message.channel)
            if channels & set(settings.blocked_channels):
                return "channel blocked"
            if settings.allowed_channels and not channels & set(settings.allowed_channels):
                return "channel not allowed"
        return None

    def _is_addressed(self, message: discord.Message, me: discord.ClientUser) -> bool:
        """Mentioned, replied to, in a DM, in our thread or a free-response channel; not when
        the message names other people but not us."""
        if _mentions(message, me):
            return True
        channel = message.channel
        if isinstance(channel, discord.DMChannel):
            return True
        if message.mentions:
            return False
        resolved = message.reference.resolved if message.reference is not None else None
        if isinstance(resolved, discord.Message) and resolved.author.id == me.id:
            return True
        if isinstance(channel, discord.Thread) and (channel.owner_id == me.id or channel.id in self._joined_threads):
            return True
        return bool(_channel_ids(channel) & set(self._settings.free_response_channels))

    # -- outbound ----------------------------------------------------------------------------
    def sink_for(self, message: InboundMessage) -> ReplySink:
        """The runtime's sink factory: rebuilds where to answer from `reply_route` (also after a restart)."""
        route = json.loads(message.reply_route)
        message_id = route.get("message")
        return _DiscordSink(self, channel_id=int(route["channel"]), message_id=int(message_id) if message_id else None)

    def channel_for(self, channel_id: int) -> discord.abc.Messageable:
        """The channel from the cache, else a partial one (enough to post; no REST call)."""
        channel = self.client.get_channel(channel_id)
        if isinstance(channel, discord.abc.Messageable):
            return channel
        return self.client.get_partial_messageable(channel_id)

    def note_forbidden(self, channel_id: int, exc: discord.Forbidden) -> None:
        """Log a refused post once per channel; the turn is not retried."""
        if channel_id not in self._forbidden_channels:
            self._forbidden_channels.add(channel_id)
            _log.warning("no permission to post in Discord channel %s (%s); not retrying", channel_id, exc.text)


class _DiscordSink:
    """Answers in one channel, the first message as a reply to the one that triggered the turn."""

    def __init__(self, adapter: DiscordAdapter, *, channel_id: int, message_id: int | None) -> None:
        self._adapter = adapter
        self._channel_id = channel_id
        self._message_id = message_id
        self._has_typed = False

    async def typing(self) -> None:
        if self._has_typed:
            return
        self._has_typed = True
        try:
            await self._adapter.channel_for(self._channel_id).typing()
        except discord.HTTPException as exc:
            _log.debug("typing indicator in %s failed: %s", self._channel_id, exc)

    async def send(self, text: str) -> str | None:
        channel = self._adapter.channel_for(self._channel_id)
        first_id: str | None = None
        try:
            for chunk in split_message(text, limit=MESSAGE_LIMIT):
                reference = None
                if first_id is None and self._message_id is not None:
                    reference = discord.MessageReference(
                        message_id=self._message_id, channel_id=self._channel_id, fail_if_not_exists=False
                    )
                if reference is not None:
                    posted = await channel.send(chunk, reference=reference, allowed_mentions=ALLOWED_MENTIONS)
                else:
                    posted = await channel.send(chunk, allowed_mentions=ALLOWED_MENTIONS)
                first_id = first_id or str(posted.id)
        except discord.Forbidden as exc:
            self._adapter.note_forbidden(self._channel_id, exc)
        return first_id


def message_text(message: discord.Message, me: discord.ClientUser) -> str:
    """The text for the agent: our mention removed; attachments and stickers named."""
    text = re.sub(rf"<@!?{me.id}>", "", message.content).strip()
    parts = [text] if text else []
    for attachment in message.attachments:
        kind = "image" if (attachment.content_type or "").startswith("image/") else "file"
        parts.append(f"[{kind}: {attachment.filename}]")
    parts += [f"[sticker: {sticker.name}]" for sticker in message.stickers]
    return "\n".join(parts) or EMPTY_MENTION


def _mentions(message: discord.Message, me: discord.ClientUser) -> bool:
    return any(user.id == me.id for user in message.mentions)


def _channel_ids(channel: Any) -> set[int]:
    """The channel, its parent (for a thread) and its category: what allow/block lists match."""
    ids = {channel.id}
    for attribute in ("parent_id", "category_id"):
        value = getattr(channel, attribute, None)
        if isinstance(value, int):
            ids.add(value)
    return ids
