"""Splitting long replies for Discord's 2000-character messages."""

from __future__ import annotations

import re

import pytest

from bot.text_split import split_message

_FENCE_LINE = re.compile(r"^ {0,3}(```|~~~)", re.MULTILINE)


def _balanced(chunk: str) -> bool:
    return len(_FENCE_LINE.findall(chunk)) % 2 == 0


def _words(text: str) -> list[str]:
    return [w for w in text.split() if not w.startswith(("```", "~~~"))]


def test_short_text_is_one_chunk_and_empty_text_none() -> None:
    assert split_message("hello there") == ["hello there"]
    assert split_message("   \n ") == []


def test_cuts_at_the_last_paragraph_break_that_fits() -> None:
    first, second = "a" * 60 + ".", "b" * 50 + "."
    assert split_message(f"{first}\n\n{second}", limit=80) == [first, second]


def test_then_at_a_sentence_end() -> None:
    text = "One two three. Four five six. Seven eight nine ten eleven."
    chunks = split_message(text, limit=40)
    assert chunks == ["One two three. Four five six.", "Seven eight nine ten eleven."]


def test_then_at_a_space_and_only_then_mid_word() -> None:
    assert split_message("alpha beta gamma delta epsilon zeta eta theta", limit=40) == [
        "alpha beta gamma delta epsilon zeta eta",
        "theta",
    ]
    assert split_message("x" * 100, limit=40) == ["x" * 40, "x" * 40, "x" * 20]


def test_a_code_block_that_fits_is_never_cut() -> None:
    code = "```python\n" + "\n".join(f"print({i})" for i in range(10)) + "\n```"
    text = "Here is the code:\n" + code + "\nThat is all, friends."
    chunks = split_message(text, limit=len(code) + 5)
    assert code in chunks
    assert all(_balanced(c) and len(c) <= len(code) + 5 for c in chunks)


def test_a_code_block_too_long_is_closed_and_reopened_with_its_language() -> None:
    lines = [f"value_{i} = compute({i})  # step {i}" for i in range(200)]
    text = "Intro.\n\n```python\n" + "\n".join(lines) + "\n```\n\nOutro."
    chunks = split_message(text, limit=2000)
    assert len(chunks) >= 4
    for chunk in chunks:
        assert len(chunk) <= 2000 and _balanced(chunk)
    code_chunks = [c for c in chunks if "value_" in c]
    assert all(c.startswith("```python\n") for c in code_chunks[1:])
    assert all(c.endswith("\n```") for c in code_chunks[:-1])
    assert chunks[-1].endswith("```\n\nOutro.")
    assert _words("\n".join(chunks)) == _words(text), "nothing lost or duplicated"


@pytest.mark.parametrize("limit", [40, 100, 500, 2000])
def test_every_chunk_fits_and_is_balanced_and_nothing_is_lost(limit: int) -> None:
    prose = " ".join(f"Sentence number {i} ends here." for i in range(150))
    code = "```\n" + "\n".join("x = 1 + 2 + 3" for _ in range(150)) + "\n```"
    text = f"{prose}\n\n{code}\n\n{prose}"
    chunks = split_message(text, limit=limit)
    assert all(0 < len(c) <= limit and _balanced(c) for c in chunks)
    assert _words(" ".join(chunks)) == _words(text)


def test_limit_too_small_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 40"):
        split_message("text", limit=10)
