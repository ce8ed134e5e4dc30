"""What an A2A message says, and who says it, in membot's terms.

One A2A message is one message to the agent: its text parts are joined (a blank line between
them). The speaker is the message's metadata (`speaker_name`, optionally `speaker_id`), else
the caller. A part may name its own speaker in its metadata: when the parts do not all share
one speaker, each part is labelled with its speaker's name (`ada: ...`), so an orchestrator can
still forward a group chat's new messages in one request and the agent sees who said what.
Data, file and URL parts (an AG2 client's history, tool schemas) are not recorded: membot keeps
its own memory of the conversation. A message has at most `max_parts` parts and `max_chars`
characters of text; beyond, it is refused before anything is stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from a2a.types import Message, Role

__all__ = ["CALLER", "A2AInputError", "Said", "Speaker", "said_in"]

_MAX_NAME_CHARS = 100
_SEPARATOR = "\n\n"


class _Struct(Protocol):
    """The part of protobuf's `Struct` (message and part metadata) read here."""

    def __contains__(self, key: object) -> bool: ...

    def __getitem__(self, key: str) -> object: ...


class A2AInputError(ValueError):
    """The message cannot be taken: the reason, phrased for the caller."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Speaker:
    id: str
    name: str


#: Who speaks when the message does not say.
CALLER = Speaker(id="a2a:caller", name="A2A caller")


@dataclass(frozen=True, slots=True, kw_only=True)
class Said:
    """What one A2A message says: one speaker, one text."""

    speaker: Speaker
    text: str


def said_in(message: Message, *, max_chars: int, max_parts: int, caller: Speaker = CALLER) -> Said:
    """`message` as one thing said; `A2AInputError` when it cannot be taken."""
    if message.role != Role.ROLE_USER:
        raise A2AInputError("only messages with role ROLE_USER can be sent to a membot agent")
    if not message.message_id:
        raise A2AInputError("the message has no messageId")
    if len(message.parts) > max_parts:
        raise A2AInputError(
            f"the message has {len(message.parts)} parts; this server takes at most {max_parts} per message "
            "(send the rest as further messages)"
        )
    default = _speaker(message.metadata, fallback=caller) if message.HasField("metadata") else caller
    parts: list[tuple[Speaker, str]] = []
    for part in message.parts:
        if part.WhichOneof("content") != "text" or not part.text.strip():
            continue
        speaker = _speaker(part.metadata, fallback=default) if part.HasField("metadata") else default
        parts.append((speaker, part.text))
    if not parts:
        raise A2AInputError("the message has no text part: membot agents take text")
    size = sum(len(text) for _, text in parts)
    if size > max_chars:
        raise A2AInputError(f"the message is {size} characters of text; this server accepts at most {max_chars}")
    speakers = {speaker for speaker, _ in parts}
    if len(speakers) == 1:
        return Said(speaker=parts[0][0], text=_SEPARATOR.join(text for _, text in parts))
    return Said(speaker=default, text=_SEPARATOR.join(f"{speaker.name}: {text}" for speaker, text in parts))


def _speaker(metadata: _Struct, *, fallback: Speaker) -> Speaker:
    name = _text_field(metadata, "speaker_name")
    speaker_id = _text_field(metadata, "speaker_id")
    if name is None and speaker_id is None:
        return fallback
    return Speaker(id=f"a2a:{speaker_id or name}", name=name or speaker_id or fallback.name)


def _text_field(metadata: _Struct, key: str) -> str | None:
    if key not in metadata:
        return None
    value = metadata[key]
    if not isinstance(value, str) or not value.strip():
        raise A2AInputError(f"metadata {key} must be a non-empty string")
    if len(value) > _MAX_NAME_CHARS:
        raise A2AInputError(f"metadata {key} is longer than {_MAX_NAME_CHARS} characters")
    return value.strip()
