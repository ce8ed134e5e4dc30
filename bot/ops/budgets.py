"""Token usage and daily budgets: the runtime's `UsageMeter`.

Every turn's LLM calls (summaries included; reflection heartbeats too) are charged to the
`UsageStore` under the turn's UTC day, server, channel, agent, user and model. Before a turn,
the server's and the user's spend of the day (less what an admin reset forgave) are compared
with their limits (`MEMBOT_BUDGET__DAILY_TOKENS_PER_SERVER` / `..._PER_USER`; 0: no cap). Once
one is spent, the turn is refused: the first refusal of the day for that budget tells the user
(once across replicas: `mark_budget_notified`), later ones stay quiet, and no LLM call is made
until the next UTC day or an admin reset. A turn that starts under the limit runs to its end,
so a budget may be overrun by at most one turn. Heartbeats are refused silently.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime

from bot.memory.usage_store import BudgetKind, UsageRecord, UsageStore, budget_key, spent_today
from bot.metering import LLMCall, Refusal, TurnContext

__all__ = ["NOTICES", "DailyBudgets"]

#: What the user is told, once per budget and day.
NOTICES: dict[BudgetKind, str] = {
    "server": "This server has used up today's AI budget, so I'll stay quiet until midnight UTC "
    "(or until an admin resets the budget).",
    "user": "You've used up your AI budget for today, so I'll stay quiet until midnight UTC "
    "(or until an admin resets your budget).",
}


class DailyBudgets:
    """Charges turns to the usage store and refuses those whose server or user is over budget."""

    def __init__(
        self,
        *,
        store: UsageStore,
        tokens_per_server: int,
        tokens_per_user: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._limits: dict[BudgetKind, int] = {"server": tokens_per_server, "user": tokens_per_user}
        self._clock = clock

    def _today(self) -> date:
        return self._clock().astimezone(UTC).date()

    async def admit(self, turn: TurnContext) -> Refusal | None:
        day = self._today()
        budgets: tuple[tuple[BudgetKind, str | None], ...] = (("server", turn.scope), ("user", turn.user_id))
        for kind, who in budgets:
            limit = self._limits[kind]
            if who is None or limit <= 0:
                continue
            spent = await spent_today(self._store, kind, who, day)
            if spent < limit:
                continue
            is_first = turn.kind == "message" and await self._store.mark_budget_notified(budget_key(kind, who), day)
            return Refusal(
                reason=f"daily token budget of {kind} {who} is spent ({spent} of {limit} tokens on {day})",
                notice=NOTICES[kind] if is_first else None,
            )
        return None

    async def charge(self, turn: TurnContext, calls: Sequence[LLMCall]) -> None:
        day = self._today()
        by_model: dict[str, tuple[int, int, int]] = {}
        for call in calls:
            prompt, completion, count = by_model.get(call.model, (0, 0, 0))
            by_model[call.model] = (prompt + call.prompt_tokens, completion + call.completion_tokens, count + 1)
        for model, (prompt, completion, count) in by_model.items():
            await self._store.record_usage(
                UsageRecord(
                    day=day,
                    scope=turn.scope,
                    channel=turn.channel,
                    agent_id=turn.agent_id,
                    user_id=turn.user_id,
                    model=model,
                    prompt_tokens=prompt,
                    completion_tokens=completion,
                    calls=count,
                )
            )
