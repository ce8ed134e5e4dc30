"""LLM token usage and daily budgets, stored beside memory by both stores.

**Usage** is counted per UTC day, server (`scope`, e.g. `discord:123`; None for direct
messages), channel, agent, user and model: each turn adds its LLM calls' prompt and completion
tokens, as the endpoint reported them, to the row of its key. `membot usage` and the admin
service's `usage` read it back summed over whatever the report groups by.

**Budgets** cap the tokens one server or one user may spend per UTC day (the limits are
settings). The store keeps, per budget key (`server:discord:123`, `user:discord:456`) and
day, how many tokens an admin reset forgave and whether the "budget reached" notice was
sent, so that across replicas it is sent once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Literal, Protocol

__all__ = [
    "GROUP_FIELDS",
    "BudgetKind",
    "BudgetState",
    "UsageGroup",
    "UsageRecord",
    "UsageStore",
    "budget_key",
    "spent_today",
    "summarise",
]

BudgetKind = Literal["server", "user"]
#: What a report may group usage by.
UsageGroup = Literal["day", "server", "channel", "agent", "user", "model"]


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageRecord:
    """Tokens spent under one key (or, in a summary, under every key of one group)."""

    day: date
    scope: str | None = None
    channel: str | None = None
    agent_id: str = ""
    #: `{platform}:{user id}` of the person whose message the turn answered; None for reflections.
    user_id: str | None = None
    model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetState:
    """One budget key on one day: tokens an admin reset forgave, and whether users were told."""

    reset_tokens: int = 0
    is_notified: bool = False


def budget_key(kind: BudgetKind, who: str) -> str:
    """The key of a server's (`who` = scope) or a user's (`who` = `{platform}:{id}`) budget."""
    return f"{kind}:{who}"


class UsageStore(Protocol):
    """Token usage per day/server/channel/agent/user/model, and daily budget state."""

    async def record_usage(self, record: UsageRecord) -> None:
        """Add the record's tokens and calls to the row of its key (created at zero if new)."""
        ...

    async def list_usage(
        self, *, since: date, until: date | None = None, scope: str | None = None, user_id: str | None = None
    ) -> list[UsageRecord]:
        """Every row from `since` to `until` (inclusive; None: no end), of one server and/or
        one user when given; ordered by day, server, channel, agent, user, model (None first)."""
        ...

    async def sum_usage(
        self,
        *,
        since: date,
        until: date | None = None,
        scope: str | None = None,
        user_id: str | None = None,
        agent_ids: Sequence[str] | None = None,
        by: Sequence[UsageGroup],
    ) -> list[UsageRecord]:
        """`summarise(list_usage(...), by)` of the rows of `agent_ids` only (when given), grouped by
        the store: reports over many agents and days move one row per group, not every row."""
        ...

    async def tokens_spent(self, day: date, *, scope: str | None = None, user_id: str | None = None) -> int:
        """Prompt + completion tokens of one day, for one server or one user (exactly one given)."""
        ...

    async def delete_user_usage(self, user_id: str) -> int:
        """Forget a user: delete the rows naming them; returns how many."""
        ...

    async def budget_state(self, key: str, day: date) -> BudgetState:
        """The state of a budget key on a day (zeroes when nothing was stored)."""
        ...

    async def mark_budget_notified(self, key: str, day: date) -> bool:
        """Note that users were told the budget is reached: True for the one caller that set it."""
        ...

    async def reset_budget(self, key: str, day: date, *, reset_tokens: int) -> None:
        """Forgive `reset_tokens` of the day's spend (what was spent at the reset) and clear the notice."""
        ...


async def spent_today(store: UsageStore, kind: BudgetKind, who: str, day: date) -> int:
    """Tokens a server or user spent on `day` that count against its budget (a reset forgives
    what was spent before it)."""
    spent = await (store.tokens_spent(day, scope=who) if kind == "server" else store.tokens_spent(day, user_id=who))
    state = await store.budget_state(budget_key(kind, who), day)
    return max(0, spent - state.reset_tokens)


#: The `UsageRecord` field (and stored column) of each group, in the key's order.
GROUP_FIELDS: dict[UsageGroup, str] = {
    "day": "day",
    "server": "scope",
    "channel": "channel",
    "agent": "agent_id",
    "user": "user_id",
    "model": "model",
}


def summarise(records: Iterable[UsageRecord], by: Sequence[UsageGroup]) -> list[UsageRecord]:
    """The records summed per distinct value of the `by` fields (the others blanked), in the
    order of those values (None and '' first)."""
    keep = {GROUP_FIELDS[group] for group in by}
    totals: dict[tuple[object, ...], UsageRecord] = {}
    for record in records:
        blank = replace(
            record,
            day=record.day if "day" in keep else date.min,
            scope=record.scope if "scope" in keep else None,
            channel=record.channel if "channel" in keep else None,
            agent_id=record.agent_id if "agent_id" in keep else "",
            user_id=record.user_id if "user_id" in keep else None,
            model=record.model if "model" in keep else "",
            prompt_tokens=0,
            completion_tokens=0,
            calls=0,
        )
        key = (blank.day, blank.scope or "", blank.channel or "", blank.agent_id, blank.user_id or "", blank.model)
        total = totals.get(key, blank)
        totals[key] = replace(
            total,
            prompt_tokens=total.prompt_tokens + record.prompt_tokens,
            completion_tokens=total.completion_tokens + record.completion_tokens,
            calls=total.calls + record.calls,
        )
    return [totals[key] for key in sorted(totals)]
