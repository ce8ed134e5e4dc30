"""The settings sections of the engine and its services: LLM, embeddings, agent, store, runtime,
operations, budgets, privacy and evaluation. The platforms' sections are in `bot.config.platforms`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, SecretStr, field_validator, model_validator

from bot.config.models import DEFAULT_CONTEXT_WINDOW, context_window_for

__all__ = [
    "DEFAULT_LLM_BASE_URL",
    "DEFAULT_MODEL",
    "AgentSettings",
    "BudgetSettings",
    "ConsoleSettings",
    "EmbeddingSettings",
    "EvalSettings",
    "LLMSettings",
    "OpsSettings",
    "PrivacySettings",
    "RuntimeSettings",
    "Section",
    "StoreSettings",
    "check_base_url",
]

DEFAULT_LLM_BASE_URL = "https://api.openai.com/v1"
DEFAULT_MODEL = "gpt-4o-mini"

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Upper bounds: far above any real use, low enough that a typo (an extra 000) or a number meant
# for another setting is caught at start-up rather than overflowing a budget or a timer later.
#: A context window or a reply, in tokens (the largest models take about 10 million).
MAX_TOKENS = 10_000_000
#: A daily token budget.
MAX_DAILY_TOKENS = 10**12
MINUTES_A_YEAR = 366 * 24 * 60


class Section(BaseModel):
    # Unknown keys are errors so a typo in config.toml or MEMBOT_LLM__MODLE is caught.
    model_config = ConfigDict(extra="forbid", frozen=True)


def check_base_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return value.rstrip("/")


def _check_env_name(value: str | None) -> str | None:
    if value is not None and not _ENV_NAME.match(value):
        raise ValueError("must be the name of an environment variable (letters, digits, underscores)")
    return value


class LLMSettings(Section):
    """The OpenAI-compatible chat endpoint (OpenAI, Azure, vLLM, Ollama, LM Studio)."""

    base_url: str = Field(default=DEFAULT_LLM_BASE_URL, description="OpenAI-compatible endpoint, up to `/v1`")
    api_key: SecretStr | None = Field(default=None, description="API key (local servers accept any value)")
    api_key_env: str | None = Field(
        default=None, description="name of another variable holding the key; wins over api_key"
    )
    model: str = Field(default=DEFAULT_MODEL, min_length=1, description="chat model name as the endpoint knows it")
    context_window: PositiveInt | None = Field(
        default=None, le=MAX_TOKENS, description="prompt + reply tokens the model accepts"
    )
    max_output_tokens: PositiveInt = Field(default=1024, le=MAX_TOKENS, description="cap on tokens per reply")
    timeout_s: float = Field(default=60.0, gt=0, le=3600, description="seconds before one request is abandoned")
    max_retries: int = Field(default=3, ge=0, le=20, description="retries on 429, 5xx, timeouts and connection errors")
    stream: bool = Field(default=False, description="stream replies from the endpoint")

    _base_url = field_validator("base_url")(check_base_url)
    _api_key_env = field_validator("api_key_env")(_check_env_name)

    @property
    def known_context_window(self) -> int | None:
        """The window the settings fix: the explicit setting, else a well-known hosted model's."""
        return self.context_window or context_window_for(self.model)

    @model_validator(mode="after")
    def _reply_fits(self) -> LLMSettings:
        window = self.known_context_window or DEFAULT_CONTEXT_WINDOW
        if self.max_output_tokens >= window:
            raise ValueError(
                f"max_output_tokens ({self.max_output_tokens}) must be smaller than context_window ({window})"
            )
        return self


class EmbeddingSettings(Section):
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

    _base_url = field_validator("base_url")(check_base_url)
    _api_key_env = field_validator("api_key_env")(_check_env_name)


class AgentSettings(Section):
    """How agents are created and how the loop manages their context."""

    persona: str = Field(
        default="sam", min_length=1, description="persona template for new agents (a name, or a file in `personas/`)"
    )
    human: str = Field(
        default="basic", min_length=1, description="human template for new agents (a name, or a file in `humans/`)"
    )
    templates_dir: Path | None = Field(
        default=None, description="folder holding your `personas/` and `humans/` templates; unset: `data_dir`"
    )
    core_block_limit: int = Field(default=2000, ge=100, le=100_000, description="characters per core memory block")
    max_chained_steps: int = Field(default=10, ge=1, le=100, description="LLM steps one turn may chain via heartbeats")
    memory_warning_fraction: float = Field(
        default=0.75, ge=0.1, le=0.95, description="context fill that triggers the memory pressure warning"
    )
    keep_last_messages: int = Field(
        default=6, ge=1, le=1000, description="newest messages never evicted into the summary"
    )
    evict_fraction: float = Field(
        default=0.5, ge=0.1, le=0.9, description="share of the message queue evicted at the limit"
    )
    login_gap_minutes: int = Field(
        default=60, ge=1, le=MINUTES_A_YEAR, description="silence after which a message counts as a new login"
    )
    max_user_message_chars: int = Field(
        default=8000,
        ge=100,
        le=1_000_000,
        description="longer user messages are truncated for the model; recall keeps them whole",
    )

    @field_validator("templates_dir")
    @classmethod
    def _expand_templates_dir(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser()


class StoreSettings(Section):
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


class RuntimeSettings(Section):
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
        default=30, ge=1, le=MINUTES_A_YEAR, description="quiet minutes after a conversation before the agent reflects"
    )
    reflection_min_period_hours: float = Field(
        default=6.0, ge=0, le=24 * 366, description="hours at least between two reflections of one agent"
    )
    reflection_daily_tokens_per_agent: int = Field(
        default=50_000,
        ge=0,
        le=MAX_DAILY_TOKENS,
        description="reflection tokens one agent may spend per UTC day (0: reflection off)",
    )
    reflection_daily_tokens_per_server: int = Field(
        default=500_000,
        ge=0,
        le=MAX_DAILY_TOKENS,
        description="reflection tokens one server's agents may spend per UTC day (0: no cap)",
    )


class OpsSettings(Section):
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


class ConsoleSettings(Section):
    """The operator's web console on the ops server (`/console/`): on when a token is set."""

    token: SecretStr | None = Field(
        default=None,
        description="password of the web console at `/console/` on the ops port (16+ characters); unset: no console",
    )
    session_hours: float = Field(
        default=12.0, gt=0, le=24 * 30, description="hours a console login lasts before the token is asked again"
    )

    @field_validator("token")
    @classmethod
    def _long_token(cls, value: SecretStr | None) -> SecretStr | None:
        # The token is the only thing between the network and every agent's memory: no short words.
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError(
                "must be at least 16 characters (e.g. `python -c 'import secrets; print(secrets.token_urlsafe())'`)"
            )
        return value


class BudgetSettings(Section):
    """Daily LLM token budgets; once one is spent the bot says so once and stops calling the LLM for it."""

    daily_tokens_per_server: int = Field(
        default=0,
        ge=0,
        le=MAX_DAILY_TOKENS,
        description="LLM tokens one server or workspace may spend per UTC day (0: no cap)",
    )
    daily_tokens_per_user: int = Field(
        default=0,
        ge=0,
        le=MAX_DAILY_TOKENS,
        description="LLM tokens answering one user may cost per UTC day, everywhere (0: no cap)",
    )


class PrivacySettings(Section):
    """How long recall keeps messages: past the retention period they are summarised, then deleted."""

    retention_days: PositiveInt | None = Field(
        default=None,
        le=36_500,
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


#: LoCoMo's data file at the commit `membot eval locomo` is pinned to (checked by SHA-256 after download).
LOCOMO_URL = "https://github.com/snap-research/LoCoMo/raw/3eb6f2c/data/locomo10.json"


class EvalSettings(Section):
    """`membot eval`: where benchmark data comes from and which model grades answers."""

    locomo_url: str = Field(
        default=LOCOMO_URL, description="where `membot eval locomo` downloads LoCoMo (checked by SHA-256)"
    )
    judge_model: str | None = Field(
        default=None, min_length=1, description="model that grades QA answers; unset: `llm.model`"
    )

    _locomo_url = field_validator("locomo_url")(check_base_url)
