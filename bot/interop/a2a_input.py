"""What an A2A message says, and who says it, in membot's terms.

Each text part of a user message is one thing said. The speaker is, first match wins:
the part's metadata, the message's metadata (`speaker_name`, optionally `speaker_id`), or the
caller. So an orchestrator can forward a group chat's new messages as one A2A message with one
text part per message, each naming its author, and membot records them all in one turn.
Data, file and URL parts (an AG2 client's history, tool schemas) are not recorded: membot keeps
its own memory of the conversation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from a2a.types import Message, Role

__all__ = ["CALLER", "A2AInputError", "Said", "Speaker", "said_in"]

_MAX_NAME_CHARS = 100


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
    """One text part: its speaker, its text and its index among the message's parts."""

    speaker: Speaker
    text: str
    part: int


def said_in(message: Message, *, max_chars: int, caller: Speaker = CALLER) -> list[Said]:
    """The text parts of `message` with their speakers; `A2AInputError` when it cannot be taken."""
    if message.role != Role.ROLE_USER:
        raise A2AInputError("only messages with role ROLE_USER can be sent to a membot agent")
    if not message.message_id:
        raise A2AInputError("the message has no messageId")
    default = _speaker(message.metadata, fallback=caller) if message.HasField("metadata") else caller
    said: list[Said] = []
    for index, part in enumerate(message.parts):
        if part.WhichOneof("content") != "text" or not part.text.strip():
            continue
        speaker = _speaker(part.metadata, fallback=default) if part.HasField("metadata") else default
        said.append(Said(speaker=speaker, text=part.text, part=index))
    if not said:
        raise A2AInputError("the message has no text part: membot agents take text")
    size = sum(len(s.text) for s in said)
    if size > max_chars:
        raise A2AInputError(f"the message is {size} characters of text; this server accepts at most {max_chars}")
    return said


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
