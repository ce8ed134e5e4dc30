"""Splitting a long reply into messages a chat platform accepts (Discord: 2000 characters).

Cuts at the last paragraph break that fits, else a line break, a sentence end, a space, and
only then mid-word. A cut never falls inside a fenced code block (```` ``` ```` or ``~~~``)
when a cut outside one exists; a block too long for one message is closed at the end of
one chunk and reopened, with its language tag, at the start of the next.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["split_message"]

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})([^\n]*)$", re.MULTILINE)
_OUTSIDE_BOUNDARIES = (
    re.compile(r"\n[ \t]*\n"),  # paragraph
    re.compile(r"\n"),  # line
    re.compile("(?<=[.!?])[)\\]\"'\u00bb\u201d\u2019]*(?=\\s)"),  # sentence end (the cut falls after it)
    re.compile(r"\s"),  # word
)
_INSIDE_BOUNDARIES = (re.compile(r"\n"), re.compile(r"\s"))


@dataclass(frozen=True, slots=True)
class _Fence:
    """A fenced block: from the start of its opening line to the end of its closing line."""

    start: int
    end: int
    opener: str  # the opening line as written, e.g. "```python"
    marker: str  # what closes it: "```" (as long as the opener's run of backticks)

    def contains(self, cut: int) -> bool:
        return self.start < cut < self.end


def _fences(text: str) -> list[_Fence]:
    fences: list[_Fence] = []
    open_at: tuple[int, str, str] | None = None
    for match in _FENCE.finditer(text):
        run, info = match.group(1), match.group(2)
        if open_at is None:
            open_at = (match.start(), match.group(0).strip(), run)
        elif run[0] == open_at[2][0] and len(run) >= len(open_at[2]) and not info.strip():
            start, opener, marker = open_at
            fences.append(_Fence(start=start, end=match.end(), opener=opener, marker=marker))
            open_at = None
    if open_at is not None:  # unclosed: runs to the end of the text
        start, opener, marker = open_at
        fences.append(_Fence(start=start, end=len(text), opener=opener, marker=marker))
    return fences


def _fence_at(fences: list[_Fence], cut: int) -> _Fence | None:
    return next((fence for fence in fences if fence.contains(cut)), None)


def _last_cut(pattern: re.Pattern[str], text: str, *, limit: int, is_wanted: _CutFilter) -> int | None:
    best: int | None = None
    for match in pattern.finditer(text, 0, limit + 1):
        cut = match.end() if match.start() == match.end() else match.start()
        if 0 < cut <= limit and text[:cut].strip() and is_wanted(cut):
            best = cut
    return best


class _CutFilter:
    def __init__(self, fences: list[_Fence], *, is_inside: bool, floor: int = 0) -> None:
        self._fences = fences
        self._is_inside = is_inside
        self._floor = floor

    def __call__(self, cut: int) -> bool:
        fence = _fence_at(self._fences, cut)
        if not self._is_inside:
            return fence is None and cut > self._floor
        # Inside a block, after its opening line (else the chunk would hold an empty block).
        return fence is not None and cut > fence.start + len(fence.opener) + 1 and cut > self._floor


def split_message(text: str, *, limit: int = 2000) -> list[str]:
    """`text` as chunks of at most `limit` characters, each with its code fences balanced."""
    if limit < 40:
        raise ValueError("limit must be at least 40 characters to leave room for code fences")
    chunks: list[str] = []
    body = text.strip()
    while body:
        if len(body) <= limit:
            chunks.append(body)
            break
        chunk, body = _take(body, limit)
        if chunk:
            chunks.append(chunk)
    return chunks


def _take(body: str, limit: int) -> tuple[str, str]:
    """(the next chunk, what is left) for a `body` longer than `limit`."""
    fences = _fences(body)
    outside = _CutFilter(fences, is_inside=False)
    for pattern in _OUTSIDE_BOUNDARIES:
        cut = _last_cut(pattern, body, limit=limit, is_wanted=outside)
        if cut is not None:
            return body[:cut].rstrip(), body[cut:].lstrip()
    # No cut outside a block: split the block, leaving room to close it.
    inside = _CutFilter(fences, is_inside=True)
    room = limit - 1 - max((len(f.marker) for f in fences), default=3)
    for pattern in _INSIDE_BOUNDARIES:
        cut = _last_cut(pattern, body, limit=room, is_wanted=inside)
        if cut is not None:
            return _close_and_reopen(body, cut, fences)
    fence = _fence_at(fences, room)
    if fence is not None and room > fence.start + len(fence.opener) + 1:
        return _close_and_reopen(body, room, fences)
    return body[:limit], body[limit:].lstrip()


def _close_and_reopen(body: str, cut: int, fences: list[_Fence]) -> tuple[str, str]:
    fence = _fence_at(fences, cut)
    assert fence is not None
    head = body[:cut].rstrip()
    rest = body[cut:]
    rest = rest[1:] if rest.startswith("\n") else rest
    return f"{head}\n{fence.marker}", f"{fence.opener}\n{rest}"
