"""`membot usage`: LLM token usage from the store, as a table or CSV.

Rows are summed per distinct value of the `--by` fields (default: day, server, channel, agent)
over the last `--days` UTC days (or from `--since`). Agents are shown by name when they still
exist (a router agent's name is its conversation key), else by id.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Protocol, TextIO, cast, get_args

from rich.console import Console
from rich.table import Table

from bot.app import open_store
from bot.config import Settings
from bot.errors import UserFacingError
from bot.memory.store import MemoryStore
from bot.memory.usage_store import UsageGroup, UsageRecord, UsageStore

__all__ = ["GROUPS", "parse_groups", "usage_command"]

GROUPS: tuple[UsageGroup, ...] = get_args(UsageGroup)
_DEFAULT_GROUPS: tuple[UsageGroup, ...] = ("day", "server", "channel", "agent")


class _Store(MemoryStore, UsageStore, Protocol):
    """Both stores are both."""


def parse_groups(text: str) -> tuple[UsageGroup, ...]:
    """`day,server` -> ("day", "server"); an unknown name is a clear error."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in GROUPS]
    if unknown or not names:
        raise UserFacingError(f"--by takes a comma-separated list of: {', '.join(GROUPS)} (got {text!r})")
    return tuple(cast(UsageGroup, name) for name in dict.fromkeys(names))


async def usage_command(
    settings: Settings,
    *,
    days: int = 7,
    since: date | None = None,
    by: Sequence[UsageGroup] = _DEFAULT_GROUPS,
    scope: str | None = None,
    as_csv: bool = False,
    out: TextIO | None = None,
    today: date | None = None,
) -> int:
    if days < 1:
        raise UserFacingError(f"--days must be at least 1 (got {days})")
    until = today or datetime.now(UTC).date()
    start = since or until - timedelta(days=days - 1)
    async with open_store(settings) as opened:
        store = cast(_Store, opened)
        rows = await store.sum_usage(since=start, until=until, scope=scope, by=by)
        names = await _agent_names(store, rows) if "agent" in by else {}
    stream = out or sys.stdout
    if as_csv:
        _write_csv(stream, rows, by, names)
    else:
        _print_table(stream, rows, by, names, start=start, until=until)
    return 0


async def _agent_names(store: MemoryStore, rows: Sequence[UsageRecord]) -> dict[str, str]:
    names: dict[str, str] = {}
    for agent_id in {r.agent_id for r in rows}:
        agent = await store.get_agent(agent_id)
        names[agent_id] = agent.name if agent is not None else agent_id
    return names


def _cells(record: UsageRecord, by: Sequence[UsageGroup], names: dict[str, str]) -> list[str]:
    values: dict[UsageGroup, str] = {
        "day": record.day.isoformat(),
        "server": record.scope or "(dm)",
        "channel": record.channel or "-",
        "agent": names.get(record.agent_id, record.agent_id),
        "user": record.user_id or "-",
        "model": record.model,
    }
    return [values[group] for group in by]


def _write_csv(stream: TextIO, rows: Sequence[UsageRecord], by: Sequence[UsageGroup], names: dict[str, str]) -> None:
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow([*by, "calls", "prompt_tokens", "completion_tokens", "total_tokens"])
    for record in rows:
        writer.writerow(
            [
                *_cells(record, by, names),
                record.calls,
                record.prompt_tokens,
                record.completion_tokens,
                record.total_tokens,
            ]
        )


def _print_table(
    stream: TextIO,
    rows: Sequence[UsageRecord],
    by: Sequence[UsageGroup],
    names: dict[str, str],
    *,
    start: date,
    until: date,
) -> None:
    console = Console(file=stream, highlight=False, soft_wrap=True)
    if not rows:
        console.print(f"No LLM usage recorded from {start} to {until} (UTC).")
        return
    table = Table(*by, "calls", "prompt", "completion", "total", title=f"LLM token usage, {start} to {until} (UTC)")
    for column in table.columns[len(by) :]:
        column.justify = "right"
    for record in rows:
        table.add_row(
            *_cells(record, by, names),
            f"{record.calls:,}",
            f"{record.prompt_tokens:,}",
            f"{record.completion_tokens:,}",
            f"{record.total_tokens:,}",
        )
    table.add_section()
    table.add_row(
        "total",
        *([""] * (len(by) - 1)),
        f"{sum(r.calls for r in rows):,}",
        f"{sum(r.prompt_tokens for r in rows):,}",
        f"{sum(r.completion_tokens for r in rows):,}",
        f"{sum(r.total_tokens for r in rows):,}",
    )
    console.print(table)
