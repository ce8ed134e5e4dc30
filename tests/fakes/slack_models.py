"""What the fake Slack workspace is made of: people, conversations, stored messages, and
Slack's error answer; plus the ids of the people and conversations a fresh workspace holds.

ALICE and BOB are members; ADMIN is a workspace admin; OWNER is the owner (and an admin).
GENERAL is public with the bot in it, RANDOM is public without the bot (`not_in_channel`),
PRIVATE is a private channel with the bot, DM_ALICE is Alice's DM with the bot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from tests.fakes.slack_wire import JSON, AppIdentity, ChannelType

__all__ = [
    "ADMIN",
    "ALICE",
    "BOB",
    "DM_ALICE",
    "GENERAL",
    "MAX_POST_TEXT",
    "MAX_STREAM_TEXT",
    "MAX_UPDATE_TEXT",
    "OWNER",
    "PRIVATE",
    "RANDOM",
    "ApiError",
    "SlackChannel",
    "SlackUser",
    "StoredMessage",
    "default_channels",
    "default_users",
]

ALICE = "U0ALICE01"
BOB = "U0BOB0001"
ADMIN = "U0ADMIN01"
OWNER = "U0OWNER01"
GENERAL = "C0GENERAL"  # public, the bot is a member
RANDOM = "C0RANDOM1"  # public, the bot is not a member
PRIVATE = "G0PRIVATE"  # private channel, the bot is a member
DM_ALICE = "D0ALICE01"  # Alice's DM with the bot

MAX_POST_TEXT = 40_000  # chat.postMessage truncates longer texts
MAX_UPDATE_TEXT = 4_000  # chat.update answers msg_too_long beyond this
MAX_STREAM_TEXT = 12_000  # per markdown_text in the streaming methods


class ApiError(Exception):
    """A Web API failure as Slack reports it: `{"ok": false, "error": error, **extra}` with `status`."""

    def __init__(
        self, error: str, *, status: int = 200, headers: dict[str, str] | None = None, extra: JSON | None = None
    ) -> None:
        super().__init__(error)
        self.error = error
        self.status = status
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def body(self) -> JSON:
        return {"ok": False, "error": self.error, **self.extra}


@dataclass(frozen=True, slots=True, kw_only=True)
class SlackUser:
    id: str
    name: str
    real_name: str
    display_name: str = ""
    is_admin: bool = False
    is_owner: bool = False
    is_bot: bool = False
    deleted: bool = False
    tz: str = "Europe/London"

    def to_wire(self, team_id: str) -> JSON:
        profile = {
            "real_name": self.real_name,
            "real_name_normalized": self.real_name,
            "display_name": self.display_name,
            "display_name_normalized": self.display_name,
            "team": team_id,
        }
        return {
            "id": self.id,
            "team_id": team_id,
            "name": self.name,
            "deleted": self.deleted,
            "real_name": self.real_name,
            "tz": self.tz,
            "is_admin": self.is_admin,
            "is_owner": self.is_owner,
            "is_primary_owner": self.is_owner,
            "is_restricted": False,
            "is_ultra_restricted": False,
            "is_bot": self.is_bot,
            "is_app_user": False,
            "profile": profile,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class SlackChannel:
    id: str
    type: ChannelType = "channel"
    name: str = ""
    user: str | None = None  # the other person of an im
    is_member: bool = True  # whether the bot is in it
    is_archived: bool = False

    def to_wire(self) -> JSON:
        wire: JSON = {
            "id": self.id,
            "created": 1_600_000_000,
            "is_channel": self.type == "channel",
            "is_group": self.type == "group",
            "is_im": self.type == "im",
            "is_mpim": self.type == "mpim",
            "is_private": self.type != "channel",
            "is_archived": self.is_archived,
            "is_general": self.id == GENERAL,
            "is_shared": False,
            "is_ext_shared": False,
            "is_org_shared": False,
        }
        if self.type == "im":
            wire |= {"user": self.user, "is_user_deleted": False, "is_open": True, "priority": 0}
        else:
            wire |= {"name": self.name, "name_normalized": self.name, "is_member": self.is_member}
        return wire


@dataclass(slots=True, kw_only=True)
class StoredMessage:
    """One message in a conversation (mutable inside the workspace; tests get copies)."""

    channel: str
    ts: str
    text: str
    user: str
    bot_id: str | None = None
    thread_ts: str | None = None
    blocks: list[JSON] = field(default_factory=list)
    files: list[JSON] = field(default_factory=list)
    chunks: list[JSON] = field(default_factory=list)  # non-text streaming chunks, in order
    metadata: JSON | None = None
    edited_ts: str | None = None
    stream: Literal["none", "streaming", "stopped"] = "none"
    reactions: dict[str, list[str]] = field(default_factory=dict)

    @property
    def is_reply(self) -> bool:
        return self.thread_ts is not None and self.thread_ts != self.ts

    def to_wire(self, app: AppIdentity, replies: list[StoredMessage] | None = None) -> JSON:
        wire: JSON = {"type": "message", "user": self.user, "text": self.text, "ts": self.ts, "team": app.team_id}
        if self.bot_id is not None:
            wire |= {"bot_id": self.bot_id, "app_id": app.app_id}
        if self.thread_ts is not None:
            wire["thread_ts"] = self.thread_ts
        if replies:
            wire |= {
                "thread_ts": self.ts,
                "reply_count": len(replies),
                "reply_users": sorted({r.user for r in replies}),
                "latest_reply": replies[-1].ts,
            }
        if self.blocks:
            wire["blocks"] = self.blocks
        if self.files:
            wire |= {"files": self.files, "upload": False}
        if self.metadata is not None:
            wire["metadata"] = self.metadata
        if self.edited_ts is not None:
            wire["edited"] = {"user": self.user, "ts": self.edited_ts}
        if self.reactions:
            wire["reactions"] = [{"name": n, "users": u, "count": len(u)} for n, u in self.reactions.items()]
        return wire


def default_users() -> list[SlackUser]:
    return [
        SlackUser(id=ALICE, name="alice", real_name="Alice Example", display_name="alice"),
        SlackUser(id=BOB, name="bob", real_name="Bob Example", display_name=""),
        SlackUser(id=ADMIN, name="ada", real_name="Ada Admin", display_name="ada", is_admin=True),
        SlackUser(id=OWNER, name="olga", real_name="Olga Owner", display_name="olga", is_admin=True, is_owner=True),
    ]


def default_channels() -> list[SlackChannel]:
    return [
        SlackChannel(id=GENERAL, name="general"),
        SlackChannel(id=RANDOM, name="random", is_member=False),
        SlackChannel(id=PRIVATE, type="group", name="private-team"),
        SlackChannel(id=DM_ALICE, type="im", user=ALICE),
    ]
