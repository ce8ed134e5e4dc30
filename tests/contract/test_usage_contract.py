"""The `UsageStore` contract (token usage, daily budgets): every store must pass every test here,
with the same results."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from typing import Protocol

import pytest

from bot.memory.store import MemoryStore
from bot.memory.usage_store import BudgetState, UsageGroup, UsageRecord, UsageStore, budget_key, summarise

DAY = date(2026, 5, 1)
NEXT = date(2026, 5, 2)
SCOPE = "discord:100"
ODD = 'srv.$id "quoted" ünïcödé 🙂'


class Store(MemoryStore, UsageStore, Protocol):
    """Both halves, as the runtime's meter uses them."""


def usage(
    *,
    day: date = DAY,
    scope: str | None = SCOPE,
    channel: str | None = "c1",
    agent_id: str = "a1",
    user_id: str | None = "discord:u1",
    model: str = "gpt-4o-mini",
    prompt: int = 100,
    completion: int = 10,
    calls: int = 1,
) -> UsageRecord:
    return UsageRecord(
        day=day,
        scope=scope,
        channel=channel,
        agent_id=agent_id,
        user_id=user_id,
        model=model,
        prompt_tokens=prompt,
        completion_tokens=completion,
        calls=calls,
    )


async def test_records_of_one_key_add_up_into_one_row(store: Store) -> None:
    await store.record_usage(usage(prompt=100, completion=10, calls=1))
    await store.record_usage(usage(prompt=50, completion=5, calls=2))
    assert await store.list_usage(since=DAY) == [usage(prompt=150, completion=15, calls=3)]


async def test_none_fields_read_back_as_none_and_odd_text_whole(store: Store) -> None:
    await store.record_usage(usage(scope=None, channel=None, user_id=None, agent_id=ODD, model=ODD))
    [row] = await store.list_usage(since=DAY)
    assert row == usage(scope=None, channel=None, user_id=None, agent_id=ODD, model=ODD)


async def test_keys_differing_in_any_field_stay_apart_and_read_back_in_key_order(store: Store) -> None:
    records = [
        usage(day=NEXT),
        usage(model="b-model"),
        usage(user_id="discord:u2"),
        usage(agent_id="a2"),
        usage(channel="c2"),
        usage(scope="discord:200"),
        usage(scope=None, channel=None),
        usage(),
    ]
    for record in records:
        await store.record_usage(record)
    rows = await store.list_usage(since=DAY)
    assert len(rows) == len(records)
    assert rows == sorted(
        records,
        key=lambda r: (r.day, r.scope or "", r.channel or "", r.agent_id, r.user_id or "", r.model),
    )


async def test_list_usage_filters_by_days_server_and_user(store: Store) -> None:
    await store.record_usage(usage(day=date(2026, 4, 30)))
    await store.record_usage(usage(day=DAY))
    await store.record_usage(usage(day=NEXT, scope="discord:200", user_id="discord:u2"))
    assert [r.day for r in await store.list_usage(since=DAY)] == [DAY, NEXT]
    assert [r.day for r in await store.list_usage(since=date(2026, 4, 1), until=DAY)] == [date(2026, 4, 30), DAY]
    assert [r.day for r in await store.list_usage(since=date(2026, 4, 1), scope="discord:200")] == [NEXT]
    assert [r.day for r in await store.list_usage(since=date(2026, 4, 1), user_id="discord:u1")] == [
        date(2026, 4, 30),
        DAY,
    ]
    assert await store.list_usage(since=date(2026, 6, 1)) == []


async def test_tokens_spent_sums_one_day_of_a_server_or_a_user(store: Store) -> None:
    await store.record_usage(usage(prompt=100, completion=10))
    await store.record_usage(usage(channel="c2", agent_id="a2", prompt=7, completion=3))
    await store.record_usage(usage(user_id="discord:u2", prompt=1000, completion=0))
    await store.record_usage(usage(day=NEXT, prompt=5, completion=5))
    await store.record_usage(usage(scope=None, channel=None, prompt=20, completion=0))  # the user's DM
    assert await store.tokens_spent(DAY, scope=SCOPE) == 110 + 10 + 1000
    assert await store.tokens_spent(DAY, user_id="discord:u1") == 110 + 10 + 20
    assert await store.tokens_spent(NEXT, scope=SCOPE) == 10
    assert await store.tokens_spent(DAY, scope="discord:999") == 0
    with pytest.raises(ValueError, match="exactly one"):
        await store.tokens_spent(DAY)


async def test_delete_user_usage_removes_only_that_users_rows(store: Store) -> None:
    await store.record_usage(usage(user_id="discord:u1"))
    await store.record_usage(usage(day=NEXT, user_id="discord:u1"))
    await store.record_usage(usage(user_id="discord:u2"))
    assert await store.delete_user_usage("discord:u1") == 2
    assert [r.user_id for r in await store.list_usage(since=DAY)] == ["discord:u2"]
    assert await store.delete_user_usage("discord:u1") == 0


async def test_a_budget_notice_is_marked_once_per_key_and_day(store: Store) -> None:
    key = budget_key("server", SCOPE)
    assert await store.budget_state(key, DAY) == BudgetState()
    assert await store.mark_budget_notified(key, DAY) is True
    assert await store.mark_budget_notified(key, DAY) is False
    assert await store.budget_state(key, DAY) == BudgetState(is_notified=True)
    assert await store.budget_state(key, NEXT) == BudgetState()
    assert await store.mark_budget_notified(key, NEXT) is True
    assert await store.mark_budget_notified(budget_key("user", "discord:u1"), DAY) is True


async def test_concurrent_notices_let_exactly_one_caller_win(store: Store) -> None:
    key = budget_key("user", "discord:u1")
    results = await asyncio.gather(*(store.mark_budget_notified(key, DAY) for _ in range(5)))
    assert sorted(results) == [False, False, False, False, True]


async def test_a_reset_forgives_tokens_and_clears_the_notice(store: Store) -> None:
    key = budget_key("server", SCOPE)
    await store.mark_budget_notified(key, DAY)
    await store.reset_budget(key, DAY, reset_tokens=1234)
    assert await store.budget_state(key, DAY) == BudgetState(reset_tokens=1234, is_notified=False)
    assert await store.mark_budget_notified(key, DAY) is True
    assert await store.budget_state(key, DAY) == BudgetState(reset_tokens=1234, is_notified=True)
    await store.reset_budget(key, DAY, reset_tokens=2000)
    assert await store.budget_state(key, DAY) == BudgetState(reset_tokens=2000, is_notified=False)


def test_summarise_sums_per_group_and_blanks_the_rest() -> None:
    rows = [
        usage(prompt=1, completion=1),
        usage(channel="c2", prompt=2, completion=2),
        usage(day=NEXT, prompt=4, completion=4),
        usage(scope=None, channel=None, prompt=8, completion=8),
    ]
    by_server = summarise(rows, ["server"])
    assert [(r.scope, r.total_tokens, r.calls) for r in by_server] == [(None, 16, 1), (SCOPE, 14, 3)]
    assert all(r.channel is None and r.agent_id == "" and r.day == date.min for r in by_server)
    by_day_channel = summarise(rows, ["day", "channel"])
    assert [(r.day, r.channel, r.total_tokens) for r in by_day_channel] == [
        (DAY, None, 16),
        (DAY, "c1", 2),
        (DAY, "c2", 4),
        (NEXT, "c1", 8),
    ]


async def test_sum_usage_groups_in_the_store_exactly_as_summarise_does(store: Store) -> None:
    records = [
        usage(),
        usage(day=NEXT, prompt=7),
        usage(scope=None, channel=None, agent_id="dm", user_id="discord:u2", completion=3),
        usage(scope="slack:T1", agent_id="a2", model="other", calls=4),
        usage(channel="c2", agent_id="a3", user_id=None, prompt=1_000),
        usage(day=NEXT, scope=ODD, agent_id=ODD, user_id=ODD, model=ODD),
    ]
    for record in records:
        await store.record_usage(record)
    groupings: list[tuple[UsageGroup, ...]] = [
        ("day",),
        ("day", "server"),
        ("day", "agent"),
        ("agent",),
        ("server", "channel", "agent"),
        ("model", "user"),
        ("day", "server", "channel", "agent", "user", "model"),
        (),
    ]
    for by in groupings:
        for filters in [{}, {"scope": SCOPE}, {"user_id": "discord:u1"}, {"until": DAY}]:
            rows = await store.list_usage(since=DAY, **filters)  # type: ignore[arg-type]
            summed = await store.sum_usage(since=DAY, by=by, **filters)  # type: ignore[arg-type]
            assert summed == summarise(rows, by), (by, filters)
    for agents in [["a1", ODD], [], ["nobody"]]:
        kept = [r for r in await store.list_usage(since=DAY) if r.agent_id in agents]
        assert await store.sum_usage(since=DAY, agent_ids=agents, by=("day", "agent")) == summarise(
            kept, ("day", "agent")
        )
    assert await store.sum_usage(since=NEXT + timedelta(days=1), by=()) == []
    assert await store.sum_usage(since=NEXT + timedelta(days=1), by=("day",)) == []
