"""Settings: one typed object, built once by the CLI and passed down (shared/STYLE.md §6).

`load_settings()` merges, highest priority first:

1. explicit overrides from the command line (a dict, nested or with dotted keys),
2. environment variables (``MEMBOT_`` prefix, ``__`` between levels: ``MEMBOT_LLM__MODEL``),
   plus the standard unprefixed ``OPENAI_BASE_URL``, ``OPENAI_API_KEY``, ``MONGODB_URI``, ``DISCORD_TOKEN``
   and Bolt's ``SLACK_BOT_TOKEN``, ``SLACK_APP_TOKEN``, ``SLACK_SIGNING_SECRET`` and ``PORT``,
3. a ``.env`` file (same names),
4. a TOML file: ``--config PATH``, else ``$MEMBOT_CONFIG``, else
   ``$XDG_CONFIG_HOME/membot/config.toml`` when it exists (tables ``[llm]``, ``[agent]``, ...),
5. the defaults below.

Within one source a ``MEMBOT_`` name beats its standard twin, so ``MEMBOT_LLM__BASE_URL``
wins over ``OPENAI_BASE_URL`` set beside it. Secrets come by value or, like llmcord, by
naming the variable that holds them (``api_key_env``). Every problem becomes one
`ConfigError` line naming the setting and where it came from. Nothing here runs at import.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from bot.errors import ConfigError

__all__ = [
    "A2ASettings",
    "AgentSettings",
    "BudgetSettings",
    "DiscordSettings",
    "EmbeddingSettings",
    "EvalSettings",
    "LLMSettings",
    "OpsSettings",
    "PrivacySettings",
    "RuntimeSettings",
    "SettingDoc",
    "Settings",
    "SlackSettings",
    "StoreSettings",
    "context_window_for",
    "default_config_file",
    "default_data_dir",
    "explain_validation_error",
    "load_settings",
    "render_settings_table",
    "settings_reference",
]

ENV_PREFIX = "MEMBOT_"
DEFAULT_LLM_BASE_URL = "https://api.openai.com/v1"
DEFAULT_MODEL = "gpt-4o-mini"
DEFAULT_CONTEXT_WINDOW = 128_000
# discord.py's own endpoints (bot.discord_urls.DISCORD; not imported here, to keep discord.py out of config).
DEFAULT_DISCORD_API_BASE_URL = "https://discord.com/api/v10"
DEFAULT_DISCORD_GATEWAY_URL = "wss://gateway.discord.gg/"
# slack_sdk's default Web API base; GovSlack's is https://slack-gov.com/api.
DEFAULT_SLACK_API_BASE_URL = "https://slack.com/api"

# Longest prefix wins; a provider prefix such as "openai/" is ignored. Local servers
# (Ollama, LM Studio, vLLM) choose their own window, so their models are not listed.
_KNOWN_CONTEXT_WINDOWS: tuple[tuple[str, int], ...] = (
    ("gpt-3.5-turbo", 16_385),
    ("gpt-4", 8_192),
    ("gpt-4-32k", 32_768),
    ("gpt-4-turbo", 128_000),
    ("gpt-4o", 128_000),
    ("gpt-4.1", 1_047_576),
    ("gpt-4.5", 128_000),
    ("gpt-5", 400_000),
    ("o1", 200_000),
    ("o1-mini", 128_000),
    ("o1-preview", 128_000),
    ("o3", 200_000),
    ("o4-mini", 200_000),
    ("claude-", 200_000),
    ("gemini-1.5-flash", 1_048_576),
    ("gemini-1.5-pro", 2_097_152),
    ("gemini-2", 1_048_576),
)

# The standard names other tools use, mapped to our nested settings.
_STANDARD_NAMES: Mapping[str, tuple[str, str]] = {
    "OPENAI_BASE_URL": ("llm", "base_url"),
    "OPENAI_API_KEY": ("llm", "api_key"),
    "MONGODB_URI": ("store", "mongodb_uri"),
    "DISCORD_TOKEN": ("discord", "token"),
    "SLACK_BOT_TOKEN": ("slack", "bot_token"),
    "SLACK_APP_TOKEN": ("slack", "app_token"),
    "SLACK_SIGNING_SECRET": ("slack", "signing_secret"),
    "PORT": ("slack", "port"),
}

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def context_window_for(model: str) -> int:
    """The context window of a well-known hosted model, else `DEFAULT_CONTEXT_WINDOW`."""
    name = model.rsplit("/", 1)[-1].lower()
    matches = [(len(prefix), window) for prefix, window in _KNOWN_CONTEXT_WINDOWS if name.startswith(prefix)]
    return max(matches)[1] if matches else DEFAULT_CONTEXT_WINDOW


def _xdg_dir(variable: str, fallback: str) -> Path:
    # The XDG spec says relative values are invalid and must be ignored.
    value = os.environ.get(variable, "")
    if value and Path(value).is_absolute():
        return Path(value)
    return Path.home() / fallback


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/membot``, falling back to ``~/.local/share/membot``."""
    return _xdg_dir("XDG_DATA_HOME", ".local/share") / "membot"


def default_config_file() -> Path:
    """``$XDG_CONFIG_HOME/membot/config.toml``, falling back to ``~/.config``."""
    return _xdg_dir("XDG_CONFIG_HOME", ".config") / "membot" / "config.toml"


class _Section(BaseModel):
    # Unknown keys are errors so a typo in config.toml or MEMBOT_LLM__MODLE is caught.
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_base_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return value.rstrip("/")


def _check_env_name(value: str | None) -> str | None:
    if value is not None and not _ENV_NAME.match(value):
        raise ValueError("must be the name of an environment variable (letters, digits, underscores)")
    return value


class LLMSettings(_Section):
    """The OpenAI-compatible chat endpoint (OpenAI, Azure, vLLM, Ollama, LM Studio)."""

    base_url: str = Field(default=DEFAULT_LLM_BASE_URL, description="OpenAI-compatible endpoint, up to `/v1`")
    api_key: SecretStr | None = Field(default=None, description="API key (local servers accept any value)")
    api_key_env: str | None = Field(
        default=None, description="name of another variable holding the key; wins over api_key"
    )
    model: str = Field(default=DEFAULT_MODEL, min_length=1, description="chat model name as the endpoint knows it")
    context_window: PositiveInt = Field(
        default=DEFAULT_CONTEXT_WINDOW, description="prompt + reply tokens the model accepts"
    )
    max_output_tokens: PositiveInt = Field(default=1024, description="cap on tokens per reply")
    timeout_s: float = Field(default=60.0, gt=0, le=3600, description="seconds before one request is abandoned")
    max_retries: int = Field(default=3, ge=0, le=20, description="retries on 429, 5xx, timeouts and connection errors")
    stream: bool = Field(default=False, description="stream replies from the endpoint")

    _base_url = field_validator("base_url")(_check_base_url)
    _api_key_env = field_validator("api_key_env")(_check_env_name)

    @model_validator(mode="before")
    @classmethod
    def _known_context_window(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("context_window") is None:
            model = data.get("model", DEFAULT_MODEL)
            if isinstance(model, str):
                return {**data, "context_window": context_window_for(model)}
        return data

    @model_validator(mode="after")
    def _reply_fits(self) -> LLMSettings:
        if self.max_output_tokens >= self.context_window:
            raise ValueError(
                f"max_output_tokens ({self.max_output_tokens}) must be smaller than context_window ({self.context_window})"
            )
        return self


class EmbeddingSettings(_Section):
    """The `/v1/embeddings` endpoint for archival memory; without a model, archival uses full-text search."""

    base_url: str = Field(description="OpenAI-compatible `/v1/embeddings` endpoint")
    api_key: SecretStr | None = Field(default=None, description="API key for the embeddings endpoint")
    api_key_env: str | None = Field(
        default=None, description="name of another variable holding the key; wins over api_key"
    )
    model: str | None = Field(
        default=None, min_length=1, description="embedding model; unset means archival uses text search"
    )
    batch_size: int = Field(default=64, ge=1, le=2048, description="texts per embeddings request")

    _base_url = field_validator("base_url")(_check_base_url)
    _api_key_env = field_validator("api_key_env")(_check_env_name)


class AgentSettings(_Section):
    """How agents are created and how the loop manages their context."""

    persona: str = Field(default="sam", min_length=1, description="persona template for new agents (name or path)")
    human: str = Field(default="basic", min_length=1, description="human template for new agents (name or path)")
    core_block_limit: int = Field(default=2000, ge=100, description="characters per core memory block")
    max_chained_steps: int = Field(default=10, ge=1, le=100, description="LLM steps one turn may chain via heartbeats")
    memory_warning_fraction: float = Field(
        default=0.75, ge=0.1, le=0.95, description="context fill that triggers the memory pressure warning"
    )
    keep_last_messages: int = Field(default=6, ge=1, description="newest messages never evicted into the summary")
    evict_fraction: float = Field(
        default=0.5, ge=0.1, le=0.9, description="share of the message queue evicted at the limit"
    )
    login_gap_minutes: int = Field(default=60, ge=1, description="silence after which a message counts as a new login")
    max_user_message_chars: int = Field(
        default=8000, ge=100, description="longer user messages are truncated for the model; recall keeps them whole"
    )


class StoreSettings(_Section):
    """Where agents, memory and the inbox live."""

    kind: Literal["sqlite", "mongodb"] = Field(default="sqlite", description="storage backend")
    sqlite_path: Path = Field(description="SQLite database file")
    mongodb_uri: SecretStr | None = Field(default=None, description="MongoDB connection string")
    mongodb_database: str = Field(default="membot", min_length=1, max_length=63, description="MongoDB database name")
    mongodb_wait_s: float = Field(
        default=0.0, ge=0, le=3600, description="at start-up, wait this long for MongoDB to come up (0: fail at once)"
    )

    @model_validator(mode="before")
    @classmethod
    def _kind_follows_uri(cls, data: Any) -> Any:
        # A MongoDB URI alone is enough to choose MongoDB; an explicit kind still wins.
        if isinstance(data, Mapping) and "kind" not in data and data.get("mongodb_uri"):
            return {**data, "kind": "mongodb"}
        return data

    @field_validator("sqlite_path")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("mongodb_uri")
    @classmethod
    def _mongodb_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        # The message must not echo the URI: it may carry a password.
        if value is not None and not value.get_secret_value().startswith(("mongodb://", "mongodb+srv://")):
            raise ValueError("must start with mongodb:// or mongodb+srv://")
        return value

    @field_validator("mongodb_database")
    @classmethod
    def _database_name(cls, value: str) -> str:
        if any(char in value for char in '/\\. "$\0'):
            raise ValueError('must not contain / \\ . space " $ or NUL')
        return value

    @model_validator(mode="after")
    def _mongodb_needs_uri(self) -> StoreSettings:
        if self.kind == "mongodb" and self.mongodb_uri is None:
            raise ValueError("kind is mongodb but no MongoDB URI is set (MEMBOT_STORE__MONGODB_URI or MONGODB_URI)")
        return self


class RuntimeSettings(_Section):
    """How many agents run at once, how replicas share them, and reflection between sessions."""

    max_concurrent_llm_calls: int = Field(
        default=16, ge=1, le=1024, description="LLM calls in flight at once across all agents of this replica"
    )
    lease_ttl_s: float = Field(
        default=60.0,
        ge=5,
        le=3600,
        description="seconds an agent's lease lasts unless renewed (a dead replica's agents move after this)",
    )
    heartbeat_tick_s: float = Field(
        default=30.0, ge=1, le=3600, description="seconds between heartbeat scheduler ticks"
    )
    reflection_idle_minutes: int = Field(
        default=30, ge=1, description="quiet minutes after a conversation before the agent reflects"
    )
    reflection_min_period_hours: float = Field(
        default=6.0, ge=0, description="hours at least between two reflections of one agent"
    )
    reflection_daily_tokens_per_agent: int = Field(
        default=50_000, ge=0, description="reflection tokens one agent may spend per UTC day (0: reflection off)"
    )
    reflection_daily_tokens_per_server: int = Field(
        default=500_000, ge=0, description="reflection tokens one server's agents may spend per UTC day (0: no cap)"
    )


class OpsSettings(_Section):
    """The health, readiness and metrics server that `membot run` starts (never `membot chat`)."""

    http_host: str = Field(
        default="127.0.0.1",
        min_length=1,
        description="address `/healthz`, `/readyz` and `/metrics` listen on (0.0.0.0 in containers)",
    )
    http_port: int = Field(
        default=8080, ge=0, le=65535, description="port of `/healthz`, `/readyz` and `/metrics` (0: no server)"
    )
    llm_ready_window_s: float = Field(
        default=300.0,
        ge=0,
        le=86_400,
        description="`/readyz` wants an LLM answer (a call, else a probe) this recent, in seconds (0: LLM not checked)",
    )
    ready_timeout_s: float = Field(
        default=3.0, gt=0, le=60, description="seconds each readiness check (store ping, LLM probe) may take"
    )


class BudgetSettings(_Section):
    """Daily LLM token budgets; once one is spent the bot says so once and stops calling the LLM for it."""

    daily_tokens_per_server: int = Field(
        default=0, ge=0, description="LLM tokens one server or workspace may spend per UTC day (0: no cap)"
    )
    daily_tokens_per_user: int = Field(
        default=0, ge=0, description="LLM tokens answering one user may cost per UTC day, everywhere (0: no cap)"
    )


class PrivacySettings(_Section):
    """How long recall keeps messages: past the retention period they are summarised, then deleted."""

    retention_days: PositiveInt | None = Field(
        default=None,
        description="recall messages older than this many days are folded into the agent's summary and deleted; "
        "unset: kept forever",
    )
    retention_sweep_hours: float = Field(
        default=6.0, gt=0, le=168, description="hours between two retention sweeps over every agent"
    )
    inbox_keep_hours: float = Field(
        default=24.0,
        ge=1,
        le=24 * 90,
        description="answered events (with their text) stay in the inbox this long, to drop re-deliveries",
    )


def _check_gateway_url(value: str) -> str:
    if not value.startswith(("ws://", "wss://")):
        raise ValueError("must be a ws:// or wss:// URL")
    return value


class DiscordSettings(_Section):
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
        default=None, description="total shards across processes; unset: Discord's recommendation"
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
        default=None, description="application id for `membot discord invite-url`; unset: read from the token"
    )
    admin_permission: Literal["manage_guild", "administrator", "manage_channels", "manage_messages"] = Field(
        default="manage_guild", description="server permission a member needs for the `/memory` admin commands"
    )
    sync_commands: bool | None = Field(
        default=None,
        description="register slash commands with Discord at start-up; unset: if this process runs shard 0",
    )
    max_attachment_bytes: PositiveInt = Field(
        default=5_000_000, description="largest text or PDF attachment saved to archival memory on request"
    )

    _api_base_url = field_validator("api_base_url")(_check_base_url)
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


class SlackSettings(_Section):
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

    _api_base_url = field_validator("api_base_url")(_check_base_url)
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


def _is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class A2ASettings(_Section):
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
    turn_timeout_s: float = Field(
        default=300.0, gt=0, le=3600, description="seconds an A2A request waits for its turn to finish"
    )

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        return None if value is None else _check_base_url(value)

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
        if not self.is_authenticated and not _is_loopback_host(self.host):
            raise ValueError(
                f"a bearer token (MEMBOT_A2A__TOKEN or MEMBOT_A2A__CALLERS) is required when the A2A server "
                f"listens on {self.host}"
            )
        if self.token is not None and self.token in self.callers.values():
            raise ValueError("MEMBOT_A2A__TOKEN is also a caller's token: give each its own")
        return self


# Set by load_settings for the duration of one Settings() call: the TOML file to read.
_TOML_FILE: ContextVar[Path | None] = ContextVar("membot_toml_file", default=None)


#: LoCoMo's data file at the commit `membot eval locomo` is pinned to (checked by SHA-256 after download).
LOCOMO_URL = "https://github.com/snap-research/LoCoMo/raw/3eb6f2c/data/locomo10.json"


class EvalSettings(_Section):
    """`membot eval`: where benchmark data comes from and which model grades answers."""

    locomo_url: str = Field(
        default=LOCOMO_URL, description="where `membot eval locomo` downloads LoCoMo (checked by SHA-256)"
    )
    judge_model: str | None = Field(
        default=None, min_length=1, description="model that grades QA answers; unset: `llm.model`"
    )

    _locomo_url = field_validator("locomo_url")(_check_base_url)


class _StandardNamesSource(PydanticBaseSettingsSource):
    """The standard names (`_STANDARD_NAMES`: OPENAI_API_KEY, DISCORD_TOKEN, SLACK_BOT_TOKEN, ...) from one
    set of variables, nested where they belong.

    pydantic-settings applies aliases only to top-level fields, so the mapping is done here;
    it runs just below the MEMBOT_ names of the same source.
    """

    def __init__(self, settings_cls: type[BaseSettings], variables: Mapping[str, str | None]) -> None:
        super().__init__(settings_cls)
        self._variables = {name.upper(): value for name, value in variables.items()}

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ maps whole names

    def __call__(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for name, (section, key) in _STANDARD_NAMES.items():
            value = self._variables.get(name)
            if value:
                data.setdefault(section, {})[key] = value
        return data


class Settings(BaseSettings):
    """Every setting of membot.

    Build it with `load_settings()`: it adds the TOML and ``.env`` sources, resolves
    ``api_key_env`` and turns validation errors into `ConfigError`. A bare ``Settings()``
    reads only the environment and leaves ``api_key_env`` unresolved.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        env_ignore_empty=True,
        case_sensitive=False,
        env_file=None,  # only load_settings names a .env file
        extra="ignore",  # a .env file may hold other programs' variables
        frozen=True,
    )

    llm: LLMSettings = Field(default_factory=LLMSettings)
    embeddings: EmbeddingSettings = Field(default_factory=lambda: EmbeddingSettings(base_url=DEFAULT_LLM_BASE_URL))
    agent: AgentSettings = Field(default_factory=AgentSettings)
    store: StoreSettings = Field(
        default_factory=lambda: StoreSettings(sqlite_path=default_data_dir() / "membot.sqlite3")
    )
    runtime: RuntimeSettings = Field(default_factory=RuntimeSettings)
    ops: OpsSettings = Field(default_factory=OpsSettings)
    budget: BudgetSettings = Field(default_factory=BudgetSettings)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    discord: DiscordSettings = Field(default_factory=DiscordSettings)
    slack: SlackSettings = Field(default_factory=SlackSettings)
    a2a: A2ASettings = Field(default_factory=A2ASettings)
    eval: EvalSettings = Field(default_factory=EvalSettings)
    data_dir: Path = Field(
        default_factory=default_data_dir, description="user data: `personas/`, `humans/`, the SQLite file"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO", description="logging threshold")
    debug: bool = Field(default=False, description="debug logs (message text only with log_content)")
    log_format: Literal["auto", "json", "text"] = Field(
        default="auto", description="log lines as JSON or text; auto: JSON unless standard error is a terminal"
    )
    log_content: bool = Field(
        default=False, description="let logs show message text and LLM payloads (secrets stay hidden)"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        dotenv_vars: Mapping[str, str | None] = getattr(dotenv_settings, "env_vars", {})
        sources: list[PydanticBaseSettingsSource] = [
            init_settings,
            env_settings,
            _StandardNamesSource(settings_cls, os.environ),
            dotenv_settings,
            _StandardNamesSource(settings_cls, dotenv_vars),
        ]
        toml_file = _TOML_FILE.get()
        if toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)

    @model_validator(mode="before")
    @classmethod
    def _derived_defaults(cls, data: Any) -> Any:
        """Defaults that follow other settings: embeddings follow llm, the SQLite file lives in data_dir."""
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        llm = data.get("llm")
        llm = llm if isinstance(llm, Mapping) else {}
        embeddings = data.get("embeddings", {})
        if isinstance(embeddings, Mapping):
            embeddings = dict(embeddings)
            if embeddings.get("base_url") is None:
                embeddings["base_url"] = llm.get("base_url", DEFAULT_LLM_BASE_URL)
                # Only share the key with the same endpoint: never send one provider's key to another host.
                if "api_key" not in embeddings and "api_key_env" not in embeddings and llm.get("api_key"):
                    embeddings["api_key"] = llm["api_key"]
            data["embeddings"] = embeddings
        store = data.get("store", {})
        if isinstance(store, Mapping) and store.get("sqlite_path") is None:
            data_dir = data.get("data_dir") or default_data_dir()
            data["store"] = {**store, "sqlite_path": Path(str(data_dir)).expanduser() / "membot.sqlite3"}
        return data

    @field_validator("data_dir")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    def describe(self) -> dict[str, Any]:
        """Every setting as plain data for `membot doctor` and debug logs; secrets read ``***``."""
        return _redacted(self)


def _redacted(model: BaseModel) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            result[name] = _redacted(value)
        elif isinstance(value, SecretStr):
            result[name] = "***"
        elif isinstance(value, Path):
            result[name] = str(value)
        else:
            result[name] = value
    return result


# --- loading -----------------------------------------------------------------------------------


def load_settings(
    config_file: Path | None = None,
    *,
    env_file: Path | None = Path(".env"),
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build the one `Settings` for this process, or raise a one-line `ConfigError`.

    ``overrides`` come from command-line flags: ``{"llm.model": "x"}`` or ``{"llm": {"model": "x"}}``.
    ``config_file`` is ``--config``; without it ``$MEMBOT_CONFIG``, then the XDG default if it exists.
    """
    toml_file = _choose_config_file(config_file)
    toml_data = _read_toml(toml_file) if toml_file is not None else {}
    nested_overrides = _nest(overrides or {})
    dotenv_vars = _read_dotenv(env_file)
    origins = _Origins(
        overrides=nested_overrides,
        environ=dict(os.environ),
        env_file=env_file,
        dotenv=dotenv_vars,
        toml_file=toml_file,
        toml=toml_data,
    )
    for key in toml_data:
        if key not in Settings.model_fields:
            raise ConfigError(f"{key} (from {toml_file}): {_unknown_setting(key, Settings.model_fields)}")

    settings = _build(nested_overrides, env_file=env_file, toml_file=toml_file, origins=origins)
    keys = _keys_from_indirection(settings, dotenv_vars, origins)
    if keys:
        # Rebuild so the key takes part in validation and the embeddings defaults.
        settings = _build(_deep_merge(keys, nested_overrides), env_file=env_file, toml_file=toml_file, origins=origins)
    return settings


def _build(overrides: dict[str, Any], *, env_file: Path | None, toml_file: Path | None, origins: _Origins) -> Settings:
    token = _TOML_FILE.set(toml_file)
    try:
        # _env_file is a BaseSettings init option that the dataclass-style signature does not show.
        options: dict[str, Any] = {**overrides, "_env_file": env_file}
        return Settings(**options)
    except ValidationError as error:
        raise ConfigError(_explain(error, origins)) from None
    finally:
        _TOML_FILE.reset(token)


def _choose_config_file(config_file: Path | None) -> Path | None:
    explicit = config_file if config_file is not None else os.environ.get("MEMBOT_CONFIG") or None
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.exists():
            raise ConfigError(f"config file {path} does not exist")
        if not path.is_file():
            raise ConfigError(f"config file {path} is not a file")
        return path
    default = default_config_file()
    return default if default.is_file() else None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {path} is not valid TOML: {_toml_problem(error)}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"config file {path} is not valid UTF-8 (byte offset {error.start})") from None
    except OSError as error:
        raise ConfigError(f"config file {path} cannot be read: {error.strerror}") from None


def _toml_problem(error: tomllib.TOMLDecodeError) -> str:
    # tomllib says "Expected '=' ... (at line 3, column 7)"; put the position first.
    match = re.fullmatch(r"(?s)(.*) \(at line (\d+), column (\d+)\)", str(error))
    if match is None:
        return str(error)
    message, line, column = match.groups()
    return f"line {line}, column {column}: {message}"


def _read_dotenv(env_file: Path | None) -> dict[str, str]:
    if env_file is None or not env_file.is_file():
        return {}
    # Read with pydantic-settings' own parser, names as written, so both readings agree.
    source = DotEnvSettingsSource(Settings, env_file=env_file, case_sensitive=True)
    return {name: value for name, value in source.env_vars.items() if value}


def _keys_from_indirection(settings: Settings, dotenv_vars: Mapping[str, str], origins: _Origins) -> dict[str, Any]:
    keys: dict[str, Any] = {}
    sections: dict[str, LLMSettings | EmbeddingSettings] = {"llm": settings.llm, "embeddings": settings.embeddings}
    for section_name, section in sections.items():
        variable = section.api_key_env
        if variable is None:
            continue
        value = os.environ.get(variable) or dotenv_vars.get(variable)
        if not value:
            where = origins.describe((section_name, "api_key_env"))
            raise ConfigError(f"{where}: names the variable {variable}, which is not set (nor in the .env file)")
        keys[section_name] = {"api_key": value}
    return keys


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, last = key.split(".")
        target = nested
        for parent in parents:
            target = target.setdefault(parent, {})
        if isinstance(value, Mapping) and isinstance(target.get(last), dict):
            target[last] = _deep_merge(target[last], value)
        else:
            target[last] = dict(value) if isinstance(value, Mapping) else value
    return nested


def _deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``top`` wins, nested dicts merge."""
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


# --- error messages ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _Origins:
    """What each source said, to name where a bad value came from."""

    overrides: Mapping[str, Any]
    environ: Mapping[str, str]
    env_file: Path | None
    dotenv: Mapping[str, str]
    toml_file: Path | None
    toml: Mapping[str, Any]

    def describe(self, loc: tuple[str, ...]) -> str:
        """``MEMBOT_AGENT__MAX_CHAINED_STEPS (from the environment)`` or ``agent.x (from /path/config.toml)``."""
        dotted = ".".join(loc)
        env_name = _env_name(loc)
        standard = next((name for name, target in _STANDARD_NAMES.items() if target == loc), None)
        # A section (llm, store, ...) is named by a source only when that source gave it a non-table value.
        is_section = _model_at(loc) is not None
        if _given(self.overrides, loc, is_section):
            return f"{dotted} (from the command line)"
        for variables, label in ((self.environ, "the environment"), (self.dotenv, str(self.env_file))):
            if env_name in {name.upper() for name in variables}:
                return f"{env_name} (from {label})"
            if standard is not None and standard in variables:
                return f"{standard} (from {label})"
        if _given(self.toml, loc, is_section):
            return f"{dotted} (from {self.toml_file})"
        return dotted if is_section else env_name


def _env_name(loc: tuple[str, ...]) -> str:
    return ENV_PREFIX + "__".join(loc).upper()


def _given(data: Mapping[str, Any], loc: tuple[str, ...], is_section: bool) -> bool:
    current: Any = data
    for key in loc:
        if not isinstance(current, Mapping) or key not in current:
            return False
        current = current[key]
    return not (is_section and isinstance(current, Mapping))


# Values copied from another setting: their errors repeat the original's, so only the original is reported.
_DERIVED_FROM: Mapping[tuple[str, ...], tuple[str, ...]] = {
    ("embeddings", "base_url"): ("llm", "base_url"),
    ("embeddings", "api_key"): ("llm", "api_key"),
}


def explain_validation_error(error: ValidationError) -> str:
    """Turn pydantic's multi-line report on `Settings` into one line: ``SETTING: problem (got VALUE)``.

    `load_settings` does this itself and also names the source of each bad value.
    """
    return _explain(error, _Origins(overrides={}, environ={}, env_file=None, dotenv={}, toml_file=None, toml={}))


def _explain(error: ValidationError, origins: _Origins) -> str:
    details = error.errors()
    failed = {tuple(str(part) for part in detail["loc"]) for detail in details}
    problems = []
    for detail in details:
        loc = tuple(str(part) for part in detail["loc"])
        where = origins.describe(loc)
        if _DERIVED_FROM.get(loc) in failed and where == _env_name(loc):
            continue
        problems.append(f"{where}: {_problem(detail, loc)}")
    return "; ".join(problems)


def _problem(detail: ErrorDetails, loc: tuple[str, ...]) -> str:
    kind = detail["type"]
    field = _field_at(loc)
    if kind == "extra_forbidden":
        parent = _model_at(loc[:-1])
        return _unknown_setting(loc[-1], parent.model_fields if parent else {})
    if kind == "missing":
        return "is required"
    if kind in {"greater_than", "greater_than_equal", "less_than", "less_than_equal"} and field is not None:
        text = _bounds(field)
    else:
        text = detail["msg"].removeprefix("Value error, ")
        text = re.sub(r"^Input should be", "must be", text)
    if field is None or isinstance(detail["input"], Mapping):  # a whole section failed a cross-field check
        return text
    shown = "***" if _is_secret(field) else _short_repr(detail["input"])
    return f"{text} (got {shown})"


def _bounds(field: FieldInfo) -> str:
    # annotated_types.Ge/Le/Gt/Lt each carry one attribute named after themselves.
    found = {name: getattr(c, name) for c in field.metadata for name in ("ge", "gt", "le", "lt") if hasattr(c, name)}
    if "ge" in found and "le" in found:
        return f"must be between {found['ge']} and {found['le']}"
    words = {"ge": "at least", "gt": "greater than", "le": "at most", "lt": "less than"}
    parts = [f"{words[name]} {value}" for name, value in found.items()]
    return "must be " + " and ".join(parts) if parts else "is out of range"


def _model_at(loc: tuple[str, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] = Settings
    for key in loc:
        field = model.model_fields.get(key)
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


def _field_at(loc: tuple[str, ...]) -> FieldInfo | None:
    if not loc:
        return None
    parent = _model_at(loc[:-1])
    return parent.model_fields.get(loc[-1]) if parent is not None else None


def _is_secret(field: FieldInfo) -> bool:
    return field.annotation is SecretStr or SecretStr in get_args(field.annotation)


def _short_repr(value: object) -> str:
    # Environment values are strings; show a plain one as typed (got 0, not got '0').
    text = value if isinstance(value, str) and value and not re.search(r"\s", value) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _unknown_setting(key: str, known: Mapping[str, object]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"is not a setting membot knows{hint}"


# --- reference for the README and `membot doctor` ---------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SettingDoc:
    """One row of the configuration table."""

    env: str
    toml: str
    default: str
    description: str


# Defaults that depend on other settings or on the machine, described in words.
_SHOWN_DEFAULTS: Mapping[str, str] = {
    "llm.context_window": "known models: their window; else `128000`",
    "embeddings.base_url": "`llm.base_url`",
    "embeddings.api_key": "`llm.api_key` if `embeddings.base_url` is unset",
    "store.kind": "`mongodb` if a MongoDB URI is set, else `sqlite`",
    "store.sqlite_path": "`<data_dir>/membot.sqlite3`",
    "data_dir": "`$XDG_DATA_HOME/membot` (`~/.local/share/membot`)",
    "a2a.callers": "none",
}


def settings_reference() -> list[SettingDoc]:
    """Every setting with its environment name, TOML key, default and meaning."""
    rows: list[SettingDoc] = []

    def walk(model: type[BaseModel], prefix: tuple[str, ...]) -> None:
        for name, field in model.model_fields.items():
            loc = (*prefix, name)
            nested = _model_at(loc)
            if nested is not None:
                walk(nested, loc)
                continue
            dotted = ".".join(loc)
            standard = [std for std, target in _STANDARD_NAMES.items() if target == loc]
            env = " or ".join(f"`{n}`" for n in [_env_name(loc), *standard])
            if dotted in _SHOWN_DEFAULTS:
                default = _SHOWN_DEFAULTS[dotted]
            elif field.default is None:
                default = "unset"
            elif field.default == ():
                default = "none"
            else:
                default = f"`{str(field.default).lower() if isinstance(field.default, bool) else field.default}`"
            rows.append(SettingDoc(env=env, toml=f"`{dotted}`", default=default, description=field.description or ""))

    walk(Settings, ())
    return rows


def render_settings_table() -> str:
    """The Markdown table the README shows between its settings-table markers."""
    lines = ["| environment | TOML key | default | meaning |", "|---|---|---|---|"]
    lines += [f"| {row.env} | {row.toml} | {row.default} | {row.description} |" for row in settings_reference()]
    return "\n".join(lines)


if __name__ == "__main__":
    print(render_settings_table())  # the README's table: python -m bot.config
