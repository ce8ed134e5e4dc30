"""Discord attachments into archival memory, when the user asks for it.

The rule (docs/discord.md repeats it): a text file or PDF attached to a message the bot
answers is saved to the agent's archival memory when the message's own text asks for it,
that is, contains one of the words "remember", "save", "store", "archive", "memorize" or
"memorise" ("remember this file", "save this", "@membot store the attached notes"). Other
attachments, and attachments of messages that do not ask, are only named to the agent
("[file: notes.pdf]", "[image: cat.png]"). A file over `discord.max_attachment_bytes`, or one
that is not readable text, is refused with one sentence; nothing of it is saved.

Reading reuses `bot.memory.documents` (UTF-8 text, PDF pages; binary refused) and its chunking.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

import discord

from bot.errors import DocumentError
from bot.memory.documents import chunk_text, decode_document

__all__ = ["DocumentOutcome", "asks_to_save", "is_document", "read_documents"]

_SAVE_REQUEST = re.compile(r"\b(remember|save|store|archive|memori[sz]e)\b", re.IGNORECASE)
_DOCUMENT_TYPES = ("text/", "application/pdf", "application/json", "application/xml", "application/x-yaml")
_DOCUMENT_SUFFIXES = frozenset(
    {".txt", ".md", ".markdown", ".rst", ".pdf", ".csv", ".tsv", ".json", ".yaml", ".yml", ".xml", ".html", ".log"}
)


@dataclass(frozen=True, slots=True, kw_only=True)
class DocumentOutcome:
    """One attachment the user asked to save: its passages, or why it was refused."""

    attachment_id: int
    filename: str
    passages: tuple[str, ...] = ()
    #: Why nothing was saved, as a sentence without its full stop ("big.pdf is 9.0 MB, over ...").
    refusal: str | None = None

    @property
    def note(self) -> str:
        """How the agent sees the attachment in the message."""
        if self.refusal is not None:
            return f"[file: {self.filename}, not saved: {self.refusal}]"
        return f"[file: {self.filename}, saved to archival memory as {len(self.passages)} passages]"


def asks_to_save(text: str) -> bool:
    """Whether the message's text asks for its attachments to be kept."""
    return _SAVE_REQUEST.search(text) is not None


def is_document(attachment: discord.Attachment) -> bool:
    """A text file or a PDF, by its content type or its name."""
    content_type = (attachment.content_type or "").lower()
    if content_type.startswith(_DOCUMENT_TYPES):
        return True
    name = attachment.filename.lower()
    return "." in name and name[name.rindex(".") :] in _DOCUMENT_SUFFIXES


async def read_documents(attachments: list[discord.Attachment], *, max_bytes: int) -> list[DocumentOutcome]:
    """Download and cut each attachment into passages; a too big or unreadable one is refused."""
    return [await _read(attachment, max_bytes=max_bytes) for attachment in attachments]


async def _read(attachment: discord.Attachment, *, max_bytes: int) -> DocumentOutcome:
    name = attachment.filename
    if attachment.size > max_bytes:
        refusal = f"{name} is {_megabytes(attachment.size)}, over the {_megabytes(max_bytes)} limit"
        return DocumentOutcome(attachment_id=attachment.id, filename=name, refusal=refusal)
    try:
        data = await attachment.read()
        text = await asyncio.to_thread(decode_document, data, name=name, max_bytes=max_bytes)
    except discord.HTTPException as exc:
        refusal = f"{name} could not be downloaded (HTTP {exc.status})"
        return DocumentOutcome(attachment_id=attachment.id, filename=name, refusal=refusal)
    except DocumentError as exc:
        return DocumentOutcome(attachment_id=attachment.id, filename=name, refusal=str(exc))
    passages = tuple(f"(from the file {name}) {chunk}" for chunk in chunk_text(text))
    return DocumentOutcome(attachment_id=attachment.id, filename=name, passages=passages)


def _megabytes(count: int) -> str:
    if count < 1_000_000:
        return f"{count / 1000:.0f} kB"
    return f"{count / 1_000_000:.1f} MB"
