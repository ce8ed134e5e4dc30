"""Token usage and daily budgets, end to end: a real runtime over both stores, the real agent
loop and the openai SDK against the scripted LLM server, and `DailyBudgets` as its meter."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest

from bot.admin import Actor, AdminService
from bot.agent.templates import Templates
from bot.errors import NotAllowedError
from bot.events import InboundMessage
from bot.ops.budgets import NOTICES, DailyBudgets
from bot.runtime import Runtime, RuntimeOptions
from tests.fakes.llm_server import ToolCallReply, tool_call
from tests.fakes.llm_wire import count_tokens
from tests.runtime.conftest import MODEL, Harness, settle

SCOPE = "test:guild1"
PROMPT_TOKENS = 1_000


def reply(text: str) -> ToolCallReply:
    """A send_message call; the server reports PROMPT_TOKENS and counts the completion itself."""
    return ToolCallReply(calls=(tool_call("send_message", {"message": text}),), prompt_tokens=PROMPT_TOKENS)


def completion_tokens(text: str) -> int:
    """What the scripted server reports for `reply(text)`: the function's name and arguments."""
    return count_tokens("send_message") + count_tokens(json.dumps({"message": text}))


async def metered_runtime(harness: Harness, *, per_server: int = 0, per_user: int = 0) -> Runtime:
    runtime = Runtime(
        store=harness.store,
        loop=harness.loop(),
        sinks={"test": harness.platform.sink},
        options=RuntimeOptions(owner="replica-a", lease_retry_s=0.05),
        clock=harness.clock,
        meter=DailyBudgets(
            store=harness.store, tokens_per_server=per_server, tokens_per_user=per_user, clock=harness.clock
        ),
    )
    await runtime.start()
    harness.runtimes.append(runtime)
    return runtime


def channel_message(harness: Harness, text: str, *, msg_id: str, speaker: str = "ada") -> InboundMessage:
    return InboundMessage(
        platform="test",
        conversation_key=f"{SCOPE}:channel:chan1",
        speaker_id=speaker,
        speaker_name=speaker.title(),
        text=text,
        sent_at=harness.clock(),
        platform_message_id=msg_id,
        reply_route=f"chan1/{msg_id}",
        is_shared_conversation=True,
        scope=SCOPE,
    )


async def say(harness: Harness, runtime: Runtime, agent: str, text: str, *, msg_id: str, speaker: str = "ada") -> None:
    await runtime.submit(agent, channel_message(harness, text, msg_id=msg_id, speaker=speaker), keys=[msg_id])
    await settle(runtime)


async def test_usage_is_recorded_with_the_tokens_the_llm_server_reported(harness: Harness) -> None:
    agent = await harness.agent("chan1-agent")
    runtime = await metered_runtime(harness)
    harness.server.enqueue(reply("hello"), reply("again"))
    await say(harness, runtime, agent, "hi", msg_id="m1")
    await say(harness, runtime, agent, "hi again", msg_id="m2")
    [row] = await harness.store.list_usage(since=harness.clock().date())
    assert row.day == date(2026, 5, 1)
    assert (row.scope, row.channel, row.agent_id, row.user_id, row.model) == (
        SCOPE,
        "chan1",
        agent,
        "test:ada",
        MODEL,
    )
    assert row.calls == 2
    assert row.prompt_tokens == 2 * PROMPT_TOKENS
    assert row.completion_tokens == completion_tokens("hello") + completion_tokens("again")
    assert runtime.stats.completion_tokens[agent] == row.completion_tokens, "the runtime saw the same usage"


async def test_a_server_budget_stops_llm_calls_and_says_so_once(harness: Harness) -> None:
    agent = await harness.agent("chan1-agent")
    runtime = await metered_runtime(harness, per_server=PROMPT_TOKENS)  # one turn spends it
    harness.server.enqueue(reply("first answer"))
    await say(harness, runtime, agent, "one", msg_id="m1")
    await say(harness, runtime, agent, "two", msg_id="m2", speaker="bob")
    await say(harness, runtime, agent, "three", msg_id="m3")
    assert len(harness.server.chat_requests) == 1, "no LLM call once the budget is spent"
    assert harness.platform.all_replies() == ["first answer", NOTICES["server"]]
    assert runtime.stats.turns_refused == 2
    assert await harness.store.inbox_pending(limit=10) == [], "refused events are closed, not retried"

    harness.clock.advance(timedelta(days=1))  # a new UTC day: a fresh budget
    harness.server.enqueue(reply("good morning"))
    await say(harness, runtime, agent, "four", msg_id="m4")
    assert harness.platform.all_replies()[-1] == "good morning"
    assert len(harness.server.chat_requests) == 2


async def test_a_user_budget_stops_only_that_user(harness: Harness) -> None:
    agent = await harness.agent("chan1-agent")
    runtime = await metered_runtime(harness, per_user=PROMPT_TOKENS)
    harness.server.enqueue(reply("for ada"), reply("for bob"))
    await say(harness, runtime, agent, "one", msg_id="m1", speaker="ada")
    await say(harness, runtime, agent, "two", msg_id="m2", speaker="ada")
    await say(harness, runtime, agent, "three", msg_id="m3", speaker="bob")
    assert harness.platform.all_replies() == ["for ada", NOTICES["user"], "for bob"]
    assert len(harness.server.chat_requests) == 2


async def test_an_admin_reset_lets_the_bot_answer_again_today(harness: Harness) -> None:
    agent = await harness.agent("chan1-agent")
    runtime = await metered_runtime(harness, per_server=PROMPT_TOKENS)
    admin = AdminService(
        store=harness.store,
        directory=harness.directory,
        loop=harness.loop(),
        templates=Templates(root=None),
        clock=harness.clock,
        budget_limits={"server": PROMPT_TOKENS},
    )
    server_admin = Actor(id="u9", name="Root", scope=SCOPE, is_admin=True)
    harness.server.enqueue(reply("first"), reply("after the reset"))
    await say(harness, runtime, agent, "one", msg_id="m1")
    await say(harness, runtime, agent, "two", msg_id="m2")
    report = await admin.usage(server_admin, days=1, by=["channel"])
    assert report.server_budget is not None
    assert report.server_budget.is_spent
    assert [(r.channel, r.calls) for r in report.rows] == [("chan1", 1)]
    assert report.total_prompt_tokens == PROMPT_TOKENS

    with pytest.raises(NotAllowedError):
        await admin.reset_budget(Actor(id="u1", name="Ann", scope=SCOPE, is_admin=False), "server")
    with pytest.raises(NotAllowedError):
        await admin.reset_budget(server_admin, "server", "test:other-guild")
    status = await admin.reset_budget(server_admin, "server")
    assert (status.spent, status.is_spent) == (0, False)
    [audit] = await harness.store.list_audit(scope=SCOPE)
    assert audit.action == "reset_budget"

    await say(harness, runtime, agent, "three", msg_id="m3")
    assert harness.platform.all_replies() == ["first", NOTICES["server"], "after the reset"]
    report = await admin.usage(server_admin, days=1, by=["day"])
    assert report.server_budget is not None
    assert report.server_budget.spent == PROMPT_TOKENS + completion_tokens("after the reset")
    everyone = await admin.usage(Actor(id="op", name="Op", scope=None, is_admin=True), days=1, by=["server"])
    assert everyone.server_budget is None
    assert [r.scope for r in everyone.rows] == [SCOPE]


async def test_reflections_are_charged_and_skipped_silently_once_the_server_budget_is_spent(harness: Harness) -> None:
    from bot.memory.runtime_store import DueHeartbeat
    from tests.fakes.llm_server import TextReply

    created = await harness.directory.create(
        name="channel agent",
        persona="I am Sam.",
        human="First name: unknown",
        persona_template="sam",
        human_template="basic",
        model=MODEL,
        conversation_key=f"{SCOPE}:channel:chan1",
    )
    runtime = await metered_runtime(harness, per_server=PROMPT_TOKENS)
    harness.server.enqueue(TextReply(text="Reflecting: nothing new.", prompt_tokens=PROMPT_TOKENS))
    runtime.heartbeat(DueHeartbeat(agent_id=created.id, due_at=harness.clock(), claimed_by=runtime.owner))
    await settle(runtime)
    [row] = await harness.store.list_usage(since=harness.clock().date())
    assert (row.scope, row.channel, row.user_id, row.prompt_tokens) == (SCOPE, "chan1", None, PROMPT_TOKENS)
    assert runtime.stats.heartbeats_fired == 1

    runtime.heartbeat(DueHeartbeat(agent_id=created.id, due_at=harness.clock(), claimed_by=runtime.owner))
    await settle(runtime)
    assert runtime.stats.heartbeats_skipped == 1
    assert len(harness.server.chat_requests) == 1, "no LLM call for a reflection over budget"
    assert harness.platform.all_replies() == [], "and no notice: nobody asked"
