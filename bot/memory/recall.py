"""Recall memory: every message ever exchanged, searchable by text and by date, paged.

The functions here format results for the model: compact lines, not JSON, because search
results are paid for in prompt tokens on every following step.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta

from bot.errors import FunctionArgumentError
from bot.memory.store import MemoryStore, NewMessage, StoredMessage

__all__ = ["PAGE_SIZE", "RecallMemory", "format_message_line", "parse_date_bound"]

PAGE_SIZE = 5
_RESULT_CHARS = 400


class RecallMemory:
    """The recall tier over one store; every method takes the agent id."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    async def record(self, agent_id: str, messages: Sequence[NewMessage]) -> list[StoredMessage]:
        """Append messages (all or none); the one path every message takes into recall."""
        return await self._store.append_messages(agent_id, messages)

    async def count(self, agent_id: str) -> int:
        return await self._store.count_messages(agent_id)

    async def search(self, agent_id: str, query: str, *, page: int = 0) -> str:
        """`conversation_search`: one page of messages ranked by relevance."""
        if not query.strip():
            raise FunctionArgumentError("query must not be empty.")
        found, total = await self._store.search_messages(agent_id, query, offset=page * PAGE_SIZE, limit=PAGE_SIZE)
        return _format_page(found, total, page, empty=f"No messages match {query!r}.")

    async def search_date(self, agent_id: str, start_date: str, end_date: str, *, page: int = 0) -> str:
        """`conversation_search_date`: messages from start_date through end_date (whole days, UTC)."""
        start = parse_date_bound(start_date, is_end=False)
        end = parse_date_bound(end_date, is_end=True)
        if end <= start:
            raise FunctionArgumentError(f"end_date {end_date!r} is before start_date {start_date!r}.")
        found, total = await self._store.messages_between(
            agent_id, start, end, offset=page * PAGE_SIZE, limit=PAGE_SIZE
        )
        return _format_page(found, total, page, empty=f"No messages between {start_date} and {end_date}.")


def parse_date_bound(text: str, *, is_end: bool) -> datetime:
    """A date (`2024-05-01`) or ISO date-time; a bare end date includes that whole day."""
    value = text.strip()
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            moment = datetime.combine(day, time.min, tzinfo=UTC)
            return moment + timedelta(days=1) if is_end else moment
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise FunctionArgumentError(f"{text!r} is not a date; use YYYY-MM-DD (for example 2024-05-01).") from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def format_message_line(message: StoredMessage, *, max_chars: int = _RESULT_CHARS) -> str:
    """`[2024-05-01 14:03] Alice: text` with long texts shortened."""
    who = message.speaker_name or ("you" if message.role == "assistant" else message.role)
    text = message.content if len(message.content) <= max_chars else message.content[:max_chars] + "…"
    return f"[{message.created_at.astimezone(UTC):%Y-%m-%d %H:%M}] {who}: {text}"


def _format_page(found: Sequence[StoredMessage], total: int, page: int, *, empty: str) -> str:
    if not found:
        return empty if page == 0 else f"No results on page {page}; there are {total} results in all."
    pages = (total + PAGE_SIZE - 1) // PAGE_SIZE
    header = f"Page {page} of {pages} (pages start at 0), {total} results:"
    return "\n".join([header, *(format_message_line(m) for m in found)])
