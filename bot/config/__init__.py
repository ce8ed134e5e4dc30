"""Settings: one typed object, built once by the CLI and passed down (shared/STYLE.md §6).

`load_settings()` merges, highest priority first:

1. explicit overrides from the command line (a dict, nested or with dotted keys),
2. environment variables (``MEMBOT_`` prefix, ``__`` between levels: ``MEMBOT_LLM__MODEL``),
   plus the standard unprefixed ``OPENAI_BASE_URL``, ``OPENAI_API_KEY``, ``MONGODB_URI``, ``DISCORD_TOKEN``
   and Bolt's ``SLACK_BOT_TOKEN``, ``SLACK_APP_TOKEN``, ``SLACK_SIGNING_SECRET`` and ``PORT``,
3. a ``.env`` file (same names),
4. a TOML file: ``--config PATH``, else ``$MEMBOT_CONFIG``, else
   ``$XDG_CONFIG_HOME/membot/config.toml`` when it exists (tables ``[llm]``, ``[agent]``, ...),
5. the defaults (`bot.config.sections`, `bot.config.platforms`).

Within one source a ``MEMBOT_`` name beats its standard twin, so ``MEMBOT_LLM__BASE_URL``
wins over ``OPENAI_BASE_URL`` set beside it. Secrets come by value or, like llmcord, by
naming the variable that holds them (``api_key_env``). Every problem becomes one
`ConfigError` line naming the setting and where it came from. Nothing here runs at import.
"""

from __future__ import annotations

from bot.config.explain import explain_validation_error
from bot.config.loading import load_settings
from bot.config.models import context_window_for
from bot.config.platforms import A2ASettings, DiscordSettings, SlackMode, SlackSettings
from bot.config.reference import SettingDoc, render_settings_table, settings_reference
from bot.config.sections import (
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
from bot.config.settings import Settings, default_config_file, default_data_dir

__all__ = [
    "A2ASettings",
    "AgentSettings",
    "BudgetSettings",
    "ConsoleSettings",
    "DiscordSettings",
    "EmbeddingSettings",
    "EvalSettings",
    "LLMSettings",
    "OpsSettings",
    "PrivacySettings",
    "RuntimeSettings",
    "SettingDoc",
    "Settings",
    "SlackMode",
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
