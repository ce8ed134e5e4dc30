"""The shipped texts: system and summary prompts, and persona/human templates for new agents.

Templates are plain ``.txt`` files. The shipped ones live in ``bot/agent/prompts/{personas,humans}``;
the operator's own live in the templates folder (``<templates_dir>/personas``, ``<templates_dir>/humans``;
``templates_dir`` is ``data_dir`` unless set) and win over shipped ones of the same name.

Who may name what (docs/security.md):

- **The operator's configuration** (settings, the CLI) names a template, or a path to a file
  inside the templates folder of its kind. Symlinks are resolved first: a file that leads
  outside the folder is refused, so is any other path.
- **Platform admins** (`/memory persona`, `/membot persona`) and what is stored from them (a
  server's policy) name a template, never a path, and its text must fit one core memory block:
  the block's limit never grows to fit it. `Templates.for_agent` applies this rule again when a
  stored name becomes a new agent, so a policy stored before the rule existed cannot reach a file.
"""

from __future__ import annotations

import logging
import re
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Literal

from bot.errors import ConfigError, UserFacingError

__all__ = [
    "PromptName",
    "TemplateKind",
    "Templates",
    "list_templates",
    "load_prompt",
    "load_template",
]

_log = logging.getLogger(__name__)

type TemplateKind = Literal["persona", "human"]
type PromptName = Literal["system", "summarize"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_SUFFIX = ".txt"
#: How much of a refused value an answer repeats.
_SHOWN = 60


def _prompts() -> Traversable:
    return resources.files("bot.agent").joinpath("prompts")


def _shipped_dir(kind: TemplateKind) -> Traversable:
    return _prompts().joinpath(f"{kind}s")


def load_prompt(name: PromptName) -> str:
    """A shipped prompt: ``system`` (the agent's system prompt) or ``summarize`` (has a ``{word_limit}`` field)."""
    return _prompts().joinpath(name + _SUFFIX).read_text(encoding="utf-8")


def list_templates(kind: TemplateKind, user_dir: Path | None = None) -> list[str]:
    """Names of the persona or human templates available: shipped ones plus those in ``user_dir``
    (not those that lead outside it), sorted."""
    names = {entry.name.removesuffix(_SUFFIX) for entry in _shipped_dir(kind).iterdir() if entry.name.endswith(_SUFFIX)}
    if user_dir is not None and user_dir.is_dir():
        names |= {
            path.stem
            for path in user_dir.glob("*" + _SUFFIX)
            if _NAME.match(path.stem) and _is_inside(path, user_dir) and path.is_file()
        }
    return sorted(names)


def load_template(kind: TemplateKind, name: str, *, user_dir: Path | None) -> str:
    """The text of a persona or human template named by the operator, without trailing whitespace.

    ``name`` is a template name (``<user_dir>/NAME.txt`` first, then the shipped one) or a path
    to a ``.txt`` file inside ``user_dir`` (``~`` expanded, relative to the working directory).
    ``user_dir`` holds the operator's templates of this kind, e.g. ``<data_dir>/personas``.
    Raises `ConfigError` for an unknown name (listing the names that exist) and for a path, or a
    symlink, that leads outside ``user_dir``.
    """
    if _looks_like_path(name):
        return _read_operator_file(Path(name).expanduser(), kind, user_dir)
    if not _NAME.match(name):
        raise ConfigError(f"{kind} template name {name!r} is not a plain name or a path to a .txt file")
    if user_dir is not None:
        own = user_dir / (name + _SUFFIX)
        if own.is_symlink() or own.exists():
            return _read_operator_file(own, kind, user_dir)
    shipped = _shipped_dir(kind).joinpath(name + _SUFFIX)
    if shipped.is_file():
        return shipped.read_text(encoding="utf-8").rstrip()
    available = ", ".join(list_templates(kind, user_dir))
    where = f" (add your own as {user_dir / (name + _SUFFIX)})" if user_dir is not None else ""
    raise ConfigError(f"unknown {kind} template {name!r}; available: {available}{where}")


class Templates:
    """The persona and human templates of one installation, and the rules for who may name which.

    ``root`` is the templates folder (``personas/`` and ``humans/`` inside; None: shipped ones
    only); ``default_persona`` and ``default_human`` are the operator's choices for new agents
    (names or paths, `load_template`'s rules); ``block_limit`` is the core memory block size
    that a template named by a platform admin must fit."""

    def __init__(
        self, *, root: Path | None, default_persona: str = "sam", default_human: str = "basic", block_limit: int = 2000
    ) -> None:
        self._root = root
        self._defaults: dict[TemplateKind, str] = {"persona": default_persona, "human": default_human}
        self._block_limit = block_limit

    def folder(self, kind: TemplateKind) -> Path | None:
        """Where the operator's templates of this kind live."""
        return None if self._root is None else self._root / f"{kind}s"

    def names(self, kind: TemplateKind) -> list[str]:
        """Every template name of this kind that can be chosen (shipped and the operator's)."""
        return list_templates(kind, self.folder(kind))

    def default(self, kind: TemplateKind) -> str:
        """The operator's template for new agents (a name or a path)."""
        return self._defaults[kind]

    def operator_text(self, kind: TemplateKind, name: str) -> str:
        """The text of a template the operator named (settings, the CLI): `load_template`'s rules."""
        return load_template(kind, name, user_dir=self.folder(kind))

    def admin_text(self, kind: TemplateKind, name: str) -> str:
        """The text of a template a platform admin named: an installed name whose text fits one
        core memory block. `UserFacingError` (phrased for the admin, naming no host path) otherwise."""
        available = ", ".join(self.names(kind))
        if not _NAME.match(name) or _looks_like_path(name):
            raise UserFacingError(
                f"{_shown(name)} is not a {kind} template name: choose one of {available} "
                "(the operator installs templates; files and paths cannot be named here)."
            )
        try:
            text = self.operator_text(kind, name)
        except ConfigError as exc:
            # The operator learns which file was refused and why; the admin only that the name is not there.
            if not str(exc).startswith(f"unknown {kind} template"):
                _log.warning("%s template %r cannot be offered to admins: %s", kind, name, exc)
            raise UserFacingError(f"unknown {kind} template {name!r}; available: {available}") from None
        if len(text) > self._block_limit:
            raise UserFacingError(
                f"{kind} template {name!r} is {len(text):,} characters, more than a core memory block holds "
                f"({self._block_limit:,}); ask the operator for a shorter one."
            )
        return text

    def for_agent(self, kind: TemplateKind, chosen: str | None) -> tuple[str, str]:
        """(name, text) a new agent, or a core memory reset, starts from: ``chosen`` (a name from a
        server's policy, or the one an agent was created with) by the admins' rules, or the operator's
        default when ``chosen`` is None, is the default, or is refused (with a warning naming it)."""
        default = self._defaults[kind]
        if chosen is not None and chosen != default:
            try:
                return chosen, self.admin_text(kind, chosen)
            except UserFacingError as exc:
                _log.warning(
                    "%s template %s refused (%s); using the default %r instead", kind, _shown(chosen), exc, default
                )
        return default, self.operator_text(kind, default)


def _looks_like_path(name: str) -> bool:
    return "/" in name or "\\" in name or name.startswith(("~", ".")) or name.endswith(_SUFFIX)


def _shown(value: str) -> str:
    return repr(value if len(value) <= _SHOWN else value[: _SHOWN - 3] + "...")


def _is_inside(path: Path, folder: Path) -> bool:
    """Whether `path`, every symlink resolved, is a file inside `folder` (itself resolved)."""
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except (OSError, RuntimeError):  # a symlink loop
        return False


def _read_operator_file(path: Path, kind: TemplateKind, user_dir: Path | None) -> str:
    if user_dir is None:
        raise ConfigError(f"{kind} template {str(path)!r} is a path, but there is no templates folder to keep it in")
    if not _is_inside(path, user_dir):
        raise ConfigError(
            f"{kind} template file {path} is outside the templates folder {user_dir} (or links outside it): "
            f"put the file there and name it without .txt"
        )
    if not path.is_file():
        raise ConfigError(f"{kind} template file {path} does not exist")
    try:
        return path.read_text(encoding="utf-8").rstrip()
    except UnicodeDecodeError as error:
        raise ConfigError(f"{kind} template file {path} is not valid UTF-8 (byte offset {error.start})") from None
    except OSError as error:
        raise ConfigError(f"{kind} template file {path} cannot be read: {error.strerror}") from None
