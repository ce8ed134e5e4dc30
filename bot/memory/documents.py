"""Documents as text: reading what a user attaches, and cutting it into passages for archival memory.

`read_document` takes a file (``/attach PATH``); `decode_document` takes the bytes of a
platform attachment. Both return text or refuse with one `DocumentError` sentence the user
can act on. `chunk_text` splits that text on paragraph, line, sentence and word boundaries
so each passage stands on its own in a search result.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bot.errors import DocumentError

__all__ = [
    "DocumentChunk",
    "chunk_text",
    "decode_document",
    "iter_document_chunks",
    "read_document",
]

# Control characters that real text files carry; anything else below 0x20 hints at binary.
_TEXT_CONTROLS = frozenset(b"\t\n\r\f\v\x1b")
_MAX_CONTROL_RATIO = 0.10
# A small PDF can inflate into a huge text (compressed streams); stop well past any real book.
_PDF_TEXT_PER_BYTE = 50


def read_document(path: Path, *, max_bytes: int) -> str:
    """The text of a file: UTF-8 text of any kind, or a PDF's pages joined by blank lines."""
    if not path.exists():
        raise DocumentError(f"{path}: no such file")
    if path.is_dir():
        raise DocumentError(f"{path} is a directory, not a document")
    size = path.stat().st_size
    if size > max_bytes:
        raise DocumentError(f"{path} is {_size(size)}, over the {_size(max_bytes)} limit")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DocumentError(f"{path} cannot be read: {error.strerror}") from None
    return decode_document(data, name=str(path), max_bytes=max_bytes)


def decode_document(data: bytes, *, name: str, max_bytes: int) -> str:
    """The text of a document's bytes; ``name`` (a file name) is used for the PDF check and messages."""
    if len(data) > max_bytes:
        raise DocumentError(f"{name} is {_size(len(data))}, over the {_size(max_bytes)} limit")
    if name.lower().endswith(".pdf") or data.startswith(b"%PDF-"):
        text = _pdf_text(data, name=name, max_chars=max(max_bytes, 1) * _PDF_TEXT_PER_BYTE)
    else:
        text = _plain_text(data, name=name)
    if not text.strip():
        raise DocumentError(f"{name} is empty")
    return text


def _plain_text(data: bytes, *, name: str) -> str:
    if b"\0" in data:
        raise DocumentError(f"{name} looks like a binary file (it contains NUL bytes), not text")
    controls = sum(1 for byte in data if byte < 0x20 and byte not in _TEXT_CONTROLS)
    if data and controls / len(data) > _MAX_CONTROL_RATIO:
        raise DocumentError(f"{name} looks like a binary file (too many control characters), not text")
    try:
        text = data.decode("utf-8-sig")  # -sig: drop the byte order mark some editors write
    except UnicodeDecodeError as error:
        bad = data[error.start]
        raise DocumentError(f"{name} is not valid UTF-8 (byte 0x{bad:02x} at offset {error.start})") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _pdf_text(data: bytes, *, name: str, max_chars: int) -> str:
    # Imported here: pypdf costs ~50 ms at start-up and most sessions attach no PDF.
    from pypdf import PasswordType, PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError, WrongPasswordError

    # How pypdf says it cannot open an encryption (AES needs the optional `cryptography` package).
    encryption_errors = (DependencyError, FileNotDecryptedError, WrongPasswordError)
    # pypdf raises many kinds of exception on damaged files; at this trust boundary each one
    # means the same thing to the user: this PDF cannot be read.
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
            raise DocumentError(f"{name} is an encrypted PDF; save an unencrypted copy and attach that")
        pages: list[str] = []
        total = 0
        for page in reader.pages:
            page_text = (page.extract_text() or "").replace("\0", "").strip()
            total += len(page_text)
            if total > max_chars:
                raise DocumentError(f"{name} holds more text than membot accepts from one document")
            if page_text:
                pages.append(page_text)
    except DocumentError:
        raise
    except Exception as error:
        if isinstance(error, encryption_errors):
            raise DocumentError(f"{name} is an encrypted PDF; save an unencrypted copy and attach that") from None
        raise DocumentError(f"{name} is not a readable PDF ({type(error).__name__}: {error})") from None
    if not pages:
        raise DocumentError(f"{name} has no extractable text (a scanned PDF? membot does not read images)")
    return "\n\n".join(pages)


def _size(count: int) -> str:
    for unit, scale in (("MB", 1_000_000), ("kB", 1_000)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"


# --- chunking ----------------------------------------------------------------------------------

# Boundaries from coarse to fine, each with the text that joins two pieces split there.
_BOUNDARIES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\n[ \t]*\n\s*"), "\n\n"),  # paragraphs
    (re.compile(r"[ \t]*\n\s*"), "\n"),  # lines (CSV rows, lists, verse)
    (re.compile(r"(?:(?<=[.!?\u2026])|(?<=[.!?\u2026][\"'\u201d\u2019)\]]))\s+"), " "),  # sentences
    (re.compile(r"\s+"), " "),  # words
)


def chunk_text(text: str, *, max_chars: int = 1500, overlap: int = 100) -> list[str]:
    """Split text into passages of at most ``max_chars``, each starting with up to ``overlap`` chars of the last.

    Splits at the coarsest boundary that makes pieces fit: paragraphs, then lines, then
    sentences, then words; a single token longer than ``max_chars`` is cut. The overlap
    starts at a word boundary, so no passage begins mid-word. Deterministic; no empty chunks.
    """
    if max_chars < 1:
        raise ValueError("max_chars must be positive")
    if not 0 <= overlap < max_chars:
        raise ValueError("overlap must be at least 0 and less than max_chars")
    text = text.replace("\r\n", "\n").strip()
    chunks: list[str] = []
    current = ""
    for joiner, piece in _pieces(text, max_chars, level=0):
        if not current:
            current = piece
        elif len(current) + len(joiner) + len(piece) <= max_chars:
            current += joiner + piece
        else:
            chunks.append(current)
            tail = _overlap_tail(current, overlap)
            # The overlap yields to progress: a piece that needs the room gets it.
            current = tail + joiner + piece if tail and len(tail) + len(joiner) + len(piece) <= max_chars else piece
    if current:
        chunks.append(current)
    return chunks


def _pieces(text: str, max_chars: int, *, level: int) -> Iterator[tuple[str, str]]:
    """(joiner before, piece) pairs, each piece at most max_chars and non-empty."""
    if len(text) <= max_chars:
        if text:
            yield "", text
        return
    if level == len(_BOUNDARIES):
        # One token longer than a chunk: the only place a word is cut.
        for start in range(0, len(text), max_chars):
            yield "", text[start : start + max_chars]
        return
    pattern, joiner = _BOUNDARIES[level]
    parts = [part.strip() for part in pattern.split(text)]
    for index, part in enumerate(p for p in parts if p):
        for inner_index, (inner_joiner, piece) in enumerate(_pieces(part, max_chars, level=level + 1)):
            yield (joiner if inner_index == 0 and index > 0 else inner_joiner), piece


def _overlap_tail(chunk: str, overlap: int) -> str:
    """The last ≤ overlap characters of chunk, starting at a word boundary ('' if none fits)."""
    if overlap == 0 or len(chunk) <= overlap:
        return "" if overlap == 0 else chunk
    tail = chunk[-overlap:]
    if not chunk[-overlap - 1].isspace():
        space = re.search(r"\s", tail)
        if space is None:
            return ""
        tail = tail[space.end() :]
    return tail.strip()


@dataclass(frozen=True, slots=True, kw_only=True)
class DocumentChunk:
    """One passage of a document, numbered for a progress bar."""

    source: str
    index: int
    total: int
    text: str


def iter_document_chunks(
    path: Path, *, max_bytes: int, max_chars: int = 1500, overlap: int = 100
) -> Iterator[DocumentChunk]:
    """Read and chunk a document, yielding passages that know their position (``index`` of ``total``)."""
    chunks = chunk_text(read_document(path, max_bytes=max_bytes), max_chars=max_chars, overlap=overlap)
    for index, text in enumerate(chunks):
        yield DocumentChunk(source=path.name, index=index, total=len(chunks), text=text)
