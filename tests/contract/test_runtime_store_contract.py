"""The `RuntimeStore` contract (inbox, leases and fencing, heartbeat schedule) and
`recorded_platform_ids`: every store must pass every test here, with the same results.

Times are explicit (the store compares the caller's clock, never its own), so nothing sleeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Protocol

import pytest

from bot.errors import LeaseLostError
from bot.memory.runtime_store import WRITE_FENCE, DueHeartbeat, Fence, HeartbeatState, InboxEntry, Lease, RuntimeStore
from bot.memory.store import AgentRecord, AgentUpdate, CoreBlock, MemoryStore, NewMessage, NewPassage


class Store(MemoryStore, RuntimeStore, Protocol):
    """Both halves, as the runtime uses them."""


T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


async def new_agent(store: Store, agent_id: str = "agent-1") -> None:
    record = AgentRecord(
        id=agent_id,
        name=f"name of {agent_id}",
        conversation_key=None,
        persona_template="sam",
        human_template="basic",
        model="test-model",
        created_at=T0,
        updated_at=T0,
    )
    await store.create_agent(
        record, [CoreBlock(agent_id=agent_id, label="persona", value="I am Sam.", limit=2000, version=1, updated_at=T0)]
    )


def entry(entry_id: str, *keys: str, agent_id: str = "agent-1", at: datetime = T0) -> InboxEntry:
    return InboxEntry(id=entry_id, keys=keys, agent_id=agent_id, payload=f'{{"text": "{entry_id}"}}', received_at=at)


def msg(content: str, *, platform_id: str | None = None) -> NewMessage:
    return NewMessage(role="user", content=content, created_at=T0, tokens=1, platform_message_id=platform_id)


async def pending_ids(store: Store, agent_id: str | None = None, limit: int = 100) -> list[str]:
    return [e.id for e in await store.inbox_pending(agent_id=agent_id, limit=limit)]


@contextmanager
def fenced(agent_id: str, token: int) -> Iterator[None]:
    """Memory writes in this block are made under `token`, as the runtime makes a turn's."""
    reset = WRITE_FENCE.set(Fence(agent_id=agent_id, token=token))
    try:
        yield
    finally:
        WRITE_FENCE.reset(reset)


# -- inbox -------------------------------------------------------------------------------------


async def test_inbox_put_stores_an_entry_that_reads_back_whole(store: Store) -> None:
    stored = InboxEntry(
        id="e1",
        keys=("slack:event:Ev1", "slack:msg:C1:1700000000.000100"),
        agent_id="agent-1",
        payload='{"text": "héllo 🙂", "n": 1}',
        received_at=T0 + timedelta(microseconds=250),
    )
    assert await store.inbox_put(stored) is True
    assert await store.inbox_pending() == [stored]
    assert (await store.inbox_pending())[0].received_at.utcoffset() == timedelta(0)


async def test_inbox_refuses_an_entry_with_any_taken_key(store: Store) -> None:
    assert await store.inbox_put(entry("a", "slack:event:1", "slack:msg:C1:ts1"))
    # The `message` twin of an `app_mention`: another event id, the same message.
    assert await store.inbox_put(entry("b", "slack:event:2", "slack:msg:C1:ts1")) is False
    assert await store.inbox_put(entry("c", "slack:event:1")) is False
    assert await store.inbox_put(entry("a2", "slack:event:1", "slack:msg:C1:ts1")) is False
    assert await pending_ids(store) == ["a"]


async def test_a_refused_entry_stores_none_of_its_keys(store: Store) -> None:
    assert await store.inbox_put(entry("a", "k1"))
    assert await store.inbox_put(entry("b", "k2", "k1", "k3")) is False
    assert await store.inbox_put(entry("c", "k2"))
    assert await store.inbox_put(entry("d", "k3"))
    assert await pending_ids(store) == ["a", "c", "d"]


async def test_concurrent_puts_of_one_event_store_it_once(store: Store) -> None:
    results = await asyncio.gather(*(store.inbox_put(entry(f"e{i}", f"own:{i}", "shared")) for i in range(10)))
    assert sorted(results) == [False] * 9 + [True]
    assert len(await pending_ids(store)) == 1


async def test_inbox_pending_is_oldest_first_per_agent_or_all(store: Store) -> None:
    await store.inbox_put(entry("late", "k1", at=T0 + 2 * MINUTE))
    await store.inbox_put(entry("early", "k2", at=T0))
    await store.inbox_put(entry("other", "k3", agent_id="agent-2", at=T0 + MINUTE))
    await store.inbox_put(entry("late-too", "k4", at=T0 + 2 * MINUTE))  # a tie: arrival order

    assert await pending_ids(store) == ["early", "other", "late", "late-too"]
    assert await pending_ids(store, "agent-1") == ["early", "late", "late-too"]
    assert await pending_ids(store, "agent-2") == ["other"]
    assert await pending_ids(store, "nobody") == []
    assert await pending_ids(store, "agent-1", limit=2) == ["early", "late"]
    assert await pending_ids(store, limit=0) == []


async def test_inbox_records_replies_in_order(store: Store) -> None:
    await store.inbox_put(entry("e1", "k1"))
    await store.inbox_put(entry("e2", "k2"))
    for reply in ("r1", "r2", "r1"):
        await store.inbox_record_reply("e1", reply)
    await store.inbox_record_reply("unknown", "r9")  # ignored

    replies = {e.id: e.replies for e in await store.inbox_pending()}
    assert replies == {"e1": ("r1", "r2", "r1"), "e2": ()}


async def test_inbox_finish_sets_status_and_error_and_counts_attempts(store: Store) -> None:
    for name in ("e1", "e2", "e3"):
        await store.inbox_put(entry(name, name))

    await store.inbox_finish(["e1"], status="pending", error="store down")  # tried, to be tried again
    await store.inbox_finish(["e1"], status="pending", error="store down again")
    [e1, *_] = await store.inbox_pending()
    assert (e1.id, e1.status, e1.attempts, e1.error) == ("e1", "pending", 2, "store down again")

    await store.inbox_finish(["e1", "e2"], status="done")
    await store.inbox_finish(["e3"], status="failed", error="no adapter")
    await store.inbox_finish(["unknown"], status="done")  # ignored
    assert await store.inbox_pending() == []
    # Finished entries stay (and keep their keys) until pruned.
    assert await store.inbox_put(entry("again", "e1")) is False
    assert await store.inbox_prune(older_than=T0 + MINUTE) == 3


async def test_inbox_prune_deletes_old_finished_entries_and_their_keys(store: Store) -> None:
    await store.inbox_put(entry("old-done", "k-old-done", at=T0))
    await store.inbox_put(entry("old-failed", "k-old-failed", at=T0 + MINUTE))
    await store.inbox_put(entry("old-pending", "k-old-pending", at=T0))
    await store.inbox_put(entry("new-done", "k-new-done", at=T0 + 10 * MINUTE))
    await store.inbox_finish(["old-done", "new-done"], status="done")
    await store.inbox_finish(["old-failed"], status="failed", error="boom")

    assert await store.inbox_prune(older_than=T0 + 10 * MINUTE) == 2
    assert await store.inbox_prune(older_than=T0 + 10 * MINUTE) == 0

    assert await pending_ids(store) == ["old-pending"]
    assert await store.inbox_put(entry("x1", "k-old-done"))
    assert await store.inbox_put(entry("x2", "k-old-failed"))
    assert await store.inbox_put(entry("x3", "k-new-done")) is False
    assert await store.inbox_put(entry("x4", "k-old-pending")) is False


# -- leases --------------------------------------------------------------------------------------


async def test_a_free_agent_is_leased_with_token_1_and_then_held(store: Store) -> None:
    lease = await store.lease_acquire("agent-1", "r1", now=T0, expires_at=T0 + MINUTE)
    assert lease is not None
    assert (lease.agent_id, lease.owner, lease.token, lease.expires_at) == ("agent-1", "r1", 1, T0 + MINUTE)

    assert (
        await store.lease_acquire("agent-1", "r2", now=T0 + 59 * timedelta(seconds=1), expires_at=T0 + 2 * MINUTE)
        is None
    )
    other = await store.lease_acquire("agent-2", "r2", now=T0, expires_at=T0 + MINUTE)
    assert other is not None and other.token == 1


async def test_an_expired_lease_is_taken_over_with_the_next_token(store: Store) -> None:
    await store.lease_acquire("agent-1", "r1", now=T0, expires_at=T0 + MINUTE)
    taken = await store.lease_acquire("agent-1", "r2", now=T0 + MINUTE, expires_at=T0 + 2 * MINUTE)  # expiry <= now
    assert taken is not None and (taken.owner, taken.token, taken.expires_at) == ("r2", 2, T0 + 2 * MINUTE)
    back = await store.lease_acquire("agent-1", "r1", now=T0 + 3 * MINUTE, expires_at=T0 + 4 * MINUTE)
    assert back is not None and (back.owner, back.token) == ("r1", 3)


async def test_the_holder_reacquiring_keeps_its_token_and_extends_the_expiry(store: Store) -> None:
    await store.lease_acquire("agent-1", "r1", now=T0, expires_at=T0 + MINUTE)
    again = await store.lease_acquire("agent-1", "r1", now=T0 + timedelta(seconds=30), expires_at=T0 + 5 * MINUTE)
    assert again is not None and (again.token, again.expires_at) == (1, T0 + 5 * MINUTE)
    assert await store.lease_acquire("agent-1", "r2", now=T0 + 2 * MINUTE, expires_at=T0 + 3 * MINUTE) is None
    # Expired but untaken: still ours, with the same token.
    late = await store.lease_acquire("agent-1", "r1", now=T0 + 10 * MINUTE, expires_at=T0 + 11 * MINUTE)
    assert late is not None and late.token == 1


async def test_only_the_holder_renews(store: Store) -> None:
    lease = await store.lease_acquire("agent-1", "r1", now=T0, expires_at=T0 + MINUTE)
    assert lease is not None
    renewed = await store.lease_renew(lease, expires_at=T0 + 5 * MINUTE)
    assert renewed is not None and (renewed.owner, renewed.token, renewed.expires_at) == ("r1", 1, T0 + 5 * MINUTE)
    assert await store.lease_acquire("agent-1", "r2", now=T0 + 2 * MINUTE, expires_at=T0 + 3 * MINUTE) is None

    taken = await store.lease_acquire("agent-1", "r2", now=T0 + 5 * MINUTE, expires_at=T0 + 6 * MINUTE)
    assert taken is not None and taken.token == 2
    assert await store.lease_renew(lease, expires_at=T0 + 10 * MINUTE) is None
    # The late renewal changed nothing: r2's lease still ends at 6 minutes.
    assert (
        await store.lease_acquire(
            "agent-1", "r3", now=T0 + timedelta(minutes=5, seconds=59), expires_at=T0 + 7 * MINUTE
        )
        is None
    )
    assert await store.lease_acquire("agent-1", "r3", now=T0 + 6 * MINUTE, expires_at=T0 + 7 * MINUTE) is not None


async def test_release_frees_the_lease_and_keeps_the_token_history(store: Store) -> None:
    lease = await store.lease_acquire("agent-1", "r1", now=T0, expires_at=T0 + 10 * MINUTE)
    assert lease is not None
    assert await store.lease_acquire("agent-1", "r2", now=T0 + MINUTE, expires_at=T0 + 10 * MINUTE) is None

    await store.lease_release(lease)
    after = await store.lease_acquire("agent-1", "r2", now=T0 + MINUTE, expires_at=T0 + 10 * MINUTE)
    assert after is not None and (after.owner, after.token) == ("r2", 2)


async def test_a_late_release_after_a_takeover_does_nothing(store: Store) -> None:
    stale = await store.lease_acquire("agent-1", "r1", now=T0, expires_at=T0 + MINUTE)
    assert stale is not None
    current = await store.lease_acquire("agent-1", "r2", now=T0 + 2 * MINUTE, expires_at=T0 + 10 * MINUTE)
    assert current is not None

    await store.lease_release(stale)
    await store.lease_release(replace(current, token=current.token - 1))

    assert await store.lease_acquire("agent-1", "r3", now=T0 + 3 * MINUTE, expires_at=T0 + 10 * MINUTE) is None
    assert await store.lease_renew(current, expires_at=T0 + 20 * MINUTE) is not None


async def test_a_first_claim_and_the_holders_reclaims_take_over_from_no_one(store: Store) -> None:
    first = await store.lease_acquire("agent-1", "r1", now=T0, expires_at=T0 + MINUTE)
    assert first is not None and first.taken_over_from is None
    again = await store.lease_acquire("agent-1", "r1", now=T0 + timedelta(seconds=30), expires_at=T0 + 2 * MINUTE)
    assert again is not None and again.taken_over_from is None
    # Expired but untaken: still ours, not a takeover.
    late = await store.lease_acquire("agent-1", "r1", now=T0 + 5 * MINUTE, expires_at=T0 + 6 * MINUTE)
    assert late == replace(first, expires_at=T0 + 6 * MINUTE)


async def test_a_claim_after_a_release_takes_over_from_no_one(store: Store) -> None:
    lease = await store.lease_acquire("agent-1", "r1", now=T0, expires_at=T0 + 10 * MINUTE)
    assert lease is not None
    await store.lease_release(lease)
    after = await store.lease_acquire("agent-1", "r2", now=T0 + MINUTE, expires_at=T0 + 2 * MINUTE)
    assert after is not None and (after.owner, after.token, after.taken_over_from) == ("r2", 2, None)
    # Released long ago, then claimed once it would have expired anyway: still a release.
    await store.lease_release(after)
    later = await store.lease_acquire("agent-1", "r3", now=T0 + 20 * MINUTE, expires_at=T0 + 21 * MINUTE)
    assert later is not None and (later.token, later.taken_over_from) == (3, None)


async def test_a_claim_after_an_expiry_names_the_owner_it_took_over_from(store: Store) -> None:
    await store.lease_acquire("agent-1", "r1", now=T0, expires_at=T0 + MINUTE)
    taken = await store.lease_acquire("agent-1", "r2", now=T0 + MINUTE, expires_at=T0 + 2 * MINUTE)
    assert taken == Lease(agent_id="agent-1", owner="r2", token=2, expires_at=T0 + 2 * MINUTE, taken_over_from="r1")
    # The new holder's own re-claim is not a takeover.
    again = await store.lease_acquire("agent-1", "r2", now=T0 + MINUTE, expires_at=T0 + 3 * MINUTE)
    assert again is not None and (again.token, again.taken_over_from) == (2, None)
    back = await store.lease_acquire("agent-1", "r1", now=T0 + 4 * MINUTE, expires_at=T0 + 5 * MINUTE)
    assert back is not None and (back.owner, back.token, back.taken_over_from) == ("r1", 3, "r2")


async def test_a_renewal_takes_over_from_no_one(store: Store) -> None:
    await store.lease_acquire("agent-1", "r1", now=T0, expires_at=T0 + MINUTE)
    taken = await store.lease_acquire("agent-1", "r2", now=T0 + 2 * MINUTE, expires_at=T0 + 3 * MINUTE)
    assert taken is not None and taken.taken_over_from == "r1"
    renewed = await store.lease_renew(taken, expires_at=T0 + 5 * MINUTE)
    assert renewed is not None and renewed.taken_over_from is None


async def test_lease_check_refuses_only_an_older_token(store: Store) -> None:
    await store.lease_check("agent-1", 0)  # never leased
    await store.lease_acquire("agent-1", "r1", now=T0, expires_at=T0 + MINUTE)
    await store.lease_acquire("agent-1", "r2", now=T0 + MINUTE, expires_at=T0 + 2 * MINUTE)

    await store.lease_check("agent-1", 2)
    with pytest.raises(LeaseLostError):
        await store.lease_check("agent-1", 1)
    await store.lease_check("agent-2", 1)


async def test_of_ten_owners_acquiring_at_once_exactly_one_wins(store: Store) -> None:
    leases = await asyncio.gather(
        *(store.lease_acquire("agent-1", f"r{i}", now=T0, expires_at=T0 + MINUTE) for i in range(10))
    )
    winners = [lease for lease in leases if lease is not None]
    assert len(winners) == 1
    assert winners[0].token == 1


# -- fencing --------------------------------------------------------------------------------------


async def taken_over(store: Store) -> None:
    """agent-1 with some memory, leased by r1 (token 1), then taken over by r2 (token 2)."""
    await new_agent(store)
    await store.append_messages("agent-1", [msg("before")])
    await store.insert_passages("agent-1", [NewPassage(text="fact", created_at=T0)])
    await store.lease_acquire("agent-1", "r1", now=T0, expires_at=T0 + MINUTE)
    await store.lease_acquire("agent-1", "r2", now=T0 + MINUTE, expires_at=T0 + 2 * MINUTE)


async def memory_of(store: Store, agent_id: str = "agent-1") -> tuple[object, ...]:
    return (
        await store.get_agent(agent_id),
        await store.get_blocks(agent_id),
        await store.get_messages(agent_id),
        await store.list_passages(agent_id),
        await store.passages_without_embedding(agent_id, "e", limit=10),
    )


async def test_writes_under_a_stale_lease_token_are_refused_and_store_nothing(store: Store) -> None:
    await taken_over(store)
    [passage] = await store.list_passages("agent-1")
    before = await memory_of(store)

    with fenced("agent-1", 1):
        with pytest.raises(LeaseLostError):
            await store.append_messages("agent-1", [msg("after")])
        with pytest.raises(LeaseLostError):
            await store.write_block(
                "agent-1", "persona", "I am someone else.", limit=2000, expected_version=1, messages=[msg("edit")]
            )
        with pytest.raises(LeaseLostError):
            await store.write_block("agent-1", "notes", "new", limit=2000, expected_version=0)
        with pytest.raises(LeaseLostError):
            await store.update_agent("agent-1", AgentUpdate(summary="stale"), expected_version=1)
        with pytest.raises(LeaseLostError):
            await store.insert_passages("agent-1", [NewPassage(text="stale fact", created_at=T0)])
        with pytest.raises(LeaseLostError):
            await store.set_passage_embedding(passage.id, [1.0, 0.0], "e")
        with pytest.raises(LeaseLostError):
            await store.delete_messages_from("agent-1", 1)
        with pytest.raises(LeaseLostError):
            await store.delete_blocks("agent-1")
        with pytest.raises(LeaseLostError):
            await store.delete_passages("agent-1")

    assert await memory_of(store) == before


async def test_writes_under_the_current_lease_token_succeed(store: Store) -> None:
    await taken_over(store)
    [passage] = await store.list_passages("agent-1")

    with fenced("agent-1", 2):
        assert [m.seq for m in await store.append_messages("agent-1", [msg("after")])] == [2]
        block = await store.write_block("agent-1", "persona", "I am Sam, still.", limit=2000, expected_version=1)
        assert block.version == 2
        assert (await store.update_agent("agent-1", AgentUpdate(summary="s"), expected_version=1)).summary == "s"
        assert len(await store.insert_passages("agent-1", [NewPassage(text="more", created_at=T0)])) == 1
        await store.set_passage_embedding(passage.id, [1.0, 0.0], "e")
        assert await store.delete_messages_from("agent-1", 2) == 1
        assert await store.delete_passages("agent-1") == 2
        await store.delete_blocks("agent-1")

    assert await store.count_messages("agent-1") == 1
    assert await store.get_blocks("agent-1") == []


async def test_unfenced_writes_and_writes_fenced_for_another_agent_are_not_checked(store: Store) -> None:
    await taken_over(store)
    await new_agent(store, "agent-2")  # never leased

    await store.append_messages("agent-1", [msg("unfenced")])
    with fenced("agent-2", 1):
        await store.append_messages("agent-1", [msg("fenced for another agent")])
        await store.update_agent("agent-1", AgentUpdate(summary="s"), expected_version=1)
        await store.append_messages("agent-2", [msg("fenced, no lease")])
    with fenced("agent-3", 0):
        [passage] = await store.list_passages("agent-1")
        await store.set_passage_embedding(passage.id, [1.0, 0.0], "e")

    assert [m.content for m in await store.get_messages("agent-1")] == [
        "before",
        "unfenced",
        "fenced for another agent",
    ]
    assert await store.count_messages("agent-2") == 1


# -- heartbeat schedule ---------------------------------------------------------------------------


async def claim(store: Store, owner: str, now: datetime, *, limit: int = 10) -> list[DueHeartbeat]:
    return await store.claim_due_heartbeats(owner, now=now, claim_until=now + 10 * MINUTE, limit=limit)


async def test_scheduling_moves_the_one_heartbeat_and_cancel_clears_it(store: Store) -> None:
    assert await store.heartbeat_state("agent-1") is None
    await store.schedule_heartbeat("agent-1", due_at=T0 + MINUTE)
    await store.schedule_heartbeat("agent-1", due_at=T0 + 5 * MINUTE)
    assert await store.heartbeat_state("agent-1") == HeartbeatState(
        agent_id="agent-1", due_at=T0 + 5 * MINUTE, last_fired_at=None, budget_day=None, tokens_spent=0
    )

    await store.cancel_heartbeat("agent-1")
    await store.cancel_heartbeat("nobody")
    state = await store.heartbeat_state("agent-1")
    assert state is not None and state.due_at is None
    assert await store.heartbeat_state("nobody") is None
    assert await claim(store, "r1", T0 + 10 * MINUTE) == []


async def test_only_due_heartbeats_are_claimed_earliest_first(store: Store) -> None:
    await store.schedule_heartbeat("agent-a", due_at=T0 + MINUTE)
    await store.schedule_heartbeat("agent-b", due_at=T0 - MINUTE)
    await store.schedule_heartbeat("agent-c", due_at=T0 + 2 * MINUTE)
    await store.schedule_heartbeat("agent-d", due_at=T0 + 10 * MINUTE)

    assert await claim(store, "r1", T0 - 2 * MINUTE) == []
    first = await claim(store, "r1", T0 + 2 * MINUTE, limit=1)
    assert first == [DueHeartbeat(agent_id="agent-b", due_at=T0 - MINUTE, claimed_by="r1")]
    rest = await claim(store, "r1", T0 + 2 * MINUTE)  # due at exactly now counts
    assert [(d.agent_id, d.due_at) for d in rest] == [("agent-a", T0 + MINUTE), ("agent-c", T0 + 2 * MINUTE)]
    assert await claim(store, "r2", T0 + 3 * MINUTE) == []  # claimed, claims not expired


async def test_two_owners_claiming_at_once_share_each_due_heartbeat_once(store: Store) -> None:
    due = {f"agent-{i}" for i in range(7)}
    for i, agent_id in enumerate(sorted(due)):
        await store.schedule_heartbeat(agent_id, due_at=T0 + i * timedelta(seconds=1))

    first, second = await asyncio.gather(
        claim(store, "r1", T0 + MINUTE, limit=4), claim(store, "r2", T0 + MINUTE, limit=4)
    )

    assert {d.claimed_by for d in first} <= {"r1"} and {d.claimed_by for d in second} <= {"r2"}
    ids = [d.agent_id for d in first + second]
    assert len(ids) == len(set(ids)) == 7
    assert set(ids) == due
    assert await claim(store, "r3", T0 + 2 * MINUTE) == []


async def test_an_expired_claim_can_be_claimed_again(store: Store) -> None:
    await store.schedule_heartbeat("agent-1", due_at=T0)
    assert len(await store.claim_due_heartbeats("r1", now=T0, claim_until=T0 + 10 * MINUTE, limit=10)) == 1

    assert await store.claim_due_heartbeats("r2", now=T0 + 9 * MINUTE, claim_until=T0 + 20 * MINUTE, limit=10) == []
    again = await store.claim_due_heartbeats("r2", now=T0 + 10 * MINUTE, claim_until=T0 + 20 * MINUTE, limit=10)
    assert again == [DueHeartbeat(agent_id="agent-1", due_at=T0, claimed_by="r2")]


async def test_finishing_a_heartbeat_clears_it_and_records_the_spend(store: Store) -> None:
    await store.schedule_heartbeat("agent-1", due_at=T0)
    [due] = await claim(store, "r1", T0)
    await store.finish_heartbeat(due, fired_at=T0 + MINUTE, tokens=120)

    assert await store.heartbeat_state("agent-1") == HeartbeatState(
        agent_id="agent-1", due_at=None, last_fired_at=T0 + MINUTE, budget_day="2024-05-01", tokens_spent=120
    )
    assert await claim(store, "r1", T0 + 20 * MINUTE) == []


async def test_a_reschedule_during_a_claim_survives_the_finish(store: Store) -> None:
    await store.schedule_heartbeat("agent-1", due_at=T0)
    [due] = await claim(store, "r1", T0)
    # New activity moves the heartbeat while it runs; the move drops r1's claim, so once
    # due the new time is claimable at once.
    await store.schedule_heartbeat("agent-1", due_at=T0 + MINUTE)
    [moved] = await claim(store, "r2", T0 + MINUTE)
    assert moved == DueHeartbeat(agent_id="agent-1", due_at=T0 + MINUTE, claimed_by="r2")

    await store.finish_heartbeat(due, fired_at=T0 + 2 * MINUTE, tokens=10)

    state = await store.heartbeat_state("agent-1")
    assert state is not None and (state.due_at, state.last_fired_at) == (T0 + MINUTE, T0 + 2 * MINUTE)
    assert await claim(store, "r3", T0 + 3 * MINUTE) == []  # r2's claim stands
    await store.finish_heartbeat(moved, fired_at=T0 + 3 * MINUTE, tokens=5)
    state = await store.heartbeat_state("agent-1")
    assert state is not None and (state.due_at, state.tokens_spent) == (None, 15)


async def test_the_token_budget_starts_again_on_each_utc_day(store: Store) -> None:
    late = datetime(2024, 5, 1, 23, 0, tzinfo=UTC)
    for fired_at, tokens in [(late, 100), (late + timedelta(minutes=59), 50)]:
        await store.schedule_heartbeat("agent-1", due_at=fired_at)
        [due] = await claim(store, "r1", fired_at)
        await store.finish_heartbeat(due, fired_at=fired_at, tokens=tokens)
    state = await store.heartbeat_state("agent-1")
    assert state is not None and (state.budget_day, state.tokens_spent) == ("2024-05-01", 150)

    # 21:30 in New York on 1 May is 01:30 UTC on 2 May: a new UTC day.
    new_york = datetime(2024, 5, 1, 21, 30, tzinfo=timezone(timedelta(hours=-4)))
    await store.schedule_heartbeat("agent-1", due_at=new_york)
    [due] = await claim(store, "r1", new_york)
    await store.finish_heartbeat(due, fired_at=new_york, tokens=7)
    state = await store.heartbeat_state("agent-1")
    assert state is not None and (state.budget_day, state.tokens_spent, state.last_fired_at) == (
        "2024-05-02",
        7,
        new_york,
    )


# -- recall and agent deletion ------------------------------------------------------------------------


async def test_recorded_platform_ids_are_per_agent(store: Store) -> None:
    await new_agent(store)
    await new_agent(store, "agent-2")
    await store.append_messages("agent-1", [msg("a", platform_id="d:1"), msg("b"), msg("c", platform_id="d:2")])
    await store.append_messages("agent-2", [msg("d", platform_id="d:3")])

    assert await store.recorded_platform_ids("agent-1", ["d:1", "d:3", "d:9", "d:1"]) == {"d:1"}
    assert await store.recorded_platform_ids("agent-1", ["d:2", "d:1"]) == {"d:1", "d:2"}
    assert await store.recorded_platform_ids("agent-1", []) == set()
    assert await store.recorded_platform_ids("nobody", ["d:1"]) == set()


async def test_deleting_an_agent_deletes_its_inbox_lease_and_schedule(store: Store) -> None:
    for agent_id in ("agent-1", "agent-2"):
        await new_agent(store, agent_id)
        await store.inbox_put(entry(f"{agent_id}-e", f"{agent_id}-k", agent_id=agent_id))
        await store.lease_acquire(agent_id, "r1", now=T0, expires_at=T0 + 10 * MINUTE)
        await store.schedule_heartbeat(agent_id, due_at=T0)

    await store.delete_agent("agent-1")

    assert await pending_ids(store) == ["agent-2-e"]
    assert await store.inbox_put(entry("new", "agent-1-k"))  # its keys went too
    assert await store.lease_acquire("agent-1", "r2", now=T0, expires_at=T0 + MINUTE) is not None
    assert await store.lease_acquire("agent-2", "r2", now=T0, expires_at=T0 + MINUTE) is None
    assert await store.heartbeat_state("agent-1") is None
    assert [d.agent_id for d in await claim(store, "r3", T0)] == ["agent-2"]


async def test_reflection_spend_is_summed_per_server_and_day(store: Store) -> None:
    for agent_id, scope in (("a1", "discord:G1"), ("a2", "discord:G1"), ("a3", "discord:G2")):
        await store.schedule_heartbeat(agent_id, due_at=T0, scope=scope)
    await store.schedule_heartbeat("a4", due_at=T0)  # a DM agent: no server
    # Rescheduling without a scope keeps the one recorded.
    await store.schedule_heartbeat("a1", due_at=T0 - MINUTE)
    state = await store.heartbeat_state("a1")
    assert state is not None
    assert state.scope == "discord:G1"
    for due in await claim(store, "r1", T0):
        await store.finish_heartbeat(due, fired_at=T0, tokens={"a1": 100, "a2": 50, "a3": 7, "a4": 1}[due.agent_id])
    assert await store.reflection_tokens_spent("discord:G1", day="2024-05-01") == 150
    assert await store.reflection_tokens_spent("discord:G2", day="2024-05-01") == 7
    assert await store.reflection_tokens_spent("discord:G1", day="2024-05-02") == 0
    assert await store.reflection_tokens_spent("slack:T9", day="2024-05-01") == 0
