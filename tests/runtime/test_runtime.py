"""The runtime over both stores: once-only delivery, bursts, isolation between agents,
crash recovery, leases and fencing, graceful shutdown."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import pytest

from bot.errors import LeaseLostError
from bot.memory.runtime_store import WRITE_FENCE, Fence
from tests.fakes.llm_server import Computed, Delayed, TextReply, ToolCallReply, http_error, tool_call
from tests.runtime.conftest import Harness, settle


def reply(text: str) -> ToolCallReply:
    return ToolCallReply(calls=(tool_call("send_message", {"message": text}),))


def persona_of(body: dict[str, Any]) -> str:
    system = str(body["messages"][0]["content"])
    return system.split("I am ", 1)[1].split(".", 1)[0] if "I am " in system else "?"


def echo_last_user(body: dict[str, Any]) -> ToolCallReply:
    users = [m["content"] for m in body["messages"] if m["role"] == "user" and "] " in str(m["content"])]
    return reply(f"{persona_of(body)} heard: {str(users[-1]).split('] ', 1)[1]}")


async def test_an_event_delivered_twice_is_answered_once(harness: Harness) -> None:
    agent = await harness.agent("sam")
    runtime = await harness.runtime()
    harness.server.enqueue(reply("hello"))
    message = harness.message("hi", msg_id="m1")
    assert await runtime.submit(agent, message, keys=["test:m1"]) is True
    assert await runtime.submit(agent, message, keys=["test:m1"]) is False
    await settle(runtime)
    assert harness.platform.all_replies() == ["hello"]
    assert runtime.stats.duplicates_dropped == 1


async def test_twin_deliveries_of_one_message_collapse(harness: Harness) -> None:
    """Slack sends `app_mention` and `message` for one post: different event ids, same channel+ts."""
    agent = await harness.agent("sam")
    runtime = await harness.runtime()
    harness.server.enqueue(reply("once"))
    message = harness.message("@bot hi", msg_id="C1:171.1")
    assert await runtime.submit(agent, message, keys=["event:Ev1", "msg:C1:171.1"])
    assert not await runtime.submit(agent, message, keys=["event:Ev2", "msg:C1:171.1"])
    await settle(runtime)
    assert harness.platform.all_replies() == ["once"]


async def test_a_burst_to_a_busy_agent_is_queued_and_merged(harness: Harness) -> None:
    agent = await harness.agent("sam")
    runtime = await harness.runtime()
    first_call_started = asyncio.Event()

    def slow_first(body: dict[str, Any]) -> Any:
        first_call_started.set()
        return Delayed(seconds=0.5, then=reply("answer to the first"))

    harness.server.enqueue(Computed(slow_first), Computed(echo_last_user))
    await runtime.submit(agent, harness.message("first", msg_id="m1"), keys=["m1"])
    await asyncio.wait_for(first_call_started.wait(), 5)
    for i, speaker in enumerate(["Bob", "Cy", "Di"], start=2):
        await runtime.submit(agent, harness.message(f"msg {i}", msg_id=f"m{i}", speaker=speaker), keys=[f"m{i}"])
    await settle(runtime)
    assert harness.platform.all_replies() == ["answer to the first", "sam heard: msg 4"]
    second = harness.server.chat_requests[1].body["messages"]
    users = [m["content"] for m in second if m["role"] == "user"]
    assert [u.split("] ")[1] for u in users[-3:]] == ["msg 2", "msg 3", "msg 4"]
    assert [u.split(" ")[2].rstrip("]") for u in users[-3:]] == ["Bob", "Cy", "Di"]
    assert runtime.stats.turns == 2
    assert runtime.stats.llm_calls[agent] == 2
    assert runtime.stats.llm_seconds[agent] >= 0.5, "the slow first call is in the agent's LLM time"
    assert runtime.stats.prompt_tokens[agent] > 0


async def test_a_slow_agent_does_not_delay_another(harness: Harness) -> None:
    slow, fast = await harness.agent("slowpoke"), await harness.agent("quick")
    runtime = await harness.runtime()
    fast_done = asyncio.Event()
    harness.platform.on_send = lambda route, text: fast_done.set() if route == "c-fast" else None

    def answer(body: dict[str, Any]) -> Any:
        if persona_of(body) == "slowpoke":
            return Delayed(seconds=4.0, then=reply("finally"))
        return reply("right away")

    harness.server.enqueue(Computed(answer), Computed(answer))
    await runtime.submit(slow, harness.message("hi", msg_id="s1", conversation="c-slow"), keys=["s1"])
    await asyncio.sleep(0.1)  # the slow agent's call is in flight
    await runtime.submit(fast, harness.message("hi", msg_id="f1", conversation="c-fast"), keys=["f1"])
    # A 4 s LLM call (the test client times out at 5 s): the fast agent answers while it waits.
    await asyncio.wait_for(fast_done.wait(), 3.5)
    assert "c-slow" not in harness.platform.replies
    await settle(runtime)
    assert harness.platform.replies["c-slow"] == ["finally"]


async def test_an_llm_failing_for_one_agent_leaves_others_unaffected(harness: Harness) -> None:
    broken, fine = await harness.agent("broken"), await harness.agent("fine")
    runtime = await harness.runtime()

    def answer(body: dict[str, Any]) -> Any:
        return http_error(500) if persona_of(body) == "broken" else reply("all good")

    harness.server.enqueue(*[Computed(answer) for _ in range(3)])
    await runtime.submit(broken, harness.message("hi", msg_id="b1", conversation="cb"), keys=["b1"])
    await runtime.submit(fine, harness.message("hi", msg_id="g1", conversation="cg"), keys=["g1"])
    await settle(runtime)
    assert harness.platform.replies["cg"] == ["all good"]
    assert "can't reach my language model" in harness.platform.replies["cb"][0]
    assert runtime.stats.turns_failed == 1
    assert await harness.store.inbox_pending() == []


async def test_an_event_for_an_unknown_agent_fails_cleanly(harness: Harness) -> None:
    runtime = await harness.runtime()
    assert await runtime.submit("no-such-agent", harness.message("hi", msg_id="x1"), keys=["x1"])
    await settle(runtime)
    assert harness.platform.all_replies() == []
    assert await harness.store.inbox_pending() == []


@pytest.mark.parametrize("crash_at", ["before_the_turn", "during_the_llm_call", "after_the_reply"])
async def test_a_crash_loses_nothing_and_doubles_nothing(harness: Harness, crash_at: str) -> None:
    agent = await harness.agent("sam")
    message = harness.message("remember the milk", msg_id="m1")
    if crash_at == "before_the_turn":
        first = await harness.runtime(start=False)
        first._is_accepting = True  # accept, but die before any mailbox runs
        first._wake = lambda agent_id: None  # type: ignore[method-assign]
        await first.submit(agent, message, keys=["m1"])
        harness.server.enqueue(reply("got it"))
    elif crash_at == "during_the_llm_call":
        first = await harness.runtime()
        harness.server.enqueue(Delayed(seconds=30, then=reply("too late")), reply("got it"))
        await first.submit(agent, message, keys=["m1"])
        await asyncio.sleep(0.3)
        await first.stop(deadline_s=0)  # the process dies mid-call
    else:
        first = await harness.runtime()
        delivered = asyncio.Event()
        harness.platform.on_send = lambda route, text: delivered.set()
        harness.server.enqueue(reply("got it"))
        # Die right after the platform took the reply, before the entry is marked done.
        original_finish = harness.store.inbox_finish

        async def crash(*args: Any, **kwargs: Any) -> None:
            raise asyncio.CancelledError

        harness.store.inbox_finish = crash  # type: ignore[method-assign]
        await first.submit(agent, message, keys=["m1"])
        await asyncio.wait_for(delivered.wait(), 5)
        await asyncio.sleep(0.1)
        harness.store.inbox_finish = original_finish  # type: ignore[method-assign]
        await first.stop(deadline_s=0)
    # The replica that restarts (a new process, same store) finds the entry and finishes it.
    harness.clock.advance(timedelta(minutes=5))  # the dead replica's lease has expired
    second = await harness.runtime(owner="replica-b")
    await settle(second)
    harness.server.allow_unused_steps()
    assert harness.platform.all_replies() == ["got it"]
    users = [m for m in await harness.store.get_messages(agent) if m.role == "user"]
    assert [m.content for m in users] == ["remember the milk"]
    assert await harness.store.inbox_pending() == []


async def test_a_frozen_lease_holder_loses_and_its_late_write_is_refused(harness: Harness) -> None:
    agent = await harness.agent("sam")
    now = harness.clock()
    old = await harness.store.lease_acquire(agent, "frozen", now=now, expires_at=now + timedelta(seconds=60))
    assert old is not None
    harness.clock.advance(timedelta(seconds=61))  # the holder froze past its lease
    runtime = await harness.runtime(owner="healthy")
    harness.server.enqueue(reply("served by the healthy replica"))
    await runtime.submit(agent, harness.message("hi", msg_id="m1"), keys=["m1"])
    await settle(runtime)
    assert harness.platform.all_replies() == ["served by the healthy replica"]
    assert runtime.stats.lease_takeovers == 1
    before = await harness.store.count_messages(agent)
    token = WRITE_FENCE.set(Fence(agent_id=agent, token=old.token))
    try:
        with pytest.raises(LeaseLostError):
            await harness.directory._store.write_block(agent, "human", "overwritten", limit=2000, expected_version=1)
    finally:
        WRITE_FENCE.reset(token)
    assert await harness.store.count_messages(agent) == before
    blocks = {b.label: b.value for b in await harness.store.get_blocks(agent)}
    assert blocks["human"] == "First name: unknown"


async def test_two_runtimes_never_run_one_agent_at_once(harness: Harness) -> None:
    agent = await harness.agent("sam")
    a = await harness.runtime(owner="replica-a")
    b = await harness.runtime(owner="replica-b")
    active: list[str] = []
    overlaps: list[str] = []

    def answer(body: dict[str, Any]) -> Any:
        return Delayed(seconds=0.05, then=echo_last_user(body))

    harness.server.enqueue(*[Computed(answer) for _ in range(40)])
    original = a._loop.run_turn

    def tracked(runtime_name: str, run: Any) -> Any:
        async def run_turn(*args: Any, **kwargs: Any) -> Any:
            if active:
                overlaps.append(runtime_name)
            active.append(runtime_name)
            try:
                return await run(*args, **kwargs)
            finally:
                active.remove(runtime_name)

        return run_turn

    a._loop.run_turn = tracked("a", original)  # type: ignore[method-assign]
    b._loop.run_turn = tracked("b", b._loop.run_turn)  # type: ignore[method-assign]
    for i in range(12):
        target = a if i % 2 == 0 else b
        await target.submit(agent, harness.message(f"m{i}", msg_id=f"m{i}"), keys=[f"m{i}"])
        if i % 3 == 0:  # the same event also reaches the other replica (a gateway replay)
            other = b if target is a else a
            await other.submit(agent, harness.message(f"m{i}", msg_id=f"m{i}"), keys=[f"m{i}"])
        await asyncio.sleep(0.01)
    await settle(a)
    await settle(b)
    harness.server.allow_unused_steps()
    assert overlaps == []
    users = [m.content for m in await harness.store.get_messages(agent) if m.role == "user"]
    assert sorted(users) == sorted(f"m{i}" for i in range(12))
    assert await harness.store.inbox_pending() == []


async def test_shutdown_lets_a_running_turn_finish(harness: Harness) -> None:
    agent = await harness.agent("sam")
    runtime = await harness.runtime()
    harness.server.enqueue(Delayed(seconds=0.3, then=reply("finished before exit")))
    await runtime.submit(agent, harness.message("hi", msg_id="m1"), keys=["m1"])
    await asyncio.sleep(0.05)
    await runtime.stop(deadline_s=5)
    assert harness.platform.all_replies() == ["finished before exit"]
    lease = await harness.store.lease_acquire(
        agent, "someone-else", now=harness.clock(), expires_at=harness.clock() + timedelta(seconds=5)
    )
    assert lease is not None, "the lease was released on shutdown"


async def test_inbox_payload_round_trips() -> None:
    from datetime import UTC, datetime

    from bot.events import InboundMessage
    from bot.runtime import decode_message, encode_message

    message = InboundMessage(
        platform="slack",
        conversation_key="slack:T1:C1",
        speaker_id="U1",
        speaker_name="Zoë 🌱",
        text="héllo\nworld",
        sent_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        platform_message_id="C1:171.1",
        attachments=("a.txt",),
        reply_route=json.dumps({"channel": "C1", "thread_ts": "171.1"}),
        is_shared_conversation=True,
    )
    assert decode_message(encode_message(message)) == message


async def test_heartbeat_after_quiet_time_fires_once(harness: Harness) -> None:
    from bot.scheduler import HeartbeatScheduler, SchedulerOptions

    agent = await harness.agent("sam")
    a = await harness.runtime(owner="replica-a", reflection_jitter=timedelta(0))
    b = await harness.runtime(owner="replica-b", reflection_jitter=timedelta(0))
    scheduler_a = HeartbeatScheduler(store=harness.store, runtime=a, options=SchedulerOptions(), clock=harness.clock)
    scheduler_b = HeartbeatScheduler(store=harness.store, runtime=b, options=SchedulerOptions(), clock=harness.clock)
    harness.server.enqueue(reply("hi"), TextReply(text="Reflecting: noted that Ada likes tea."))
    await a.submit(agent, harness.message("I like tea", msg_id="m1"), keys=["m1"])
    await settle(a)
    assert await scheduler_a.tick() + await scheduler_b.tick() == 0, "not quiet long enough yet"
    harness.clock.advance(timedelta(minutes=31))
    fired = await asyncio.gather(scheduler_a.tick(), scheduler_b.tick())
    assert sorted(fired) == [0, 1]
    await settle(a)
    await settle(b)
    events = [m.content for m in await harness.store.get_messages(agent) if m.role == "system"]
    assert sum("reflection:" in e for e in events) == 1
    assert harness.platform.all_replies() == ["hi"], "a reflection messages no one"
    harness.clock.advance(timedelta(hours=1))
    assert await scheduler_a.tick() + await scheduler_b.tick() == 0, "fired once, not again"


async def test_pause_heartbeats_and_budgets_are_honoured(harness: Harness) -> None:
    from bot.memory.store import AgentUpdate
    from bot.scheduler import HeartbeatScheduler, SchedulerOptions

    agent = await harness.agent("sam")
    runtime = await harness.runtime(reflection_jitter=timedelta(0))
    scheduler = HeartbeatScheduler(store=harness.store, runtime=runtime, clock=harness.clock)
    record = await harness.store.get_agent(agent)
    assert record is not None
    paused_until = harness.clock() + timedelta(hours=2)
    await harness.store.update_agent(
        agent, AgentUpdate(heartbeats_paused_until=paused_until), expected_version=record.version
    )
    await harness.store.schedule_heartbeat(agent, due_at=harness.clock())
    assert await scheduler.tick() == 0
    state = await harness.store.heartbeat_state(agent)
    assert state is not None
    assert state.due_at == paused_until
    harness.clock.advance(timedelta(hours=3))
    stingy = HeartbeatScheduler(
        store=harness.store, runtime=runtime, options=SchedulerOptions(daily_tokens_per_agent=0), clock=harness.clock
    )
    assert await stingy.tick() == 0
    assert (scheduler.heartbeats_skipped, stingy.heartbeats_skipped) == (1, 1)
    assert runtime.stats.heartbeats_skipped == 0


async def test_a_server_wide_reflection_budget_caps_every_agent_of_that_server(harness: Harness) -> None:
    from bot.scheduler import HeartbeatScheduler, SchedulerOptions

    spender = await harness.agent("spender")
    neighbour = await harness.agent("neighbour")
    elsewhere = await harness.agent("elsewhere")
    runtime = await harness.runtime()
    now = harness.clock()
    await harness.store.schedule_heartbeat(spender, due_at=now, scope="discord:G1")
    [due] = await harness.store.claim_due_heartbeats("r", now=now, claim_until=now + timedelta(minutes=5), limit=5)
    await harness.store.finish_heartbeat(due, fired_at=now, tokens=900)
    await harness.store.schedule_heartbeat(neighbour, due_at=now, scope="discord:G1")
    await harness.store.schedule_heartbeat(elsewhere, due_at=now, scope="discord:G2")
    scheduler = HeartbeatScheduler(
        store=harness.store,
        runtime=runtime,
        options=SchedulerOptions(daily_tokens_per_agent=10_000, daily_tokens_per_server=800),
        clock=harness.clock,
    )
    harness.server.enqueue(TextReply(text="tidying up"))
    assert await scheduler.tick() == 1, "only the agent of the server under budget reflects"
    await settle(runtime)
    reflected = [
        a
        for a in (neighbour, elsewhere)
        if any("reflection:" in m.content for m in await harness.store.get_messages(a))
    ]
    assert reflected == [elsewhere]
    assert scheduler.heartbeats_skipped == 1


async def test_the_reflection_is_scheduled_in_the_messages_server(harness: Harness) -> None:
    from dataclasses import replace

    agent = await harness.agent("sam")
    runtime = await harness.runtime()
    harness.server.enqueue(reply("hi"))
    message = replace(harness.message("hello", msg_id="m1"), scope="slack:T1")
    await runtime.submit(agent, message, keys=["m1"])
    await settle(runtime)
    state = await harness.store.heartbeat_state(agent)
    assert state is not None
    assert state.scope == "slack:T1"
    assert state.due_at is not None
    assert state.due_at >= harness.clock() + timedelta(minutes=30)


async def test_a_reflection_posts_only_where_the_server_allows(harness: Harness) -> None:
    from bot.memory.policy_store import Policy
    from bot.scheduler import HeartbeatScheduler

    quiet, chatty = await harness.agent("quiet"), await harness.agent("chatty")
    runtime = await harness.runtime()
    scheduler = HeartbeatScheduler(store=harness.store, runtime=runtime, clock=harness.clock)
    now = harness.clock()
    await harness.store.set_policy(Policy(scope="test:T1", proactive_channel="C-news", updated_at=now))
    await harness.store.schedule_heartbeat(quiet, due_at=now, scope="test:T2")
    await harness.store.schedule_heartbeat(chatty, due_at=now, scope="test:T1")
    prompts: dict[str, str] = {}

    def answer(body: dict[str, Any]) -> Any:
        prompts[persona_of(body)] = str(body["messages"][-1]["content"])
        return reply(f"news from {persona_of(body)}")

    harness.server.enqueue(Computed(answer), Computed(answer))
    assert await scheduler.tick() == 2
    await settle(runtime)
    assert harness.platform.replies == {'{"channel": "C-news", "proactive": true}': ["news from chatty"]}
    assert "you may post it with send_message" in prompts["chatty"]
    assert "Message no one." in prompts["quiet"]
