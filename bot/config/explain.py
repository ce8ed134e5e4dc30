"""Validation errors as one line each: the setting, where its value came from, and the problem."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

from pydantic import SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from bot.config.settings import STANDARD_NAMES, env_name, model_at

__all__ = ["Origins", "explain", "explain_validation_error", "unknown_setting"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Origins:
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
        env = env_name(loc)
        standard = next((name for name, target in STANDARD_NAMES.items() if target == loc), None)
        # A section (llm, store, ...) is named by a source only when that source gave it a non-table value.
        is_section = model_at(loc) is not None
        if _given(self.overrides, loc, is_section):
            return f"{dotted} (from the command line)"
        for variables, label in ((self.environ, "the environment"), (self.dotenv, str(self.env_file))):
            if env in {name.upper() for name in variables}:
                return f"{env} (from {label})"
            if standard is not None and standard in variables:
                return f"{standard} (from {label})"
        if _given(self.toml, loc, is_section):
            return f"{dotted} (from {self.toml_file})"
        return dotted if is_section else env


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
    return explain(error, Origins(overrides={}, environ={}, env_file=None, dotenv={}, toml_file=None, toml={}))


def explain(error: ValidationError, origins: Origins) -> str:
    details = error.errors()
    failed = {tuple(str(part) for part in detail["loc"]) for detail in details}
    problems = []
    for detail in details:
        loc = tuple(str(part) for part in detail["loc"])
        where = origins.describe(loc)
        if _DERIVED_FROM.get(loc) in failed and where == env_name(loc):
            continue
        problems.append(f"{where}: {_problem(detail, loc)}")
    return "; ".join(problems)


def _problem(detail: ErrorDetails, loc: tuple[str, ...]) -> str:
    kind = detail["type"]
    field = _field_at(loc)
    if kind == "extra_forbidden":
        parent = model_at(loc[:-1])
        return unknown_setting(loc[-1], parent.model_fields if parent else {})
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


def _field_at(loc: tuple[str, ...]) -> FieldInfo | None:
    if not loc:
        return None
    parent = model_at(loc[:-1])
    return parent.model_fields.get(loc[-1]) if parent is not None else None


def _is_secret(field: FieldInfo) -> bool:
    return field.annotation is SecretStr or SecretStr in get_args(field.annotation)


def _short_repr(value: object) -> str:
    # Environment values are strings; show a plain one as typed (got 0, not got '0').
    text = value if isinstance(value, str) and value and not re.search(r"\s", value) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def unknown_setting(key: str, known: Mapping[str, object]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"is not a setting membot knows{hint}"
