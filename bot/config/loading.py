"""`load_settings`: the command line, the environment, `.env` and a TOML file merged into one `Settings`."""

from __future__ import annotations

import json
import os
import re
import tomllib
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_settings import DotEnvSettingsSource, SettingsError

from bot.config.explain import Origins, explain, unknown_setting
from bot.config.sections import EmbeddingSettings, LLMSettings
from bot.config.settings import TOML_FILE, Settings, default_config_file, env_name
from bot.errors import ConfigError

__all__ = ["load_settings"]


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
    origins = Origins(
        overrides=nested_overrides,
        environ=dict(os.environ),
        env_file=env_file,
        dotenv=dotenv_vars,
        toml_file=toml_file,
        toml=toml_data,
    )
    for key in toml_data:
        if key not in Settings.model_fields:
            raise ConfigError(f"{key} (from {toml_file}): {unknown_setting(key, Settings.model_fields)}")
    _check_json_values(origins)

    settings = _build(nested_overrides, env_file=env_file, toml_file=toml_file, origins=origins)
    keys = _keys_from_indirection(settings, dotenv_vars, origins)
    if keys:
        # Rebuild so the key takes part in validation and the embeddings defaults.
        settings = _build(_deep_merge(keys, nested_overrides), env_file=env_file, toml_file=toml_file, origins=origins)
    return settings


def _build(overrides: dict[str, Any], *, env_file: Path | None, toml_file: Path | None, origins: Origins) -> Settings:
    token = TOML_FILE.set(toml_file)
    try:
        # _env_file is a BaseSettings init option that the dataclass-style signature does not show.
        options: dict[str, Any] = {**overrides, "_env_file": env_file}
        return Settings(**options)
    except ValidationError as error:
        raise ConfigError(explain(error, origins)) from None
    except SettingsError as error:  # a JSON value `_check_json_values` did not foresee
        field = re.search(r'field "([^"]+)"', str(error))
        where = env_name((field.group(1),)) if field else "a MEMBOT_ variable"
        raise ConfigError(f"{where} (or one of its settings): is not valid JSON") from None
    finally:
        TOML_FILE.reset(token)


# --- JSON-valued variables ---------------------------------------------------------------------


def _check_json_values(origins: Origins) -> None:
    """Lists, maps and whole sections are JSON in the environment. pydantic-settings decodes them
    before validating, and its error names only the section (with a traceback), so each one is
    decoded here first and a failure becomes one line naming the variable."""
    sources = ((origins.environ, "the environment"), (origins.dotenv, str(origins.env_file)))
    for loc, example in _json_settings(Settings, ()):
        variable = env_name(loc)
        for variables, label in sources:
            value = next((v for name, v in variables.items() if name.upper() == variable), None)
            if not value:
                continue  # empty counts as unset
            try:
                json.loads(value)
            except ValueError as exc:
                problem = f"{exc.msg} at character {exc.pos + 1}" if isinstance(exc, json.JSONDecodeError) else str(exc)
                raise ConfigError(
                    f"{variable} (from {label}): is not valid JSON ({problem}); write e.g. {example}"
                ) from None


def _json_settings(model: type[BaseModel], prefix: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], str]]:
    """(location, an example value) of every setting given as JSON: sections, lists and maps."""
    for name, field in model.model_fields.items():
        loc = (*prefix, name)
        kinds = _kinds(field.annotation)
        if any(isinstance(kind, type) and issubclass(kind, BaseModel) for kind in kinds):
            yield loc, '{"setting": "value"}'
            for kind in kinds:
                if isinstance(kind, type) and issubclass(kind, BaseModel):
                    yield from _json_settings(kind, loc)
        elif kinds & {dict}:
            yield loc, '{"name": "value"}'
        elif kinds & {list, tuple, set, frozenset}:
            yield loc, '["a", "b"] or [1, 2]'


def _kinds(annotation: Any) -> set[Any]:
    """The types an annotation allows: `X | None` unwrapped, generics by their origin."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return {kind for arg in typing.get_args(annotation) if arg is not type(None) for kind in _kinds(arg)}
    return {typing.get_origin(annotation) or annotation}


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


def _keys_from_indirection(settings: Settings, dotenv_vars: Mapping[str, str], origins: Origins) -> dict[str, Any]:
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
