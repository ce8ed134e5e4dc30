"""The fake Discord's objects: users, roles, members, channels, guilds, attachments, and their payloads.

Mutable records (the world changes under them) that render themselves the way Discord's
API v10 documents each object (`payload()`). `tests.fakes.discord_world.World` owns them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.fakes.discord_wire import JSON, THREAD_TYPES, ChannelType, iso_timestamp

__all__ = ["FakeAttachment", "FakeChannel", "FakeGuild", "FakeMember", "FakeRole", "FakeUser"]


@dataclass(slots=True, kw_only=True, eq=False)
class FakeUser:
    id: int
    username: str
    global_name: str | None = None
    bot: bool = False

    @property
    def mention(self) -> str:
        return f"<@{self.id}>"

    def payload(self) -> JSON:
        return {
            "id": str(self.id),
            "username": self.username,
            "discriminator": "0",
            "global_name": self.global_name,
            "avatar": None,
            "bot": self.bot,
            "system": False,
            "public_flags": 0,
            "flags": 0,
            "banner": None,
            "accent_color": None,
            "avatar_decoration_data": None,
        }


@dataclass(slots=True, kw_only=True, eq=False)
class FakeRole:
    id: int
    guild_id: int
    name: str
    permissions: int
    position: int = 0
    managed: bool = False

    @property
    def mention(self) -> str:
        return f"<@&{self.id}>"

    def payload(self) -> JSON:
        return {
            "id": str(self.id),
            "name": self.name,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "position": self.position,
            "permissions": str(self.permissions),
            "managed": self.managed,
            "mentionable": False,
            "flags": 0,
        }


@dataclass(slots=True, kw_only=True, eq=False)
class FakeMember:
    user: FakeUser
    guild_id: int
    roles: list[int] = field(default_factory=list)
    nick: str | None = None
    joined_at: str = field(default_factory=iso_timestamp)

    def payload(self, *, with_user: bool = True) -> JSON:
        data: JSON = {
            "nick": self.nick,
            "avatar": None,
            "banner": None,
            "roles": [str(r) for r in self.roles],
            "joined_at": self.joined_at,
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "communication_disabled_until": None,
        }
        if with_user:
            data["user"] = self.user.payload()
        return data


@dataclass(slots=True, kw_only=True, eq=False)
class FakeChannel:
    id: int
    type: ChannelType
    name: str | None
    guild_id: int | None
    parent_id: int | None = None
    position: int = 0
    topic: str | None = None
    owner_id: int | None = None
    recipients: list[FakeUser] = field(default_factory=list)
    overwrites: list[JSON] = field(default_factory=list)

    @property
    def mention(self) -> str:
        return f"<#{self.id}>"

    @property
    def is_thread(self) -> bool:
        return self.type in THREAD_TYPES

    def payload(self, *, last_message_id: int | None = None) -> JSON:
        last = None if last_message_id is None else str(last_message_id)
        if self.type is ChannelType.DM:
            return {
                "id": str(self.id),
                "type": int(self.type),
                "last_message_id": last,
                "recipients": [u.payload() for u in self.recipients],
                "flags": 0,
            }
        data: JSON = {
            "id": str(self.id),
            "type": int(self.type),
            "guild_id": str(self.guild_id),
            "name": self.name,
            "position": self.position,
            "permission_overwrites": list(self.overwrites),
            "nsfw": False,
            "parent_id": None if self.parent_id is None else str(self.parent_id),
            "topic": self.topic,
            "last_message_id": last,
            "rate_limit_per_user": 0,
            "flags": 0,
        }
        if self.is_thread:
            data |= {
                "owner_id": str(self.owner_id),
                "member_count": 1,
                "message_count": 0,
                "total_message_sent": 0,
                "thread_metadata": {
                    "archived": False,
                    "auto_archive_duration": 1440,
                    "archive_timestamp": iso_timestamp(),
                    "locked": False,
                },
            }
        return data


@dataclass(slots=True, kw_only=True, eq=False)
class FakeGuild:
    id: int
    name: str
    owner_id: int
    roles: dict[int, FakeRole] = field(default_factory=dict)
    members: dict[int, FakeMember] = field(default_factory=dict)
    channel_ids: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True)
class FakeAttachment:
    """A file on a message: what a user uploads in `dispatch_message`, or what the bot sent."""

    filename: str
    data: bytes
    content_type: str = "application/octet-stream"
    description: str | None = None
