"""Time words in a recall query ("last week", "in May 2023", "3 days ago"), as a span of time.

`conversation_search("what did we plan last week")` is about messages *from* last week, not
about messages containing the words "last" and "week". `find_time_span` finds such phrases,
returns the half-open UTC span they name (relative to now) and the query without them, so that
recall search ranks by the remaining words and prefers messages from that span.

Recognised, case-insensitively (English): today, yesterday, last night; this/last
week|month|year; N days|weeks|months|years ago; a month name with an optional day and year
("May", "May 2023", "8 May 2023", "May 8, 2023"; a month without a year is its latest
occurrence not after today); a bare year from 1900 to 2099; an ISO date (2023-05-08).
Only the first phrase found counts (an impossible date such as 31 February counts as the less
precise phrase inside it, February 2023); weeks start on Monday.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

__all__ = ["TimeSpan", "find_time_span"]

_MONTHS = {
    name: number
    for number, names in enumerate(
        (
            ("january", "jan"), ("february", "feb"), ("march", "mar"), ("april", "apr"), ("may",),
            ("june", "jun"), ("july", "jul"), ("august", "aug"), ("september", "sep", "sept"),
            ("october", "oct"), ("november", "nov"), ("december", "dec"),
        ),
        start=1,
    )
    for name in names
}  # fmt: skip
_MONTH = "|".join(sorted(_MONTHS, key=len, reverse=True))
_UNITS = {"day": 1, "week": 7}

# Tried in order; the first that matches anywhere in the query wins.
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(pattern, re.IGNORECASE))
    for kind, pattern in (
        ("iso", r"\b(?:on\s+)?(\d{4})-(\d{2})-(\d{2})\b"),
        ("day_month_year", rf"\b(?:on\s+)?(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?({_MONTH})\.?,?\s+(\d{{4}})\b"),
        ("month_day_year", rf"\b(?:on\s+)?({_MONTH})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?,?\s+(\d{{4}})\b"),
        ("month_year", rf"\b(?:in\s+)?({_MONTH})\.?,?\s+(?:of\s+)?(\d{{4}})\b"),
        ("ago", r"\b(\d{1,3}|a|an|one|two|three|four|five|six|seven|eight|nine|ten)\s+(day|week|month|year)s?\s+ago\b"),
        ("relative", r"\b(this|last|past|previous)\s+(week|month|year)\b"),
        ("day_word", r"\b(today|yesterday|last\s+night|tonight)\b"),
        ("month", rf"\bin\s+({_MONTH})\b"),
        ("year", r"\b(?:in\s+)?(19\d{2}|20\d{2})\b"),
    )
)
_NUMBER_WORDS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5,
                 "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10}  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeSpan:
    """Messages with start <= created_at < end; `rest` is the query without the time phrase."""

    start: datetime
    end: datetime
    phrase: str
    rest: str

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment < self.end


def find_time_span(query: str, *, now: datetime) -> TimeSpan | None:
    """The span of time the query's first time phrase names, or None when it names none."""
    today = now.astimezone(UTC).date()
    for kind, pattern in _PATTERNS:
        match = pattern.search(query)
        if match is None:
            continue
        try:
            days = _span(kind, match.groups(), today)
        except ValueError:  # 31 February, month 13: not a date, so not a time phrase
            continue
        if days is None:
            continue
        rest = " ".join((query[: match.start()] + " " + query[match.end() :]).split())
        first, last = days
        return TimeSpan(start=_midnight(first), end=_midnight(last + timedelta(days=1)), phrase=match[0], rest=rest)
    return None


def _span(kind: str, groups: tuple[str | None, ...], today: date) -> tuple[date, date] | None:
    """First and last day (inclusive) of the phrase."""
    g = [x or "" for x in groups]
    match kind:
        case "iso":
            day = date(int(g[0]), int(g[1]), int(g[2]))
            return day, day
        case "day_month_year":
            day = date(int(g[2]), _MONTHS[g[1].lower()], int(g[0]))
            return day, day
        case "month_day_year":
            day = date(int(g[2]), _MONTHS[g[0].lower()], int(g[1]))
            return day, day
        case "month_year":
            return _month(int(g[1]), _MONTHS[g[0].lower()])
        case "month":
            month = _MONTHS[g[0].lower()]
            return _month(today.year if month <= today.month else today.year - 1, month)
        case "year":
            return date(int(g[0]), 1, 1), date(int(g[0]), 12, 31)
        case "day_word":
            word = " ".join(g[0].lower().split())
            day = today - timedelta(days=1) if word in ("yesterday", "last night") else today
            return day, day
        case "ago":
            count = _NUMBER_WORDS.get(g[0].lower()) or int(g[0])
            return _ago(count, g[1].lower(), today)
        case "relative":
            return _relative(g[0].lower(), g[1].lower(), today)
    return None


def _ago(count: int, unit: str, today: date) -> tuple[date, date]:
    if unit in _UNITS:
        day = today - timedelta(days=count * _UNITS[unit])
        # "two weeks ago" is that week, give or take: the days around the point, not one day.
        return (day, day) if unit == "day" else (day - timedelta(days=3), day + timedelta(days=3))
    if unit == "month":
        year, month = divmod(today.year * 12 + today.month - 1 - count, 12)
        return _month(year, month + 1)
    return date(today.year - count, 1, 1), date(today.year - count, 12, 31)


def _relative(which: str, unit: str, today: date) -> tuple[date, date]:
    back = 0 if which == "this" else 1
    if unit == "week":
        monday = today - timedelta(days=today.weekday() + 7 * back)
        return monday, monday + timedelta(days=6)
    if unit == "month":
        year, month = divmod(today.year * 12 + today.month - 1 - back, 12)
        return _month(year, month + 1)
    return date(today.year - back, 1, 1), date(today.year - back, 12, 31)


def _month(year: int, month: int) -> tuple[date, date]:
    first = date(year, month, 1)
    following = date(year + month // 12, month % 12 + 1, 1)
    return first, following - timedelta(days=1)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)
