"""The settings reference: the README's table and `membot doctor`'s list, generated from `Settings`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import BaseModel

from bot.config.settings import STANDARD_NAMES, Settings, env_name, model_at

__all__ = ["SettingDoc", "render_settings_table", "settings_reference"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SettingDoc:
    """One row of the configuration table."""

    env: str
    toml: str
    default: str
    description: str


# Defaults that depend on other settings or on the machine, described in words.
_SHOWN_DEFAULTS: Mapping[str, str] = {
    "llm.context_window": "known hosted models: their window; else what the endpoint's model list reports "
    "(vLLM, LM Studio, OpenRouter, ...); else `128000`",
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
            nested = model_at(loc)
            if nested is not None:
                walk(nested, loc)
                continue
            dotted = ".".join(loc)
            standard = [std for std, target in STANDARD_NAMES.items() if target == loc]
            env = " or ".join(f"`{n}`" for n in [env_name(loc), *standard])
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
