"""The Discord adapter: discord.py messages in, `InboundMessage`s to the runtime; replies out.

    MESSAGE_CREATE ─> admits? (self, bots, allow/block lists) ─> addressed to us? ─> Place
        ─> router.route ─> InboundMessage ─> runtime.submit(keys=["discord:msg:ID"])
        ─> attachments the user asked to keep ─> archival memory
    MESSAGE_UPDATE / MESSAGE_DELETE of a message still waiting for its turn ─> revised / withdrawn
    INTERACTION_CREATE ─> the command tree (`bot.discord.commands`: /memory ..., /forget-me)
    runtime ─> sink_for(message) ─> typing, split at 2000 chars, reply to the triggering message

The bot answers when mentioned, when a message replies to it, in DMs, in threads it started
or was mentioned in (remembered in the store, so across restarts and replicas), and in
free-response channels; it stays quiet when a message mentions other people but not it.
Without the message content intent it answers only mentions (and replies that mention it)
and DMs: Discord hides the text of every other server message.

A message edited before its turn ran is answered with its new text; one deleted before its
turn ran is not answered (`bot.discord.revisions`). Once the turn has started the reply
stands: an edit is ignored, and a reply to a deleted message is posted without the reference.
discord.py lives in the `bot.discord_*` modules only.
"""

from __future__ import annotations

import json
import logging
import re
import socket
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import discord

from bot.admin import AdminService
from bot.config import DiscordSettings
from bot.discord.commands import AdminCommandTree, MemoryCommands, forget_me_command
from bot.discord.documents import DocumentOutcome, asks_to_save, is_document, read_documents
from bot.discord.revisions import PendingMessages
from bot.discord.urls import DiscordURLs, configure_discord_urls
from bot.errors import ConfigError, LLMError, StoreError
from bot.events import InboundMessage, ReplySink
from bot.memory.archival import ArchivalMemory
from bot.ops.logging import OutageLog, is_store_outage
from bot.router import Place, Router
from bot.runtime import Runtime, Store
from bot.text_split import split_message

__all__ = ["PLATFORM", "DiscordAdapter", "build_intents"]

_log = logging.getLogger(__name__)

PLATFORM = "discord"
MESSAGE_LIMIT = 2000
ALLOWED_MENTIONS = discord.AllowedMentions(everyone=False, roles=False, users=True, replied_user=True)
EMPTY_MENTION = "[mentioned you without saying anything]"
_ARCHIVAL_BATCH = 32


def network_reason(exc: BaseException) -> str:
    """Why a connection failed, in a few words (aiohttp's connector errors carry the OS error)."""
    cause = getattr(exc, "os_error", None) or exc
    match cause:
        case ConnectionRefusedError():
            return "connection refused"
        case TimeoutError():
            return "timed out"
        case socket.gaierror():
            return "host name not found"
        case OSError() if cause.strerror:
            return cause.strerror.lower()
    return type(cause).__name__


def build_intents(*, message_content: bool) -> discord.Intents:
    """Guilds, guild messages and DMs; message content when the application may have it."""
    intents = discord.Intents.none()
    intents.guilds = True
    intents.guild_messages = True
    intents.dm_messages = True
    intents.message_content = message_content
    return intents


class _Client(discord.AutoShardedClient):
    """discord.py's sharded client, running `on_setup` once after login (before the gateway)."""

    def __init__(self, *, on_setup: Callable[[], Awaitable[None]], **options: Any) -> None:
        super().__init__(**options)
        self._on_setup = on_setup

    async def setup_hook(self) -> None:
        await self._on_setup()


class DiscordAdapter:
    """One sharded discord.py client feeding one runtime through one router."""

    def __init__(
        self,
        *,
        settings: DiscordSettings,
        router: Router,
        runtime: Runtime,
        store: Store,
        admin: AdminService | None = None,
        archival: ArchivalMemory | None = None,
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        """`admin`: serve the admin commands; `archival`: save attachments users ask to keep."""
        self.name = PLATFORM
        self._settings = settings
        self._router = router
        self._runtime = runtime
        self._store = store
        self._archival = archival
        options: dict[str, Any] = dict(client_options or {})
        if settings.shard_ids is not None:
            options["shard_ids"] = list(settings.shard_ids)
        self.client = _Client(
            on_setup=self._setup,
            intents=build_intents(message_content=settings.message_content_intent),
            shard_count=settings.shard_count,
            allowed_mentions=ALLOWED_MENTIONS,
            **options,
        )
        self.tree = AdminCommandTree(self.client)
        self._memory: MemoryCommands | None = None
        if admin is not None:
            self._memory = MemoryCommands(
                admin=admin,
                router=router,
                permission=settings.admin_permission,
                permission_notes=self.take_permission_notes,
            )
            self.tree.add_command(self._memory)
            self.tree.add_command(forget_me_command(admin))
        for handler in (self.on_message, self.on_raw_message_edit, self.on_raw_message_delete, self.on_interaction):
            self.client.event(handler)
        #: Joined threads seen by this process (the store remembers them for every process).
        self._joined_threads: set[int] = set()
        #: Channels where sending was refused, logged once each.
        self._forbidden_channels: set[int] = set()
        #: Per server: channels where sending was refused since an admin was last told.
        self._unreported: dict[int, list[int]] = {}
        self._pending = PendingMessages(store=store, runtime=runtime)
        self._outage = OutageLog("Discord messages", logger=_log)
        runtime.register_sink(PLATFORM, self.sink_for)

    @property
    def syncs_commands(self) -> bool:
        """Whether this process registers the slash commands (one process per deployment should)."""
        if self._settings.sync_commands is not None:
            return self._settings.sync_commands
        return self._settings.shard_ids is None or 0 in self._settings.shard_ids

    async def _setup(self) -> None:
        if self.syncs_commands and self.tree.get_commands():
            synced = await self.tree.sync()
            _log.info("registered %d Discord slash commands: %s", len(synced), ", ".join(c.name for c in synced))

    async def run(self) -> None:
        """Point discord.py at the configured endpoints, log in and stay connected until closed."""
        if self._settings.token is None:
            raise ConfigError("no Discord bot token: set DISCORD_TOKEN (or MEMBOT_DISCORD__TOKEN)")
        token = self._settings.token.get_secret_value()
        configure_discord_urls(
            DiscordURLs(api_base_url=self._settings.api_base_url, gateway_url=self._settings.gateway_url)
        )
        try:
            # Logging in is the first request: if Discord cannot be reached now, say so in one line
            # and stop (as Slack does), and let the supervisor start us again. Once logged in,
            # discord.py itself reconnects the gateway through outages.
            await self.client.login(token)
        except discord.LoginFailure:
            raise ConfigError(
                "Discord refused the bot token (DISCORD_TOKEN): reset it in the developer portal"
            ) from None
        except (OSError, TimeoutError) as exc:
            raise ConfigError(
                f"cannot reach Discord's API at {self._settings.api_base_url} ({network_reason(exc)}); "
                "check MEMBOT_DISCORD__API_BASE_URL and the network"
            ) from None
        except discord.HTTPException as exc:
            raise ConfigError(
                f"Discord's API at {self._settings.api_base_url} answered HTTP {exc.status} at login "
                f"({exc.text or exc.__class__.__name__}); try again later"
            ) from None
        try:
            await self.client.connect()
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
    async def on_interaction(self, interaction: discord.Interaction[Any]) -> None:
        """discord.py's event for every interaction: a form it dropped (expired) is answered."""
        if self._memory is not None:
            await self._memory.answer_stale_form(interaction)

    async def on_message(self, message: discord.Message) -> None:
        """discord.py's event: hand an admitted, addressed message to its agent. While the store is
        unavailable the message cannot be taken (Discord does not deliver it again): the outage is
        logged once, not once per message (discord.py would log a traceback each time)."""
        try:
            await self._take(message)
        except Exception as exc:
            if not is_store_outage(exc):
                raise
            self._outage.failed(exc)

    async def _take(self, message: discord.Message) -> None:
        me = self.client.user
        if me is None:
            return
        reason = self._refusal(message, me)
        if reason is not None:
            _log.debug("ignored message %s: %s", message.id, reason)
            return
        if not await self._is_addressed(message, me):
            return
        channel = message.channel
        if isinstance(channel, discord.Thread) and message.guild is not None and _mentions(message, me):
            await self._join_thread(message.guild.id, channel.id)
        place = Place(
            platform=PLATFORM,
            server_id=str(message.guild.id) if message.guild is not None else None,
            channel_id=str(channel.id),
            thread_parent_id=str(channel.parent_id) if isinstance(channel, discord.Thread) else None,
            user_id=str(message.author.id),
        )
        route = await self._router.route(place)
        documents = await self._documents(message, me)
        inbound = InboundMessage(
            platform=PLATFORM,
            conversation_key=route.conversation_key,
            speaker_id=str(message.author.id),
            speaker_name=message.author.display_name,
            text=message_text(message, me, notes={d.attachment_id: d.note for d in documents}),
            sent_at=message.created_at,
            platform_message_id=str(message.id),
            attachments=tuple(a.url for a in message.attachments),
            reply_route=json.dumps({"channel": str(channel.id), "message": str(message.id)}),
            is_shared_conversation=route.is_shared,
            scope=route.scope,
        )
        key = f"discord:msg:{message.id}"
        is_new = await self._runtime.submit(route.agent_id, inbound, keys=[key])
        self._outage.succeeded()
        if not is_new:
            return  # a duplicate delivery: handled the first time
        self._pending.add(message.id, agent_id=route.agent_id, key=key, content=message.content, inbound=inbound)
        await self._save_documents(route.agent_id, inbound, documents)

    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        """An edit of a message still waiting for its turn: the turn gets the new text instead."""
        me = self.client.user
        if me is None:
            return
        edited = payload.message
        version = str(int((edited.edited_at or edited.created_at).timestamp() * 1_000_000))
        try:
            await self._pending.edit(edited.id, content=edited.content, text=message_text(edited, me), version=version)
        except Exception as exc:
            if not is_store_outage(exc):
                raise
            self._outage.failed(exc)

    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        """A message deleted before its turn ran is not answered."""
        try:
            await self._pending.delete(payload.message_id)
        except Exception as exc:
            if not is_store_outage(exc):
                raise
            self._outage.failed(exc)

    # -- attachments ---------------------------------------------------------------------------
    async def _documents(self, message: discord.Message, me: discord.ClientUser) -> list[DocumentOutcome]:
        """The text files and PDFs the message asks to keep, read (or refused); [] when it asks nothing."""
        if self._archival is None or not asks_to_save(_without_mention(message.content, me)):
            return []
        wanted = [a for a in message.attachments if is_document(a)]
        return await read_documents(wanted, max_bytes=self._settings.max_attachment_bytes) if wanted else []

    async def _save_documents(self, agent_id: str, inbound: InboundMessage, documents: list[DocumentOutcome]) -> None:
        """Passages into the agent's archival memory; refusals answered at once, in one reply."""
        if self._archival is None:
            return
        refusals = [d.refusal for d in documents if d.refusal is not None]
        for document in documents:
            try:
                for start in range(0, len(document.passages), _ARCHIVAL_BATCH):
                    await self._archival.insert(agent_id, document.passages[start : start + _ARCHIVAL_BATCH])
            except (StoreError, LLMError) as exc:
                _log.warning("could not save %s to archival memory of %s: %s", document.filename, agent_id, exc)
                refusals.append(f"{document.filename} could not be stored just now (try again later)")
                continue
            if document.passages:
                _log.info(
                    "saved %s to archival of %s (%d passages)", document.filename, agent_id, len(document.passages)
                )
        if refusals:
            await self.sink_for(inbound).send("I did not save that: " + "; ".join(refusals) + ".")

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

    async def _is_addressed(self, message: discord.Message, me: discord.ClientUser) -> bool:
        """Mentioned, replied to, in a DM, in our thread or a free-response channel; not when
        the message names other people but not us."""
        if _mentions(message, me):
            return True
        channel = message.channel
        if isinstance(channel, discord.DMChannel):
            return True
        if message.mentions or not self._settings.message_content_intent:
            return False  # without the intent, Discord hides the text of everything else
        resolved = message.reference.resolved if message.reference is not None else None
        if isinstance(resolved, discord.Message) and resolved.author.id == me.id:
            return True
        is_our_thread = isinstance(channel, discord.Thread) and (
            channel.owner_id == me.id
            or (message.guild is not None and await self._has_joined(message.guild.id, channel.id))
        )
        if is_our_thread:
            return True
        return bool(_channel_ids(channel) & set(self._settings.free_response_channels))

    async def _join_thread(self, guild_id: int, thread_id: int) -> None:
        if thread_id not in self._joined_threads:
            await self._store.add_joined_thread(f"{PLATFORM}:{guild_id}", str(thread_id))
            self._joined_threads.add(thread_id)

    async def _has_joined(self, guild_id: int, thread_id: int) -> bool:
        if thread_id in self._joined_threads:
            return True
        if await self._store.has_joined_thread(f"{PLATFORM}:{guild_id}", str(thread_id)):
            self._joined_threads.add(thread_id)
            return True
        return False

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
        """Log a refused post once per channel and keep it for the server's next admin command;
        the turn is not retried."""
        if channel_id not in self._forbidden_channels:
            self._forbidden_channels.add(channel_id)
            _log.warning("no permission to post in Discord channel %s (%s); not retrying", channel_id, exc.text)
        guild = getattr(self.client.get_channel(channel_id), "guild", None)
        if isinstance(guild, discord.Guild):
            unreported = self._unreported.setdefault(guild.id, [])
            if channel_id not in unreported:
                unreported.append(channel_id)

    def take_permission_notes(self, guild_id: int) -> list[int]:
        """The server's channels the bot could not post in since this was last asked (then cleared)."""
        return self._unreported.pop(guild_id, [])


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


def message_text(message: discord.Message, me: discord.ClientUser, *, notes: Mapping[int, str] | None = None) -> str:
    """The text for the agent: our mention removed; attachments (or `notes` on them, by
    attachment id) and stickers named."""
    text = _without_mention(message.content, me)
    parts = [text] if text else []
    for attachment in message.attachments:
        if notes and attachment.id in notes:
            parts.append(notes[attachment.id])
            continue
        kind = "image" if (attachment.content_type or "").startswith("image/") else "file"
        parts.append(f"[{kind}: {attachment.filename}]")
    parts += [f"[sticker: {sticker.name}]" for sticker in message.stickers]
    return "\n".join(parts) or EMPTY_MENTION


def _without_mention(content: str, me: discord.ClientUser) -> str:
    return re.sub(rf"<@!?{me.id}>", "", content).strip()


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
