"""Discord's wire vocabulary as the fake speaks it: numbers, snowflakes, error bodies, headers.

Only what Discord documents (developer docs, API v10): gateway opcodes and close codes,
intent and permission bits, interaction and callback types, JSON error codes and the
rate-limit headers. The world's objects and their payloads live in
`tests.fakes.discord_world`; `tests.fakes.discord_server` serves both.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import IntEnum, IntFlag
from typing import Any

__all__ = [
    "API_VERSION",
    "DISCORD_EPOCH_MS",
    "JSON",
    "CallbackType",
    "ChannelType",
    "CloseCode",
    "DiscordHTTPError",
    "ErrorCode",
    "Intent",
    "InteractionType",
    "MessageFlag",
    "Op",
    "OptionType",
    "Permission",
    "Snowflakes",
    "application_flags",
    "error_body",
    "form_error",
    "iso_timestamp",
    "rate_limit_body",
    "rate_limit_headers",
    "shard_for",
    "snowflake_time_ms",
]

JSON = dict[str, Any]

API_VERSION = 10
DISCORD_EPOCH_MS = 1_420_070_400_000


class Op(IntEnum):
    """Gateway opcodes."""

    DISPATCH = 0
    HEARTBEAT = 1
    IDENTIFY = 2
    PRESENCE_UPDATE = 3
    VOICE_STATE_UPDATE = 4
    RESUME = 6
    RECONNECT = 7
    REQUEST_GUILD_MEMBERS = 8
    INVALID_SESSION = 9
    HELLO = 10
    HEARTBEAT_ACK = 11


class CloseCode(IntEnum):
    """Gateway close event codes."""

    UNKNOWN_ERROR = 4000
    UNKNOWN_OPCODE = 4001
    DECODE_ERROR = 4002
    NOT_AUTHENTICATED = 4003
    AUTHENTICATION_FAILED = 4004
    ALREADY_AUTHENTICATED = 4005
    INVALID_SEQ = 4007
    RATE_LIMITED = 4008
    SESSION_TIMED_OUT = 4009
    INVALID_SHARD = 4010
    SHARDING_REQUIRED = 4011
    INVALID_API_VERSION = 4012
    INVALID_INTENTS = 4013
    DISALLOWED_INTENTS = 4014


class Intent(IntFlag):
    """The gateway intents the fake acts on."""

    GUILDS = 1 << 0
    GUILD_MEMBERS = 1 << 1
    GUILD_PRESENCES = 1 << 8
    GUILD_MESSAGES = 1 << 9
    DIRECT_MESSAGES = 1 << 12
    MESSAGE_CONTENT = 1 << 15


PRIVILEGED_INTENTS = Intent.GUILD_MEMBERS | Intent.GUILD_PRESENCES | Intent.MESSAGE_CONTENT


def application_flags(privileged_intents: int) -> int:
    """The application's GATEWAY_PRESENCE/_GUILD_MEMBERS/_MESSAGE_CONTENT flags for the intents it may use."""
    return (
        (1 << 12 if privileged_intents & Intent.GUILD_PRESENCES else 0)
        | (1 << 14 if privileged_intents & Intent.GUILD_MEMBERS else 0)
        | (1 << 18 if privileged_intents & Intent.MESSAGE_CONTENT else 0)
    )


class Permission(IntFlag):
    """Permission bits (the subset a chat bot meets)."""

    CREATE_INSTANT_INVITE = 1 << 0
    KICK_MEMBERS = 1 << 1
    BAN_MEMBERS = 1 << 2
    ADMINISTRATOR = 1 << 3
    MANAGE_CHANNELS = 1 << 4
    MANAGE_GUILD = 1 << 5
    ADD_REACTIONS = 1 << 6
    VIEW_CHANNEL = 1 << 10
    SEND_MESSAGES = 1 << 11
    MANAGE_MESSAGES = 1 << 13
    EMBED_LINKS = 1 << 14
    ATTACH_FILES = 1 << 15
    READ_MESSAGE_HISTORY = 1 << 16
    MENTION_EVERYONE = 1 << 17
    USE_APPLICATION_COMMANDS = 1 << 31
    CREATE_PUBLIC_THREADS = 1 << 35
    SEND_MESSAGES_IN_THREADS = 1 << 38


EVERYONE_PERMISSIONS = (
    Permission.CREATE_INSTANT_INVITE
    | Permission.ADD_REACTIONS
    | Permission.VIEW_CHANNEL
    | Permission.SEND_MESSAGES
    | Permission.EMBED_LINKS
    | Permission.ATTACH_FILES
    | Permission.READ_MESSAGE_HISTORY
    | Permission.USE_APPLICATION_COMMANDS
    | Permission.CREATE_PUBLIC_THREADS
    | Permission.SEND_MESSAGES_IN_THREADS
)
"""What @everyone may do in a new guild of the fake (Discord's defaults, give or take)."""

ALL_PERMISSIONS = (1 << 51) - 1


class ChannelType(IntEnum):
    GUILD_TEXT = 0
    DM = 1
    GUILD_VOICE = 2
    GUILD_CATEGORY = 4
    GUILD_ANNOUNCEMENT = 5
    PUBLIC_THREAD = 11
    PRIVATE_THREAD = 12
    GUILD_FORUM = 15


THREAD_TYPES = frozenset({ChannelType.PUBLIC_THREAD, ChannelType.PRIVATE_THREAD})


class InteractionType(IntEnum):
    PING = 1
    APPLICATION_COMMAND = 2
    MESSAGE_COMPONENT = 3
    APPLICATION_COMMAND_AUTOCOMPLETE = 4
    MODAL_SUBMIT = 5


class CallbackType(IntEnum):
    PONG = 1
    CHANNEL_MESSAGE_WITH_SOURCE = 4
    DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE = 5
    DEFERRED_UPDATE_MESSAGE = 6
    UPDATE_MESSAGE = 7
    APPLICATION_COMMAND_AUTOCOMPLETE_RESULT = 8
    MODAL = 9


class OptionType(IntEnum):
    SUB_COMMAND = 1
    SUB_COMMAND_GROUP = 2
    STRING = 3
    INTEGER = 4
    BOOLEAN = 5
    USER = 6
    CHANNEL = 7
    ROLE = 8
    MENTIONABLE = 9
    NUMBER = 10
    ATTACHMENT = 11


class MessageFlag(IntFlag):
    SUPPRESS_EMBEDS = 1 << 2
    EPHEMERAL = 1 << 6
    LOADING = 1 << 7


class ErrorCode(IntEnum):
    """JSON error codes in Discord's error bodies."""

    UNKNOWN_APPLICATION = 10002
    UNKNOWN_CHANNEL = 10003
    UNKNOWN_GUILD = 10004
    UNKNOWN_MEMBER = 10007
    UNKNOWN_MESSAGE = 10008
    UNKNOWN_USER = 10013
    UNKNOWN_WEBHOOK = 10015
    UNKNOWN_INTERACTION = 10062
    UNKNOWN_APPLICATION_COMMAND = 10063
    INTERACTION_ALREADY_ACKNOWLEDGED = 40060
    MISSING_ACCESS = 50001
    CANNOT_EDIT_OTHERS_MESSAGE = 50005
    CANNOT_SEND_EMPTY_MESSAGE = 50006
    MISSING_PERMISSIONS = 50013
    INVALID_FORM_BODY = 50035


def error_body(code: int, message: str) -> JSON:
    """Discord's plain error body: {"message": ..., "code": ...}."""
    return {"message": message, "code": code}


class DiscordHTTPError(Exception):
    """Raised inside the fake to answer a REST call with an error status and Discord's error body."""

    def __init__(self, status: int, body: JSON) -> None:
        super().__init__(f"{status}: {body.get('message')} (code {body.get('code')})")
        self.status = status
        self.body = body

    @classmethod
    def of(cls, status: int, code: int, message: str) -> DiscordHTTPError:
        return cls(status, error_body(code, message))


def form_error(field_path: str, code: str, message: str) -> JSON:
    """A 50035 Invalid Form Body naming one field ("content", "message_reference", "0.name")."""
    errors: JSON = {"_errors": [{"code": code, "message": message}]}
    for part in reversed(field_path.split(".")):
        errors = {part: errors}
    return {"message": "Invalid Form Body", "code": ErrorCode.INVALID_FORM_BODY, "errors": errors}


def rate_limit_body(retry_after: float, *, is_global: bool) -> JSON:
    return {"message": "You are being rate limited.", "retry_after": retry_after, "global": is_global}


def rate_limit_headers(
    bucket: str, *, limit: int, remaining: int, reset_after: float, scope: str | None = None
) -> Mapping[str, str]:
    """X-RateLimit-* headers; on a 429 also Retry-After, the scope, and the `Via` discord.py checks for."""
    headers = {
        "X-RateLimit-Bucket": bucket,
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
        "X-RateLimit-Reset-After": f"{reset_after:.3f}",
    }
    if scope is not None:
        # A 429 from Discord's edge: discord.py treats one without `Via` as a Cloudflare ban.
        headers |= {"Retry-After": f"{max(1, round(reset_after))}", "X-RateLimit-Scope": scope, "Via": "1.1 google"}
        if scope == "global":
            headers["X-RateLimit-Global"] = "true"
    return headers


def iso_timestamp(when: datetime | None = None) -> str:
    """Discord's ISO8601 timestamps: "2025-01-31T12:00:00.123000+00:00"."""
    return (when or datetime.now(UTC)).isoformat(timespec="microseconds")


def snowflake_time_ms(snowflake: int) -> int:
    return (snowflake >> 22) + DISCORD_EPOCH_MS


def shard_for(guild_id: int | None, shard_count: int) -> int:
    """Which shard receives a guild's events: (guild_id >> 22) % shard_count; DMs go to shard 0."""
    return 0 if guild_id is None else (guild_id >> 22) % shard_count


class Snowflakes:
    """Real snowflakes (timestamp since the Discord epoch, worker, process, increment), unique and rising.

    Thread-safe. `next(shard=(i, n))` skips ahead (by whole milliseconds) to the first id a
    guild with that id would be sharded to shard i of n.
    """

    def __init__(self, *, worker: int = 1, process: int = 0) -> None:
        self._lock = threading.Lock()
        self._worker, self._process = worker & 0x1F, process & 0x1F
        self._last_ms = 0
        self._increment = 0

    def next(self, *, shard: tuple[int, int] | None = None) -> int:
        with self._lock:
            now_ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
            if now_ms > self._last_ms:
                self._last_ms, self._increment = now_ms, 0
            else:
                self._increment += 1
                if self._increment >= 4096:
                    self._last_ms, self._increment = self._last_ms + 1, 0
            if shard is not None:
                shard_id, shard_count = shard
                if not 0 <= shard_id < shard_count:
                    raise ValueError(f"shard {shard_id} is not one of {shard_count}")
                while self._last_ms % shard_count != shard_id:
                    self._last_ms, self._increment = self._last_ms + 1, 0
            return (self._last_ms << 22) | (self._worker << 17) | (self._process << 12) | self._increment
