"""The shipped texts: system and summary prompts, and persona/human templates for new agents.

Templates are plain ``.txt`` files. The shipped ones live in ``bot/agent/prompts/{personas,humans}``;
a user's own live in a folder of their own (the CLI passes ``<data_dir>/personas`` or
``<data_dir>/humans``) and win over shipped ones of the same name. A name that is a path to a
file (``./me.txt``, ``~/notes/bob.txt``) also works.
"""

from __future__ import annotations

import re
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Literal

from bot.errors import ConfigError

__all__ = [
    "PromptName",
    "TemplateKind",
    "list_templates",
    "load_prompt",
    "load_template",
]

type TemplateKind = Literal["persona", "human"]
type PromptName = Literal["system", "summarize"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_SUFFIX = ".txt"


def _prompts() -> Traversable:
    return resources.files("bot.agent").joinpath("prompts")


def _shipped_dir(kind: TemplateKind) -> Traversable:
    return _prompts().joinpath(f"{kind}s")


def load_prompt(name: PromptName) -> str:
    """A shipped prompt: ``system`` (the agent's system prompt) or ``summarize`` (has a ``{word_limit}`` field)."""
    return _prompts().joinpath(name + _SUFFIX).read_text(encoding="utf-8")


def list_templates(kind: TemplateKind, user_dir: Path | None = None) -> list[str]:
    """Names of the persona or human templates available: shipped ones plus those in ``user_dir``, sorted."""
    names = {entry.name.removesuffix(_SUFFIX) for entry in _shipped_dir(kind).iterdir() if entry.name.endswith(_SUFFIX)}
    if user_dir is not None and user_dir.is_dir():
        names |= {path.stem for path in user_dir.glob("*" + _SUFFIX) if path.is_file()}
    return sorted(names)


def load_template(kind: TemplateKind, name: str, *, user_dir: Path | None) -> str:
    """The text of a persona or human template, without trailing whitespace.

    ``name`` is a template name (``<user_dir>/NAME.txt`` first, then the shipped one) or a path
    to a file. ``user_dir`` holds the user's templates of this kind, e.g. ``<data_dir>/personas``.
    Raises `ConfigError` for an unknown name, listing the names that exist.
    """
    if _looks_like_path(name):
        return _read_user_file(Path(name).expanduser(), kind)
    if not _NAME.match(name):
        raise ConfigError(f"{kind} template name {name!r} is not a plain name or a path to a .txt file")
    if user_dir is not None and (user_dir / (name + _SUFFIX)).is_file():
        return _read_user_file(user_dir / (name + _SUFFIX), kind)
    shipped = _shipped_dir(kind).joinpath(name + _SUFFIX)
    if shipped.is_file():
        return shipped.read_text(encoding="utf-8").rstrip()
    available = ", ".join(list_templates(kind, user_dir))
    where = f" (add your own as {user_dir / (name + _SUFFIX)})" if user_dir is not None else ""
    raise ConfigError(f"unknown {kind} template {name!r}; available: {available}{where}")


def _looks_like_path(name: str) -> bool:
    return "/" in name or name.startswith("~") or name.endswith(_SUFFIX)


def _read_user_file(path: Path, kind: TemplateKind) -> str:
    if not path.is_file():
        raise ConfigError(f"{kind} template file {path} does not exist")
    try:
        return path.read_text(encoding="utf-8").rstrip()
    except UnicodeDecodeError as error:
        raise ConfigError(f"{kind} template file {path} is not valid UTF-8 (byte offset {error.start})") from None
    except OSError as error:
        raise ConfigError(f"{kind} template file {path} cannot be read: {error.strerror}") from None
