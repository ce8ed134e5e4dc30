"""Reading attached documents and cutting them into archival passages."""

from __future__ import annotations

import io
import itertools
import re
from pathlib import Path

import pytest
from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

from bot.errors import DocumentError, UserFacingError
from bot.memory.documents import chunk_text, decode_document, iter_document_chunks, read_document

MAX = 100_000


def make_pdf(pages: list[str], *, password: str | None = None) -> bytes:
    """A real PDF with one line of Helvetica text per page, written by pypdf."""
    writer = PdfWriter()
    for text in pages:
        page = writer.add_blank_page(width=612, height=792)
        font = DictionaryObject(
            {
                NameObject("/Type"): NameObject("/Font"),
                NameObject("/Subtype"): NameObject("/Type1"),
                NameObject("/BaseFont"): NameObject("/Helvetica"),
            }
        )
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})}
        )
        content = DecodedStreamObject()
        content.set_data(f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode("latin-1"))
        page.replace_contents(content)
    if password is not None:
        writer.encrypt(user_password=password, algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# --- reading ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["notes.txt", "notes.md", "notes.markdown", "notes.rst", "data.csv", "x.json", "README"]
)
def test_text_files_of_any_suffix_are_read(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, name, "# Title\r\n\r\nCafé ünïcode — ok\r\n".encode())
    assert read_document(path, max_bytes=MAX) == "# Title\n\nCafé ünïcode — ok\n"


def test_utf8_byte_order_mark_is_dropped(tmp_path: Path) -> None:
    path = write(tmp_path, "bom.txt", b"\xef\xbb\xbfhello")
    assert read_document(path, max_bytes=MAX) == "hello"


def test_pdf_text_of_each_page(tmp_path: Path) -> None:
    path = write(tmp_path, "report.pdf", make_pdf(["Hello from page one.", "Second page here."]))
    assert read_document(path, max_bytes=MAX) == "Hello from page one.\n\nSecond page here."


def test_pdf_is_recognised_by_content_without_suffix() -> None:
    assert decode_document(make_pdf(["By magic."]), name="upload", max_bytes=MAX) == "By magic."


def test_errors_are_user_facing() -> None:
    assert issubclass(DocumentError, UserFacingError)


@pytest.mark.parametrize(
    ("data", "name", "message"),
    [
        (b"ELF\0\0\x01\x02binary", "prog", r"prog looks like a binary file \(it contains NUL bytes\)"),
        (bytes(range(1, 32)) * 4 + b"some text", "weird.txt", r"too many control characters"),
        (b"hello \xff world", "latin.txt", r"latin.txt is not valid UTF-8 \(byte 0xff at offset 6\)"),
        (b"", "empty.txt", r"empty.txt is empty"),
        (b"  \n\n\t ", "blank.md", r"blank.md is empty"),
        (make_pdf(["secret"], password="pw"), "locked.pdf", r"locked.pdf is an encrypted PDF"),
        (make_pdf([""]), "scan.pdf", r"scan.pdf has no extractable text"),
        (b"%PDF-1.7\nthis is not a pdf", "broken.pdf", r"broken.pdf is not a readable PDF"),
    ],
)
def test_refusals_say_why(data: bytes, name: str, message: str) -> None:
    with pytest.raises(DocumentError, match=message):
        decode_document(data, name=name, max_bytes=MAX)


def test_text_with_escape_sequences_is_still_text() -> None:
    # A log with a few ANSI colour codes is text, not binary.
    data = b"\x1b[31merror\x1b[0m: disk full\n" * 20
    assert decode_document(data, name="log.txt", max_bytes=MAX).startswith("\x1b[31merror")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DocumentError, match=r"nope\.txt: no such file"):
        read_document(tmp_path / "nope.txt", max_bytes=MAX)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(DocumentError, match="is a directory"):
        read_document(tmp_path, max_bytes=MAX)


def test_oversize_is_refused_before_reading(tmp_path: Path) -> None:
    path = write(tmp_path, "big.txt", b"a" * 2_500)
    with pytest.raises(DocumentError, match=r"big.txt is 2.5 kB, over the 2.0 kB limit"):
        read_document(path, max_bytes=2_000)
    assert read_document(path, max_bytes=2_500) == "a" * 2_500


# --- chunking ---------------------------------------------------------------------------------

WORDS = re.compile(r"\S+")


def test_short_text_is_one_chunk() -> None:
    assert chunk_text("  Just this.  ") == ["Just this."]


@pytest.mark.parametrize("text", ["", "   ", "\n\n\n"])
def test_empty_text_gives_no_chunks(text: str) -> None:
    assert chunk_text(text) == []


def test_paragraph_boundaries_come_first() -> None:
    first = "Alpha sentence one. Alpha sentence two."
    second = "Beta sentence one. Beta sentence two."
    chunks = chunk_text(f"{first}\n\n{second}", max_chars=len(first) + 5, overlap=0)
    assert chunks == [first, second]


def test_sentences_before_words() -> None:
    text = "One short sentence here. Another short sentence there. A third one closes."
    chunks = chunk_text(text, max_chars=60, overlap=0)
    assert chunks == ["One short sentence here. Another short sentence there.", "A third one closes."]


def test_lines_split_a_table_without_blank_lines() -> None:
    rows = [f"row{i},value {i},more data" for i in range(30)]
    chunks = chunk_text("\n".join(rows), max_chars=100, overlap=0)
    assert all(len(chunk) <= 100 for chunk in chunks)
    assert [line for chunk in chunks for line in chunk.split("\n")] == rows


def test_words_are_never_cut_and_limits_hold() -> None:
    words = [f"word{i}" for i in range(500)]
    text = " ".join(words)
    chunks = chunk_text(text, max_chars=120, overlap=30)
    assert len(chunks) > 10
    for chunk in chunks:
        assert len(chunk) <= 120
        assert set(WORDS.findall(chunk)) <= set(words)
    # Every word survives, in order, once the overlaps are taken out.
    seen: list[str] = []
    for chunk in chunks:
        for word in WORDS.findall(chunk):
            if not seen or int(word[4:]) > int(seen[-1][4:]):
                seen.append(word)
    assert seen == words


def test_overlap_repeats_the_end_of_the_previous_chunk_at_a_word_boundary() -> None:
    text = " ".join(f"w{i:03d}" for i in range(200))
    chunks = chunk_text(text, max_chars=100, overlap=23)  # 23: the cut falls inside a word
    for previous, current in itertools.pairwise(chunks):
        shared = next(n for n in range(min(len(previous), len(current)), 0, -1) if previous.endswith(current[:n]))
        assert 0 < shared <= 23
        assert current[shared] == " "  # the overlap ends where a word ends
        assert previous[-shared - 1] == " "  # and starts where a word starts


def test_zero_overlap_has_no_repetition() -> None:
    text = " ".join(f"w{i}" for i in range(300))
    chunks = chunk_text(text, max_chars=80, overlap=0)
    assert " ".join(chunks) == text


def test_only_a_token_longer_than_a_chunk_is_cut() -> None:
    token = "x" * 250
    chunks = chunk_text(f"before {token} after", max_chars=100, overlap=10)
    assert chunks == ["before", "x" * 100, "x" * 100, "x" * 50 + " after"]


def test_chunking_is_deterministic() -> None:
    text = "\n\n".join(f"Paragraph {i}. " + "Some words follow here. " * (i % 7 + 1) for i in range(40))
    assert chunk_text(text, max_chars=200, overlap=40) == chunk_text(text, max_chars=200, overlap=40)


@pytest.mark.parametrize(("max_chars", "overlap"), [(0, 0), (100, 100), (100, -1)])
def test_bad_arguments(max_chars: int, overlap: int) -> None:
    with pytest.raises(ValueError, match="must"):
        chunk_text("text", max_chars=max_chars, overlap=overlap)


def test_iter_document_chunks_numbers_the_passages(tmp_path: Path) -> None:
    path = write(tmp_path, "story.md", ("A sentence of the story. " * 20 + "\n\n").encode() * 5)
    chunks = list(iter_document_chunks(path, max_bytes=MAX, max_chars=300, overlap=0))
    assert [chunk.index for chunk in chunks] == list(range(len(chunks)))
    assert {chunk.total for chunk in chunks} == {len(chunks)}
    assert {chunk.source for chunk in chunks} == {"story.md"}
