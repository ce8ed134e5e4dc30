"""The fake Discord's world: who and what exists (users, guilds, channels, messages) and who may do what.

`World` is the state both halves of the fake (REST and gateway) read and change, under one
re-entrant lock; tests reach it through `tests.fakes.discord_server.DiscordFake`. The
objects (`tests.fakes.discord_models`) render their own payloads; the world renders what
needs more than one of them (GUILD_CREATE, a message as a session sees it) and computes
permissions the way Discord does: @everyone, then the member's roles (administrator and
the guild owner get everything), then the channel's overwrites (@everyone, roles, member;
a thread's are its parent's). Commands and interactions live in `discord_commands` and
`discord_interactions`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Sequence

from tests.fakes.discord_models import FakeAttachment, FakeChannel, FakeGuild, FakeMember, FakeRole, FakeUser
from tests.fakes.discord_wire import (
    ALL_PERMISSIONS,
    JSON,
    THREAD_TYPES,
    ChannelType,
    DiscordHTTPError,
    ErrorCode,
    Intent,
    MessageFlag,
    Permission,
    Snowflakes,
    form_error,
    iso_timestamp,
    shard_for,
)

__all__ = ["World", "check_message_body"]

_USER_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")


class World:
    """Everything the fake Discord knows. Every method takes `lock`; hold it across several calls to see one state."""

    def __init__(self, *, ids: Snowflakes, bot_name: str, owner_name: str) -> None:
        self.lock = threading.RLock()
        self.ids = ids
        self.bot = FakeUser(id=ids.next(), username=bot_name, bot=True)
        self.application_id = self.bot.id  # as for every bot application made since 2016
        self.owner = FakeUser(id=ids.next(), username=owner_name)
        self.origin = ""  # "http://127.0.0.1:PORT", for attachment URLs; set by the server at start
        self.application_flags = 0  # GATEWAY_* flags for the privileged intents the application may use
        self.users: dict[int, FakeUser] = {u.id: u for u in (self.bot, self.owner)}
        self.guilds: dict[int, FakeGuild] = {}
        self.channels: dict[int, FakeChannel] = {}
        self.messages: dict[int, JSON] = {}
        self.channel_messages: dict[int, list[int]] = {}
        self.blobs: dict[int, FakeAttachment] = {}

    # -- building the world ----------------------------------------------------------------
    def add_user(self, username: str, *, bot: bool = False, global_name: str | None = None) -> FakeUser:
        with self.lock:
            user = FakeUser(id=self.ids.next(), username=username, global_name=global_name, bot=bot)
            self.users[user.id] = user
            return user

    def add_guild(
        self,
        name: str,
        *,
        owner: FakeUser | None,
        everyone_permissions: int,
        bot_permissions: int,
        shard: tuple[int, int] | None,
    ) -> FakeGuild:
        with self.lock:
            guild = FakeGuild(id=self.ids.next(shard=shard), name=name, owner_id=(owner or self.owner).id)
            guild.roles[guild.id] = FakeRole(
                id=guild.id, guild_id=guild.id, name="@everyone", permissions=everyone_permissions
            )
            bot_role = FakeRole(
                id=self.ids.next(), guild_id=guild.id, name=self.bot.username, permissions=bot_permissions, managed=True
            )
            guild.roles[bot_role.id] = bot_role
            self.guilds[guild.id] = guild
            self.add_member(guild, self.bot, roles=[bot_role])
            self.add_member(guild, owner or self.owner)
            return guild

    def add_role(self, guild: FakeGuild, name: str, *, permissions: int) -> FakeRole:
        with self.lock:
            role = FakeRole(id=self.ids.next(), guild_id=guild.id, name=name, permissions=permissions, position=1)
            guild.roles[role.id] = role
            return role

    def add_member(
        self, guild: FakeGuild, user: FakeUser, *, roles: Sequence[FakeRole] = (), nick: str | None = None
    ) -> FakeMember:
        with self.lock:
            member = FakeMember(user=user, guild_id=guild.id, roles=[r.id for r in roles], nick=nick)
            guild.members[user.id] = member
            self.users[user.id] = user
            return member

    def add_channel(
        self,
        guild: FakeGuild,
        name: str,
        *,
        type: ChannelType,
        parent: FakeChannel | None,
        topic: str | None,
    ) -> FakeChannel:
        with self.lock:
            owner_id = self.bot.id if type in THREAD_TYPES else None
            channel = FakeChannel(
                id=self.ids.next(),
                type=type,
                name=name,
                guild_id=guild.id,
                parent_id=None if parent is None else parent.id,
                position=len(guild.channel_ids),
                topic=topic,
                owner_id=owner_id,
            )
            guild.channel_ids.append(channel.id)
            self.channels[channel.id] = channel
            return channel

    def dm_channel(self, user: FakeUser) -> FakeChannel:
        """The DM channel between the bot and `user`, opened on first use."""
        with self.lock:
            for channel in self.channels.values():
                if channel.type is ChannelType.DM and channel.recipients[0].id == user.id:
                    return channel
            channel = FakeChannel(id=self.ids.next(), type=ChannelType.DM, name=None, guild_id=None, recipients=[user])
            self.channels[channel.id] = channel
            return channel

    # -- looking things up -----------------------------------------------------------------
    def guild_of(self, channel: FakeChannel) -> FakeGuild | None:
        with self.lock:
            return None if channel.guild_id is None else self.guilds[channel.guild_id]

    def guilds_on_shard(self, shard_id: int, shard_count: int) -> list[FakeGuild]:
        with self.lock:
            return [g for g in self.guilds.values() if shard_for(g.id, shard_count) == shard_id]

    def permissions(self, user_id: int, channel: FakeChannel) -> int:
        """What `user_id` may do in `channel` (everything in DMs), computed as Discord documents it."""
        with self.lock:
            guild = self.guild_of(channel)
            if guild is None:
                return int(ALL_PERMISSIONS & ~Permission.ADMINISTRATOR)
            member = guild.members.get(user_id)
            if member is None:
                return 0
            base = guild.roles[guild.id].permissions
            for role_id in member.roles:
                base |= guild.roles[role_id].permissions
            if guild.owner_id == user_id or base & Permission.ADMINISTRATOR:
                return ALL_PERMISSIONS
            target = self.channels[channel.parent_id] if channel.is_thread and channel.parent_id else channel
            overwrites = {int(o["id"]): o for o in target.overwrites}
            allow = deny = 0
            for role_id in member.roles:
                if (o := overwrites.get(role_id)) is not None:
                    allow, deny = allow | int(o["allow"]), deny | int(o["deny"])
            everyone, own = overwrites.get(guild.id), overwrites.get(user_id)
            for step in (everyone, {"allow": allow, "deny": deny}, own):
                if step is not None:
                    base = (base & ~int(step["deny"])) | int(step["allow"])
            return base

    def deny(self, channel: FakeChannel, user: FakeUser, permissions: int) -> None:
        """Add a member overwrite denying `permissions` to `user` in `channel`."""
        with self.lock:
            channel.overwrites = [o for o in channel.overwrites if int(o["id"]) != user.id]
            channel.overwrites.append({"id": str(user.id), "type": 1, "allow": "0", "deny": str(permissions)})

    # -- payloads ----------------------------------------------------------------------------
    def channel_payload(self, channel: FakeChannel) -> JSON:
        with self.lock:
            history = self.channel_messages.get(channel.id)
            return channel.payload(last_message_id=history[-1] if history else None)

    def guild_payload(self, guild: FakeGuild, *, for_gateway: bool) -> JSON:
        """GET /guilds/{id}; with `for_gateway`, GUILD_CREATE's full shape (channels, threads, members)."""
        with self.lock:
            data: JSON = {
                "id": str(guild.id),
                "name": guild.name,
                "icon": None,
                "splash": None,
                "discovery_splash": None,
                "owner_id": str(guild.owner_id),
                "region": "deprecated",
                "afk_channel_id": None,
                "afk_timeout": 300,
                "verification_level": 0,
                "default_message_notifications": 1,
                "explicit_content_filter": 0,
                "roles": [r.payload() for r in guild.roles.values()],
                "emojis": [],
                "stickers": [],
                "features": [],
                "mfa_level": 0,
                "nsfw_level": 0,
                "application_id": None,
                "system_channel_id": None,
                "system_channel_flags": 0,
                "rules_channel_id": None,
                "vanity_url_code": None,
                "description": None,
                "banner": None,
                "premium_tier": 0,
                "premium_subscription_count": 0,
                "preferred_locale": "en-US",
                "public_updates_channel_id": None,
                "max_members": 500000,
                "max_video_channel_users": 25,
                "incidents_data": None,
            }
            if not for_gateway:
                return data
            channels = [self.channels[c] for c in guild.channel_ids]
            return data | {
                "joined_at": guild.members[self.bot.id].joined_at,
                "large": False,
                "unavailable": False,
                "member_count": len(guild.members),
                "members": [m.payload() for m in guild.members.values()],
                "channels": [self.channel_payload(c) for c in channels if not c.is_thread],
                "threads": [self.channel_payload(c) for c in channels if c.is_thread],
                "presences": [],
                "voice_states": [],
                "stage_instances": [],
                "guild_scheduled_events": [],
                "soundboard_sounds": [],
            }

    def attachment_payload(self, attachment_id: int, channel: FakeChannel, blob: FakeAttachment) -> JSON:
        url = f"{self.origin}/attachments/{channel.id}/{attachment_id}/{blob.filename}"
        return {
            "id": str(attachment_id),
            "filename": blob.filename,
            "description": blob.description,
            "content_type": blob.content_type,
            "size": len(blob.data),
            "url": url,
            "proxy_url": url,
            "flags": 0,
        }

    def gateway_message(self, message: JSON, *, intents: int) -> JSON:
        """MESSAGE_CREATE/UPDATE's `d`: the message plus guild_id and member; content dropped as Discord does.

        Without MESSAGE_CONTENT a bot still gets the content of DMs, of its own messages and of
        messages that mention it; elsewhere content, embeds, attachments and components are empty.
        """
        with self.lock:
            data = dict(message)
            channel = self.channels[int(message["channel_id"])]
            guild = self.guild_of(channel)
            author_id = int(message["author"]["id"])
            if guild is not None:
                data["guild_id"] = str(guild.id)
                if (member := guild.members.get(author_id)) is not None and "webhook_id" not in message:
                    data["member"] = member.payload(with_user=False)
                data["mentions"] = [self._mention_with_member(guild, m) for m in message["mentions"]]
            mentioned = any(int(m["id"]) == self.bot.id for m in message["mentions"])
            if not (intents & Intent.MESSAGE_CONTENT or guild is None or author_id == self.bot.id or mentioned):
                data |= {"content": "", "embeds": [], "attachments": [], "components": []}
            return data

    def _mention_with_member(self, guild: FakeGuild, user: JSON) -> JSON:
        member = guild.members.get(int(user["id"]))
        return user if member is None else user | {"member": member.payload(with_user=False)}

    # -- messages ----------------------------------------------------------------------------
    def create_message(
        self,
        channel: FakeChannel,
        author: FakeUser,
        *,
        content: str = "",
        mentions: Iterable[FakeUser] = (),
        allowed_mentions: JSON | None = None,
        reference: JSON | None = None,
        attachments: Sequence[FakeAttachment] = (),
        embeds: Sequence[JSON] = (),
        components: Sequence[JSON] = (),
        flags: int = 0,
        nonce: str | int | None = None,
        tts: bool = False,
        webhook_id: int | None = None,
        interaction_metadata: JSON | None = None,
        sticker_names: Sequence[str] = (),
    ) -> JSON:
        """Store a new message and return it (REST shape). `reference` must name a stored message."""
        with self.lock:
            message_id = self.ids.next()
            referenced = None if reference is None else self.messages.get(int(reference["message_id"]))
            users = {u.id: u for u in mentions}
            parse = ["users", "roles", "everyone"] if allowed_mentions is None else allowed_mentions.get("parse", [])
            parse_all = "users" in parse
            allowed_ids = {int(i) for i in (allowed_mentions or {}).get("users", [])}
            for found in _USER_MENTION.findall(content):
                if (user := self.users.get(int(found))) is not None and (parse_all or user.id in allowed_ids):
                    users.setdefault(user.id, user)
            if referenced is not None and (allowed_mentions is None or allowed_mentions.get("replied_user")):
                replied = self.users[int(referenced["author"]["id"])]
                users.setdefault(replied.id, replied)
            attachment_payloads = [self._store_blob(channel, blob) for blob in attachments]
            message: JSON = {
                "id": str(message_id),
                "channel_id": str(channel.id),
                "author": author.payload(),
                "content": content,
                "timestamp": iso_timestamp(),
                "edited_timestamp": None,
                "tts": tts,
                "mention_everyone": "everyone" in parse and ("@everyone" in content or "@here" in content),
                "mentions": [u.payload() for u in users.values()],
                "mention_roles": _ROLE_MENTION.findall(content),
                "attachments": attachment_payloads,
                "embeds": list(embeds),
                "components": list(components),
                "pinned": False,
                "type": 0 if reference is None else 19,
                "flags": int(flags),
            }
            if sticker_names:
                message["sticker_items"] = [
                    {"id": str(self.ids.next()), "name": name, "format_type": 1} for name in sticker_names
                ]
            if nonce is not None:
                message["nonce"] = nonce
            if webhook_id is not None:
                message |= {"webhook_id": str(webhook_id), "application_id": str(self.application_id)}
            if interaction_metadata is not None:
                message |= {"interaction_metadata": interaction_metadata, "type": 20}
            if reference is not None:
                message["message_reference"] = {
                    "type": int(reference.get("type") or 0),
                    "message_id": str(reference["message_id"]),
                    "channel_id": str(channel.id),
                } | ({} if channel.guild_id is None else {"guild_id": str(channel.guild_id)})
                message["referenced_message"] = referenced
            self.messages[message_id] = message
            if not flags & MessageFlag.EPHEMERAL:
                self.channel_messages.setdefault(channel.id, []).append(message_id)
            return message

    def create_from_body(
        self,
        channel: FakeChannel,
        author: FakeUser,
        body: JSON,
        files: Sequence[FakeAttachment] = (),
        *,
        webhook_id: int | None = None,
        interaction_metadata: JSON | None = None,
    ) -> JSON:
        """Validate a message body as Discord does (POST /channels/{id}/messages, interaction responses) and store it."""
        check_message_body(body, has_files=bool(files))
        with self.lock:
            reference = body.get("message_reference")
            if reference is not None:
                target = self.messages.get(int(reference.get("message_id") or 0))
                if target is None or int(target["channel_id"]) != channel.id:
                    if reference.get("fail_if_not_exists", True):
                        problem = form_error(
                            "message_reference", "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message"
                        )
                        raise DiscordHTTPError(400, problem)
                    reference = None
            return self.create_message(
                channel,
                author,
                content=body.get("content") or "",
                allowed_mentions=body.get("allowed_mentions"),
                reference=reference,
                attachments=files,
                embeds=body.get("embeds") or [],
                components=body.get("components") or [],
                flags=int(body.get("flags") or 0),
                nonce=body.get("nonce"),
                tts=bool(body.get("tts")),
                webhook_id=webhook_id,
                interaction_metadata=interaction_metadata,
            )

    def edit_message(self, message_id: int, changes: JSON, uploads: Sequence[FakeAttachment] = ()) -> JSON:
        """Apply a PATCH body (content, embeds, components, flags, attachments to keep) plus new uploads."""
        if len(changes.get("content") or "") > 2000:
            raise DiscordHTTPError(
                400, form_error("content", "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length.")
            )
        with self.lock:
            message = dict(self.messages[message_id])
            channel = self.channels[int(message["channel_id"])]
            for key in ("content", "embeds", "components"):
                if key in changes:
                    message[key] = changes[key] if changes[key] is not None else ([] if key != "content" else "")
            if "flags" in changes and changes["flags"] is not None:
                message["flags"] = int((message["flags"] & MessageFlag.EPHEMERAL) | int(changes["flags"]))
            if "attachments" in changes and changes["attachments"] is not None:
                keep = {str(a["id"]) for a in changes["attachments"]}
                message["attachments"] = [a for a in message["attachments"] if a["id"] in keep]
            message["attachments"] = message["attachments"] + [self._store_blob(channel, blob) for blob in uploads]
            message["edited_timestamp"] = iso_timestamp()
            self.messages[message_id] = message
            return message

    def _store_blob(self, channel: FakeChannel, blob: FakeAttachment) -> JSON:
        with self.lock:
            attachment_id = self.ids.next()
            self.blobs[attachment_id] = blob
            return self.attachment_payload(attachment_id, channel, blob)

    def delete_message(self, message_id: int) -> JSON:
        with self.lock:
            message = self.messages.pop(message_id)
            history = self.channel_messages.get(int(message["channel_id"]), [])
            if message_id in history:
                history.remove(message_id)
            return message

    def history(self, channel_id: int) -> list[JSON]:
        """The channel's (non-ephemeral) messages, oldest first."""
        with self.lock:
            return [self.messages[m] for m in self.channel_messages.get(channel_id, [])]


def check_message_body(body: JSON, *, has_files: bool) -> None:
    """Discord's checks on a new message: not empty, content at most 2000 characters, at most 10 embeds."""
    content = body.get("content") or ""
    if not isinstance(content, str):
        raise DiscordHTTPError(400, form_error("content", "BASE_TYPE_STRING", "Must be a string."))
    if len(content) > 2000:
        raise DiscordHTTPError(400, form_error("content", "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length."))
    embeds = body.get("embeds") or []
    if len(embeds) > 10:
        raise DiscordHTTPError(400, form_error("embeds", "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length."))
    extras = ("components", "sticker_ids", "poll")
    if not (content or embeds or has_files or any(body.get(key) for key in extras)):
        raise DiscordHTTPError.of(400, ErrorCode.CANNOT_SEND_EMPTY_MESSAGE, "Cannot send an empty message")
