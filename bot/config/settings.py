"""`Settings`: every section in one object, and the sources pydantic-settings reads it from."""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from bot.config.platforms import A2ASettings, DiscordSettings, SlackSettings
from bot.config.sections import (
    DEFAULT_LLM_BASE_URL,
    AgentSettings,
    BudgetSettings,
    ConsoleSettings,
    EmbeddingSettings,
    EvalSettings,
    LLMSettings,
    OpsSettings,
    PrivacySettings,
    RuntimeSettings,
    StoreSettings,
)

__all__ = [
    "ENV_PREFIX",
    "STANDARD_NAMES",
    "Settings",
    "default_config_file",
    "default_data_dir",
    "env_name",
    "model_at",
]

ENV_PREFIX = "MEMBOT_"

# The standard names other tools use, mapped to our nested settings.
STANDARD_NAMES: Mapping[str, tuple[str, str]] = {
    "OPENAI_BASE_URL": ("llm", "base_url"),
    "OPENAI_API_KEY": ("llm", "api_key"),
    "MONGODB_URI": ("store", "mongodb_uri"),
    "DISCORD_TOKEN": ("discord", "token"),
    "SLACK_BOT_TOKEN": ("slack", "bot_token"),
    "SLACK_APP_TOKEN": ("slack", "app_token"),
    "SLACK_SIGNING_SECRET": ("slack", "signing_secret"),
    "PORT": ("slack", "port"),
}


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


# Set by load_settings for the duration of one Settings() call: the TOML file to read.
TOML_FILE: ContextVar[Path | None] = ContextVar("membot_toml_file", default=None)


class _StandardNamesSource(PydanticBaseSettingsSource):
    """The standard names (`STANDARD_NAMES`: OPENAI_API_KEY, DISCORD_TOKEN, SLACK_BOT_TOKEN, ...) from one
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
        for name, (section, key) in STANDARD_NAMES.items():
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
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)
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
        toml_file = TOML_FILE.get()
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


def env_name(loc: tuple[str, ...]) -> str:
    return ENV_PREFIX + "__".join(loc).upper()


def model_at(loc: tuple[str, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] = Settings
    for key in loc:
        field = model.model_fields.get(key)
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model
