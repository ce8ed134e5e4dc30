"""The settings sections of the platforms and servers membot talks through: Discord, Slack and A2A."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, PositiveInt, SecretStr, field_validator, model_validator

from bot.config.sections import Section, check_base_url

__all__ = ["A2ASettings", "DiscordSettings", "SlackMode", "SlackSettings", "is_loopback_host"]

# discord.py's own endpoints (bot.discord.urls.DISCORD; not imported here, to keep discord.py out of config).
DEFAULT_DISCORD_API_BASE_URL = "https://discord.com/api/v10"
DEFAULT_DISCORD_GATEWAY_URL = "wss://gateway.discord.gg/"
# slack_sdk's default Web API base; GovSlack's is https://slack-gov.com/api.
DEFAULT_SLACK_API_BASE_URL = "https://slack.com/api"


def _check_gateway_url(value: str) -> str:
    if not value.startswith(("ws://", "wss://")):
        raise ValueError("must be a ws:// or wss:// URL")
    return value


class DiscordSettings(Section):
    """The Discord bot: token, endpoints, sharding, and where it answers."""

    token: SecretStr | None = Field(default=None, description="bot token from the Discord developer portal")
    api_base_url: str = Field(
        default=DEFAULT_DISCORD_API_BASE_URL, description="Discord REST base, versioned (a local emulator in tests)"
    )
    gateway_url: str = Field(default=DEFAULT_DISCORD_GATEWAY_URL, description="Discord gateway websocket")
    shard_ids: tuple[int, ...] | None = Field(
        default=None, description="shards this process runs (JSON list); unset: all (needs shard_count)"
    )
    shard_count: PositiveInt | None = Field(
        default=None, le=100_000, description="total shards across processes; unset: Discord's recommendation"
    )
    message_content_intent: bool = Field(
        default=True, description="ask for the privileged message content intent (enable it in the portal)"
    )
    free_response_channels: tuple[int, ...] = Field(
        default=(), description="channel ids where the bot answers every message, not only mentions"
    )
    allow_bots: bool = Field(default=False, description="answer messages from other bots")
    allowed_channels: tuple[int, ...] = Field(default=(), description="if set, answer only in these channels")
    blocked_channels: tuple[int, ...] = Field(default=(), description="never answer in these channels")
    allowed_roles: tuple[int, ...] = Field(default=(), description="if set (or allowed_users), answer only these roles")
    blocked_roles: tuple[int, ...] = Field(default=(), description="never answer members with these roles")
    allowed_users: tuple[int, ...] = Field(default=(), description="if set (or allowed_roles), answer only these users")
    blocked_users: tuple[int, ...] = Field(default=(), description="never answer these users")
    application_id: PositiveInt | None = Field(
        default=None,
        lt=2**63,  # a snowflake
        description="application id for `membot discord invite-url`; unset: read from the token",
    )
    admin_permission: Literal["manage_guild", "administrator", "manage_channels", "manage_messages"] = Field(
        default="manage_guild", description="server permission a member needs for the `/memory` admin commands"
    )
    sync_commands: bool | None = Field(
        default=None,
        description="register slash commands with Discord at start-up; unset: if this process runs shard 0",
    )
    max_attachment_bytes: PositiveInt = Field(
        default=5_000_000,
        le=500_000_000,  # Discord's own largest upload
        description="largest text or PDF attachment saved to archival memory on request",
    )

    _api_base_url = field_validator("api_base_url")(check_base_url)
    _gateway_url = field_validator("gateway_url")(_check_gateway_url)

    @model_validator(mode="after")
    def _shards_fit(self) -> DiscordSettings:
        if self.shard_ids is not None:
            if self.shard_count is None:
                raise ValueError("shard_ids needs shard_count (the total across processes)")
            if not self.shard_ids or any(not 0 <= i < self.shard_count for i in self.shard_ids):
                raise ValueError(f"shard_ids must be between 0 and shard_count - 1 ({self.shard_count - 1})")
        return self


SlackMode = Literal["socket", "http"]


def _check_token_prefix(prefixes: tuple[str, ...], kind: str) -> Callable[[SecretStr | None], SecretStr | None]:
    def check(value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(prefixes):
            raise ValueError(f"must be {kind} ({prefixes[0]}...)")
        return value

    return check


class SlackSettings(Section):
    """The Slack app: tokens (which ones are set picks Socket Mode or HTTP mode), endpoint, admins."""

    bot_token: SecretStr | None = Field(default=None, description="bot token (xoxb-...) from OAuth & Permissions")
    app_token: SecretStr | None = Field(
        default=None, description="app-level token (xapp-..., connections:write): set it for Socket Mode"
    )
    signing_secret: SecretStr | None = Field(
        default=None, description="signing secret from Basic Information: set it (without app_token) for HTTP mode"
    )
    api_base_url: str = Field(
        default=DEFAULT_SLACK_API_BASE_URL,
        description="Slack Web API base (GovSlack: `https://slack-gov.com/api`; a proxy; an emulator in tests)",
    )
    host: str = Field(default="0.0.0.0", description="address HTTP mode listens on")
    port: int = Field(default=3000, ge=0, le=65535, description="port HTTP mode listens on (0: any free port)")
    path: str = Field(
        default="/slack/events", description="path of the Request URLs (events, slash command, interactivity)"
    )
    admin_users: tuple[str, ...] = Field(
        default=(), description="user ids (U...) allowed to run /membot besides workspace admins and owners"
    )
    allow_bots: bool = Field(default=False, description="answer messages from other bots and apps")
    stream_replies: bool = Field(
        default=True, description="post long replies as one streamed message (chat.startStream) where Slack allows"
    )

    _api_base_url = field_validator("api_base_url")(check_base_url)
    _bot_token = field_validator("bot_token")(_check_token_prefix(("xoxb-", "xoxe.xoxb-"), "a bot token"))
    _app_token = field_validator("app_token")(_check_token_prefix(("xapp-",), "an app-level token"))

    @field_validator("path")
    @classmethod
    def _absolute_path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with /")
        return value

    @property
    def mode(self) -> SlackMode | None:
        """Socket Mode when an app token is set, else HTTP mode when a signing secret is; None: neither."""
        if self.app_token is not None:
            return "socket"
        if self.signing_secret is not None:
            return "http"
        return None


_A2A_AGENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")


def is_loopback_host(host: str) -> bool:
    """Whether `host` (a name or an address) is this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class A2ASettings(Section):
    """The A2A server (`membot serve a2a`, or beside the platforms in `membot run`): which agents
    other agents may talk to, where it listens, and the bearer tokens callers must send."""

    agents: tuple[str, ...] = Field(
        default=(), description="agent names exposed over A2A, one agent card each (JSON list); none by default"
    )
    host: str = Field(default="127.0.0.1", min_length=1, description="address the A2A server listens on")
    port: int = Field(default=8390, ge=0, le=65535, description="port the A2A server listens on (0: any free port)")
    token: SecretStr | None = Field(
        default=None, description="bearer token A2A callers must send; required (or callers) unless bound to loopback"
    )
    callers: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="named bearer tokens (JSON object, name to token): a caller using one speaks under that name",
    )
    public_url: str | None = Field(
        default=None, description="URL callers reach the server at, for the agent cards; unset: `http://host:port`"
    )
    max_message_chars: int = Field(
        default=32_000, ge=1, le=1_000_000, description="longest A2A message accepted (characters of text)"
    )
    max_message_parts: int = Field(
        default=100, ge=1, le=1000, description="most parts one A2A message may have (they become one message)"
    )
    turn_timeout_s: float = Field(
        default=300.0, gt=0, le=3600, description="seconds an A2A request waits for its turn to finish"
    )

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        return None if value is None else check_base_url(value)

    @field_validator("agents")
    @classmethod
    def _agent_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not _A2A_AGENT_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not an agent name usable in a URL (letters, digits, . _ : -)")
        if len(set(value)) != len(value):
            raise ValueError("lists an agent twice")
        return value

    @field_validator("callers")
    @classmethod
    def _caller_names(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, token in value.items():
            if not name.strip() or len(name) > 100:
                raise ValueError(f"caller name {name!r} must be 1 to 100 characters")
            if not token.get_secret_value():
                raise ValueError(f"caller {name!r} has an empty token")
        if len({t.get_secret_value() for t in value.values()}) != len(value):
            raise ValueError("two callers share a token: each caller needs its own")
        return value

    @property
    def is_authenticated(self) -> bool:
        """Callers must send a bearer token (one is configured)."""
        return self.token is not None or bool(self.callers)

    @model_validator(mode="after")
    def _token_off_loopback(self) -> A2ASettings:
        # Reachable from anything but this machine: listening elsewhere, or published (behind a proxy).
        if not self.is_authenticated and not is_loopback_host(self.host):
            raise ValueError(
                f"a bearer token (MEMBOT_A2A__TOKEN or MEMBOT_A2A__CALLERS) is required when the A2A server "
                f"listens on {self.host}"
            )
        published = urlsplit(self.public_url).hostname if self.public_url is not None else None
        if not self.is_authenticated and published is not None and not is_loopback_host(published):
            raise ValueError(
                f"a bearer token (MEMBOT_A2A__TOKEN or MEMBOT_A2A__CALLERS) is required when the A2A server "
                f"is published at {self.public_url}"
            )
        if self.token is not None and self.token in self.callers.values():
            raise ValueError("MEMBOT_A2A__TOKEN is also a caller's token: give each its own")
        return self
