"""Structured logs: JSON lines off a terminal, readable text on one; never message text or secrets
unless the operator asks for content.

- **Context.** The runtime and the adapters wrap a turn or an event in `log_context(...)`; every
  record logged inside it (by any module, in that task and the tasks it starts) carries the
  agent id, the server (`discord:GUILD`, `slack:TEAM`) and the platform's event id as fields.
- **Content.** Message text goes into a log call only as ``extra=log_content(text)``: the
  handler writes it out when `MEMBOT_LOG_CONTENT` is on and drops it otherwise. Third-party
  libraries that log whole payloads at DEBUG (the openai SDK's request options, discord.py's
  gateway events, slack_sdk's request bodies, pymongo's commands) are held at INFO unless
  content is on.
- **Secrets.** Every secret in the settings (API keys, tokens, the MongoDB URI and its password)
  is replaced by ``***`` wherever it appears in a formatted line, tracebacks included, and so is
  the password of any ``scheme://user:password@host`` URI.
- **Outages.** A loop or listener that calls the store on every tick or event logs an ordinary
  outage (a locked database, MongoDB down) through an `OutageLog`: one warning when it starts,
  DEBUG lines while it lasts, one warning when the store answers again; never a traceback per try.

Only the CLI calls `configured_logging`; everything else just logs (shared/STYLE.md §13).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import Context, ContextVar, copy_context
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum, auto
from typing import Final, Literal, TextIO
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, SecretStr

from bot.errors import LeaseLostError, NotFoundError, SchemaVersionError, StoreError, VersionConflictError

__all__ = [
    "CONTENT_FIELD",
    "PAYLOAD_LOGGERS",
    "LogFields",
    "LogFormat",
    "OutageLog",
    "Redactor",
    "configured_logging",
    "current_log_fields",
    "is_store_outage",
    "log_content",
    "log_context",
    "settings_secrets",
    "task_log_context",
]

LogFormat = Literal["auto", "json", "text"]

#: The `extra` key under which a log call hands over message text (see `log_content`).
CONTENT_FIELD: Final = "membot_content"

#: Libraries whose DEBUG records carry request or event payloads (message text, prompts).
PAYLOAD_LOGGERS: Final = (
    "openai",
    "httpx",
    "httpx2",
    "httpcore",
    "httpcore2",
    "discord",
    "slack_sdk",
    "slack_bolt",
    "aiohttp",
    "pymongo",
    "websockets",
)
#: Chatty at INFO (a line per HTTP request): quiet unless debug logging is on.
_NOISY_LOGGERS: Final = ("httpx", "httpx2", "httpcore", "httpcore2", "openai")  # the SDK may vendor httpx as httpx2

_SHORTEST_SECRET = 6  # shorter values ("x", "ollama"'s stand-in keys) would blank ordinary words
_URI_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]+:)(?P<password>[^@\s]+)(?=@)")


@dataclass(frozen=True, slots=True)
class LogFields:
    """What a log record is about; None where it is about no such thing."""

    agent_id: str | None = None
    #: The server or workspace (`discord:GUILD`, `slack:TEAM`); None for DMs and the terminal.
    server: str | None = None
    #: The platform's id of the event being handled (`discord:msg:ID`, a Slack event id).
    event_id: str | None = None


class _Keep(Enum):
    """`log_context`'s default: leave this field as the enclosing context set it."""

    KEEP = auto()


_KEEP: Final = _Keep.KEEP
_NO_FIELDS: Final = LogFields()
_FIELDS: ContextVar[LogFields] = ContextVar("membot_log_fields", default=_NO_FIELDS)


def current_log_fields() -> LogFields:
    """The fields records logged here and now carry."""
    return _FIELDS.get()


@contextmanager
def log_context(
    *,
    agent_id: str | _Keep | None = _KEEP,
    server: str | _Keep | None = _KEEP,
    event_id: str | _Keep | None = _KEEP,
) -> Iterator[LogFields]:
    """Within the block, records carry these fields (those not given keep their outer value;
    None clears one). Everything set inside, by nested blocks or not, is undone on exit."""
    current = _FIELDS.get()
    fields = LogFields(
        agent_id=current.agent_id if isinstance(agent_id, _Keep) else agent_id,
        server=current.server if isinstance(server, _Keep) else server,
        event_id=current.event_id if isinstance(event_id, _Keep) else event_id,
    )
    token = _FIELDS.set(fields)
    try:
        yield fields
    finally:
        _FIELDS.reset(token)


def task_log_context(*, agent_id: str | None = None, server: str | None = None, event_id: str | None = None) -> Context:
    """A copy of the current context where records carry exactly these fields: for
    `asyncio.create_task(..., context=...)`, so a long-lived task (an agent's mailbox) does not
    inherit the event that happened to start it."""
    context = copy_context()
    context.run(_FIELDS.set, LogFields(agent_id=agent_id, server=server, event_id=event_id))
    return context


def log_content(text: str) -> dict[str, object]:
    """``extra=`` for a log call that would show message text: kept only when content logging is on."""
    return {CONTENT_FIELD: text}


class Redactor:
    """Replaces known secrets, and any URI's password, with ``***``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        found: set[str] = set()
        for secret in secrets:
            found.update(_secret_forms(secret))
        # Longest first, so a URI goes before the password inside it.
        self._secrets = sorted((s for s in found if len(s) >= _SHORTEST_SECRET), key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return _URI_PASSWORD.sub(r"\g<head>***", text)


def _secret_forms(secret: str) -> set[str]:
    """The secret, and for a URI with credentials the password as written and decoded."""
    forms = {secret}
    if "://" in secret:
        try:
            password = urlsplit(secret).password
        except ValueError:
            password = None
        if password:
            forms |= {password, unquote(password)}
    return forms


class _ContextFilter(logging.Filter):
    """Stamps each record with the fields of the context it was logged in."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = _FIELDS.get()
        for name in ("agent_id", "server", "event_id"):
            if not hasattr(record, name):
                setattr(record, name, getattr(fields, name))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the context fields, the error."""

    def __init__(self, *, redact: Redactor, is_content_logged: bool) -> None:
        super().__init__()
        self._redact = redact
        self._is_content_logged = is_content_logged

    def format(self, record: logging.LogRecord) -> str:
        redact = self._redact
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for name in ("agent_id", "server", "event_id"):
            value = getattr(record, name, None)
            if value is not None:
                line[name] = redact(str(value))
        content = getattr(record, CONTENT_FIELD, None)
        if self._is_content_logged and content is not None:
            line["content"] = redact(str(content))
        if record.exc_info:
            line["error"] = redact(self.formatException(record.exc_info))
        if record.stack_info:
            line["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``TIME LEVEL logger: message [agent=... server=... event=...]``, then any content and error."""

    def __init__(self, *, redact: Redactor, is_content_logged: bool) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._redact = redact
        self._is_content_logged = is_content_logged

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        head, newline, rest = text.partition("\n")  # the traceback, if any, follows the first line
        tags = " ".join(
            f"{label}={value}"
            for label, value in (
                ("agent", getattr(record, "agent_id", None)),
                ("server", getattr(record, "server", None)),
                ("event", getattr(record, "event_id", None)),
            )
            if value is not None
        )
        if tags:
            head = f"{head} [{tags}]"
        content = getattr(record, CONTENT_FIELD, None)
        if self._is_content_logged and content is not None:
            head = f"{head}\n    content: {content}"
        return self._redact(head + newline + rest)


@contextmanager
def configured_logging(
    *,
    level: str,
    log_format: LogFormat = "auto",
    is_debug: bool = False,
    is_content_logged: bool = False,
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> Iterator[logging.Handler]:
    """Within the block, every record of the process goes to `stream` (standard error): JSON
    when `log_format` says so, or when it is ``auto`` and the stream is not a terminal. On exit
    the handler goes and the loggers' levels are as they were (so tests can run it repeatedly)."""
    target = stream if stream is not None else sys.stderr
    is_json = log_format == "json" or (log_format == "auto" and not _is_terminal(target))
    redact = Redactor(secrets)
    handler = logging.StreamHandler(target)
    handler.setFormatter(
        JsonFormatter(redact=redact, is_content_logged=is_content_logged)
        if is_json
        else TextFormatter(redact=redact, is_content_logged=is_content_logged)
    )
    handler.addFilter(_ContextFilter())

    root = logging.getLogger()
    touched = [root, *(logging.getLogger(name) for name in (*PAYLOAD_LOGGERS, *_NOISY_LOGGERS))]
    levels = {logger: logger.level for logger in touched}
    root_level = logging.DEBUG if is_debug else _level(level)
    root.setLevel(root_level)
    for name in PAYLOAD_LOGGERS:
        # Payload-carrying DEBUG records stay out unless the operator asked for content; never
        # below the root's level, or a library's INFO lines would show under a WARNING setting.
        logging.getLogger(name).setLevel(logging.NOTSET if is_content_logged else max(logging.INFO, root_level))
    if not is_debug:
        for name in _NOISY_LOGGERS:
            logging.getLogger(name).setLevel(max(logging.WARNING, root_level))
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        handler.flush()
        for logger, previous in levels.items():
            logger.setLevel(previous)


def _level(name: str) -> int:
    value = logging.getLevelNamesMapping().get(name.upper())
    return value if value is not None else logging.INFO


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or not a real file
        return False


def settings_secrets(settings: BaseModel) -> list[str]:
    """Every secret value in the settings (each `SecretStr`, at any depth), for `configured_logging`."""
    found: list[str] = []
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, BaseModel):
            found += settings_secrets(value)
        elif isinstance(value, SecretStr):
            found.append(value.get_secret_value())
    return found


def is_store_outage(error: BaseException) -> bool:
    """The store could not be used at all (unreachable, locked, closed), as opposed to an answer
    about one record (not found, a lost race, a lease taken over) or a newer schema."""
    refusals = (NotFoundError, VersionConflictError, LeaseLostError, SchemaVersionError)
    return isinstance(error, StoreError) and not isinstance(error, refusals)


class OutageLog:
    """Logs one outage of the store, seen from one loop or listener (`where`), once: a warning
    when calls start failing, a DEBUG line per failed attempt while it lasts, and a warning when
    a call succeeds again, with how long it lasted and how many attempts failed."""

    def __init__(self, where: str, *, logger: logging.Logger, clock: Callable[[], float] = time.monotonic) -> None:
        self._where = where
        self._logger = logger
        self._clock = clock
        self._failures = 0
        self._since = 0.0

    @property
    def is_down(self) -> bool:
        return self._failures > 0

    def failed(self, error: BaseException) -> None:
        """A call failed for `error` (an outage: see `is_store_outage`)."""
        self._failures += 1
        if self._failures == 1:
            self._since = self._clock()
            self._logger.warning(
                "%s: store unavailable (%s); retrying, and saying so once it is back", self._where, error
            )
        else:
            self._logger.debug("%s: store still unavailable (attempt %d): %s", self._where, self._failures, error)

    def succeeded(self) -> None:
        """A call worked: ends the outage, if there was one."""
        if self._failures == 0:
            return
        self._logger.warning(
            "%s: store available again after %.0f s (%d failed attempts)",
            self._where,
            self._clock() - self._since,
            self._failures,
        )
        self._failures = 0
