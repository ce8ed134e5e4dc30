"""Settings: sources, precedence, secrets, and one-line errors (conftest empties the environment)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.config import (
    Settings,
    context_window_for,
    default_config_file,
    explain_validation_error,
    load_settings,
    render_settings_table,
    settings_reference,
)
from bot.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _work_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # load_settings reads ./.env by default: keep the repository's own out of the tests.
    monkeypatch.chdir(tmp_path)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def config_error(**kwargs: object) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(**kwargs)  # type: ignore[arg-type]
    message = str(caught.value)
    assert "\n" not in message
    return message


# --- defaults ---------------------------------------------------------------------------------


def test_defaults_under_a_fresh_home() -> None:
    settings = load_settings()
    data_home = Path(os.environ["XDG_DATA_HOME"])
    assert settings.llm.base_url == "https://api.openai.com/v1"
    assert settings.llm.model == "gpt-4o-mini"
    assert settings.llm.api_key is None
    assert settings.llm.context_window is None
    assert settings.llm.known_context_window == 128_000
    assert settings.embeddings.base_url == settings.llm.base_url
    assert settings.embeddings.model is None
    assert settings.agent.persona == "sam"
    assert settings.agent.human == "basic"
    assert settings.agent.core_block_limit == 2000
    assert settings.agent.max_chained_steps == 10
    assert settings.agent.memory_warning_fraction == 0.75
    assert settings.store.kind == "sqlite"
    assert settings.data_dir == data_home / "membot"
    assert settings.store.sqlite_path == data_home / "membot" / "membot.sqlite3"
    assert settings.store.mongodb_database == "membot"
    assert settings.log_level == "INFO"
    assert settings.debug is False


def test_without_xdg_variables_home_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/is/ignored")
    home = Path(os.environ["HOME"])
    assert load_settings().store.sqlite_path == home / ".local/share/membot/membot.sqlite3"
    assert default_config_file() == home / ".config/membot/config.toml"


def test_sqlite_file_follows_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MEMBOT_DATA_DIR", str(tmp_path / "data"))
    assert load_settings().store.sqlite_path == tmp_path / "data" / "membot.sqlite3"


def test_settings_are_read_when_loaded_not_when_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().llm.model == "gpt-4o-mini"
    monkeypatch.setenv("MEMBOT_LLM__MODEL", "llama3.1")
    assert load_settings().llm.model == "llama3.1"


# --- environment ------------------------------------------------------------------------------


def test_standard_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://localhost:11434/v1/")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local")
    monkeypatch.setenv("MONGODB_URI", "mongodb://db.example:27017/?replicaSet=rs0")
    settings = load_settings()
    assert settings.llm.base_url == "http://localhost:11434/v1"
    assert settings.llm.api_key is not None
    assert settings.llm.api_key.get_secret_value() == "sk-local"
    assert settings.store.kind == "mongodb"
    assert settings.store.mongodb_uri is not None
    assert settings.store.mongodb_uri.get_secret_value().startswith("mongodb://db.example")


def test_prefixed_names_beat_standard_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://standard:1/v1")
    monkeypatch.setenv("MEMBOT_LLM__BASE_URL", "http://prefixed:2/v1")
    assert load_settings().llm.base_url == "http://prefixed:2/v1"


def test_explicit_store_kind_beats_a_mongodb_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONGODB_URI", "mongodb://localhost")
    monkeypatch.setenv("MEMBOT_STORE__KIND", "sqlite")
    assert load_settings().store.kind == "sqlite"


def test_mongodb_without_uri_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMBOT_STORE__KIND", "mongodb")
    assert "no MongoDB URI is set" in config_error()


def test_nested_values_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMBOT_LLM__STREAM", "true")
    monkeypatch.setenv("MEMBOT_AGENT__EVICT_FRACTION", "0.3")
    monkeypatch.setenv("MEMBOT_LOG_LEVEL", "debug")
    settings = load_settings()
    assert settings.llm.stream is True
    assert settings.agent.evict_fraction == 0.3
    assert settings.log_level == "DEBUG"


def test_empty_variables_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "")
    monkeypatch.setenv("MEMBOT_LLM__MODEL", "")
    settings = load_settings()
    assert settings.llm.api_key is None
    assert settings.llm.model == "gpt-4o-mini"


# --- api_key_env ------------------------------------------------------------------------------


def test_api_key_env_names_the_variable_with_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    monkeypatch.setenv("MEMBOT_LLM__API_KEY_ENV", "GROQ_API_KEY")
    monkeypatch.setenv("GROQ_API_KEY", "gsk-groq")
    settings = load_settings()
    assert settings.llm.api_key is not None
    assert settings.llm.api_key.get_secret_value() == "gsk-groq"
    # The embeddings endpoint defaults to the same host, so it shares the key.
    assert settings.embeddings.api_key == settings.llm.api_key


def test_api_key_env_from_toml_and_key_from_dotenv(tmp_path: Path) -> None:
    config = write(tmp_path / "config.toml", '[llm]\napi_key_env = "MY_KEY"\n')
    env_file = write(tmp_path / ".env", "MY_KEY=from-dotenv\n")
    settings = load_settings(config, env_file=env_file)
    assert settings.llm.api_key is not None
    assert settings.llm.api_key.get_secret_value() == "from-dotenv"


def test_api_key_env_naming_an_unset_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMBOT_EMBEDDINGS__API_KEY_ENV", "NOT_THERE")
    assert config_error() == (
        "MEMBOT_EMBEDDINGS__API_KEY_ENV (from the environment): names the variable NOT_THERE, "
        "which is not set (nor in the .env file)"
    )


def test_embeddings_elsewhere_do_not_get_the_chat_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-chat")
    monkeypatch.setenv("MEMBOT_EMBEDDINGS__BASE_URL", "http://embedder:8080/v1")
    monkeypatch.setenv("MEMBOT_EMBEDDINGS__MODEL", "nomic-embed-text")
    settings = load_settings()
    assert settings.embeddings.base_url == "http://embedder:8080/v1"
    assert settings.embeddings.api_key is None


# --- files and precedence ---------------------------------------------------------------------


def test_toml_file_with_sections(tmp_path: Path) -> None:
    config = write(
        tmp_path / "membot.toml",
        'log_level = "WARNING"\n[llm]\nmodel = "gpt-4.1-mini"\n[agent]\npersona = "assistant"\n'
        '[store]\nsqlite_path = "~/bot.db"\n',
    )
    settings = load_settings(config)
    assert settings.log_level == "WARNING"
    assert settings.llm.model == "gpt-4.1-mini"
    assert settings.llm.known_context_window == 1_047_576
    assert settings.agent.persona == "assistant"
    assert settings.store.sqlite_path == Path(os.environ["HOME"]) / "bot.db"


def test_toml_from_membot_config_and_from_the_xdg_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write(default_config_file(), '[llm]\nmodel = "from-xdg"\n')
    assert load_settings().llm.model == "from-xdg"
    monkeypatch.setenv("MEMBOT_CONFIG", str(write(tmp_path / "other.toml", '[llm]\nmodel = "from-env-path"\n')))
    assert load_settings().llm.model == "from-env-path"
    assert load_settings(write(tmp_path / "cli.toml", '[llm]\nmodel = "from-flag"\n')).llm.model == "from-flag"


def test_missing_explicit_config_file(tmp_path: Path) -> None:
    assert config_error(config_file=tmp_path / "nope.toml") == f"config file {tmp_path / 'nope.toml'} does not exist"


@pytest.mark.parametrize(
    ("sources", "expected"),
    [
        ({"toml"}, 2),
        ({"toml", "dotenv"}, 3),
        ({"toml", "dotenv", "env"}, 4),
        ({"toml", "dotenv", "env", "override"}, 5),
        ({"override", "toml"}, 5),
        (set(), 10),
    ],
)
def test_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sources: set[str], expected: int) -> None:
    config = write(tmp_path / "c.toml", "[agent]\nmax_chained_steps = 2\n") if "toml" in sources else None
    env_file = write(tmp_path / ".env", "MEMBOT_AGENT__MAX_CHAINED_STEPS=3\n") if "dotenv" in sources else None
    if "env" in sources:
        monkeypatch.setenv("MEMBOT_AGENT__MAX_CHAINED_STEPS", "4")
    overrides = {"agent.max_chained_steps": 5} if "override" in sources else None
    settings = load_settings(config, env_file=env_file, overrides=overrides)
    assert settings.agent.max_chained_steps == expected


def test_sources_merge_key_by_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = write(tmp_path / "c.toml", '[llm]\nmodel = "toml-model"\nbase_url = "http://toml/v1"\n')
    monkeypatch.setenv("OPENAI_BASE_URL", "http://env/v1")
    settings = load_settings(config, overrides={"llm": {"stream": True}})
    assert (settings.llm.model, settings.llm.base_url, settings.llm.stream) == ("toml-model", "http://env/v1", True)


def test_dotenv_may_hold_other_programs_variables(tmp_path: Path) -> None:
    env_file = write(tmp_path / ".env", "DISCORD_TOKEN=abc\nOPENAI_API_KEY=sk-dotenv\nMEMBOT_DEBUG=1\n")
    settings = load_settings(env_file=env_file)
    assert settings.debug is True
    assert settings.llm.api_key is not None
    assert settings.llm.api_key.get_secret_value() == "sk-dotenv"


# --- errors -----------------------------------------------------------------------------------


def test_garbled_toml_is_one_clear_line(tmp_path: Path) -> None:
    config = write(tmp_path / "config.toml", '[llm]\nmodel = "x"\nbase_url = \n')
    message = config_error(config_file=config)
    assert message.startswith(f"config file {config} is not valid TOML: line 3, column 12: ")


def test_invalid_value_names_the_setting_and_the_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMBOT_AGENT__MAX_CHAINED_STEPS", "0")
    assert config_error() == "MEMBOT_AGENT__MAX_CHAINED_STEPS (from the environment): must be between 1 and 100 (got 0)"


def test_invalid_value_in_each_kind_of_source(tmp_path: Path) -> None:
    config = write(tmp_path / "c.toml", "[agent]\nmemory_warning_fraction = 2.0\n")
    assert config_error(config_file=config) == (
        f"agent.memory_warning_fraction (from {config}): must be between 0.1 and 0.95 (got 2.0)"
    )
    env_file = write(tmp_path / "x.env", "MEMBOT_AGENT__CORE_BLOCK_LIMIT=10\n")
    assert config_error(env_file=env_file) == (
        f"MEMBOT_AGENT__CORE_BLOCK_LIMIT (from {env_file}): must be between 100 and 100000 (got 10)"
    )
    assert config_error(overrides={"llm.timeout_s": "soon"}) == (
        "llm.timeout_s (from the command line): must be a valid number, unable to parse string as a number (got soon)"
    )


def test_explaining_an_error_from_a_bare_settings_object() -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(agent={"max_chained_steps": 0})
    assert (
        explain_validation_error(caught.value) == "MEMBOT_AGENT__MAX_CHAINED_STEPS: must be between 1 and 100 (got 0)"
    )


def test_all_problems_on_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMBOT_STORE__KIND", "postgres")
    monkeypatch.setenv("MEMBOT_LOG_LEVEL", "loud")
    message = config_error()
    assert "MEMBOT_STORE__KIND (from the environment): must be 'sqlite' or 'mongodb' (got postgres)" in message
    assert "; MEMBOT_LOG_LEVEL (from the environment): must be 'DEBUG', 'INFO', 'WARNING' or 'ERROR'" in message


def test_bad_base_url_is_reported_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "localhost:11434")
    assert config_error() == (
        "OPENAI_BASE_URL (from the environment): must be an http:// or https:// URL (got localhost:11434)"
    )


def test_unknown_keys_are_caught_with_a_suggestion(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = write(tmp_path / "c.toml", '[llm]\nmodle = "x"\n')
    assert config_error(config_file=config) == (
        f"llm.modle (from {config}): is not a setting membot knows; did you mean 'model'?"
    )
    config = write(tmp_path / "d.toml", '[agnet]\npersona = "x"\n')
    assert config_error(config_file=config) == (
        f"agnet (from {config}): is not a setting membot knows; did you mean 'agent'?"
    )


def test_cross_field_check_names_the_section(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMBOT_LLM__MODEL", "gpt-4")
    monkeypatch.setenv("MEMBOT_LLM__MAX_OUTPUT_TOKENS", "9000")
    assert config_error() == "llm: max_output_tokens (9000) must be smaller than context_window (8192)"


def test_secrets_stay_out_of_errors_and_descriptions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONGODB_URI", "postgres://admin:hunter2@db")
    message = config_error()
    assert "hunter2" not in message
    assert message == "MONGODB_URI (from the environment): must start with mongodb:// or mongodb+srv:// (got ***)"

    monkeypatch.setenv("MONGODB_URI", "mongodb://admin:hunter2@db")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-very-secret")
    described = load_settings().describe()
    assert described["llm"]["api_key"] == "***"
    assert described["store"]["mongodb_uri"] == "***"
    assert described["embeddings"]["api_key"] == "***"
    assert described["llm"]["api_key_env"] is None
    assert described["store"]["sqlite_path"].endswith("membot.sqlite3")
    assert "hunter2" not in repr(described)
    assert "sk-very-secret" not in repr(described)


# --- models and docs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "window"),
    [
        ("gpt-4o-mini", 128_000),
        ("gpt-4", 8_192),
        ("gpt-4-turbo-2024-04-09", 128_000),
        ("openai/gpt-4.1", 1_047_576),
        ("o1-mini", 128_000),
        ("o1", 200_000),
        ("llama3.1:8b", None),
        ("Qwen/Qwen2.5-7B-Instruct", None),
    ],
)
def test_known_context_windows(model: str, window: int | None) -> None:
    assert context_window_for(model) == window


def test_explicit_context_window_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMBOT_LLM__MODEL", "gpt-4o")
    monkeypatch.setenv("MEMBOT_LLM__CONTEXT_WINDOW", "8192")
    assert load_settings().llm.context_window == 8192
    assert load_settings().llm.known_context_window == 8192


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.debug = True  # type: ignore[misc]


def test_reference_covers_every_field() -> None:
    names = [row.env for row in settings_reference()]
    assert "`MEMBOT_AGENT__MAX_CHAINED_STEPS`" in names
    assert "`MEMBOT_LLM__API_KEY` or `OPENAI_API_KEY`" in names
    settings = load_settings()
    values = settings.describe()
    leaves = [key for key, value in values.items() if not isinstance(value, dict)]
    leaves += [f"{key}.{inner}" for key, value in values.items() if isinstance(value, dict) for inner in value]
    assert sorted(row.toml.strip("`") for row in settings_reference()) == sorted(leaves)


def test_readme_table_is_generated_from_the_settings() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("<!-- settings-table:start -->") + len("<!-- settings-table:start -->")
    end = readme.index("<!-- settings-table:end -->")
    assert readme[start:end].strip() == render_settings_table(), "regenerate with: python -m bot.config"


def test_discord_token_comes_from_the_standard_name_and_shards_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", "from-standard")
    monkeypatch.setenv("MEMBOT_DISCORD__FREE_RESPONSE_CHANNELS", "[1, 2]")
    settings = load_settings(env_file=None)
    assert settings.discord.token is not None and settings.discord.token.get_secret_value() == "from-standard"
    assert settings.discord.free_response_channels == (1, 2)
    assert settings.runtime.max_concurrent_llm_calls == 16
    monkeypatch.setenv("MEMBOT_DISCORD__TOKEN", "prefixed-wins")
    assert load_settings(env_file=None).discord.token.get_secret_value() == "prefixed-wins"  # type: ignore[union-attr]
    monkeypatch.setenv("MEMBOT_DISCORD__SHARD_IDS", "[0, 3]")
    monkeypatch.setenv("MEMBOT_DISCORD__SHARD_COUNT", "2")
    with pytest.raises(ConfigError, match="shard_ids must be between 0 and shard_count - 1"):
        load_settings(env_file=None)


def test_discord_defaults_are_discord_py_s_own() -> None:
    from bot.config.platforms import DEFAULT_DISCORD_API_BASE_URL, DEFAULT_DISCORD_GATEWAY_URL
    from bot.discord.urls import DISCORD

    assert (DISCORD.api_base_url, DISCORD.gateway_url) == (DEFAULT_DISCORD_API_BASE_URL, DEFAULT_DISCORD_GATEWAY_URL)
