"""Virtual context: token budget, memory-pressure warning, eviction into a recursive summary,
recovery from a server-side overflow, and a byte-stable prompt prefix between turns."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from bot.agent.context import build_system_message, choose_eviction
from bot.agent.tokens import TokenCounter
from bot.memory.core import render_blocks
from bot.memory.store import AgentUpdate, NewMessage, StoredMessage, StoredToolCall
from tests.engine.conftest import MODEL, EngineFactory
from tests.fakes.llm_server import (
    Computed,
    TextReply,
    ToolCallReply,
    context_length_error,
    count_prompt_tokens,
    tool_call,
)


def reply(text: str, *, prompt_tokens: int | None = None) -> ToolCallReply:
    return ToolCallReply(calls=(tool_call("send_message", {"message": text}),), prompt_tokens=prompt_tokens)


async def test_first_turn_fits_the_prompt_budget(make_engine: EngineFactory) -> None:
    """The product promise: at most 1,700 prompt tokens on the first message, all functions included."""
    engine = await make_engine()
    engine.server.enqueue(reply("Hello!"))
    result = await engine.say("Hi, I'm Ada.")
    reported = count_prompt_tokens(engine.server.chat_requests[0].body)
    assert result.last_prompt_tokens == reported
    assert reported <= 1_700, reported
    tools = engine.server.chat_requests[0].body["tools"]
    assert {t["function"]["name"] for t in tools} == {
        "send_message",
        "core_memory_append",
        "core_memory_replace",
        "conversation_search",
        "conversation_search_date",
        "archival_memory_insert",
        "archival_memory_search",
        "pause_heartbeats",
    }


async def test_estimate_tracks_the_server_usage(make_engine: EngineFactory) -> None:
    engine = await make_engine()
    estimates: list[int] = []
    for i in range(6):
        engine.server.enqueue(reply(f"answer {i} " + "lorem ipsum " * 20))
        await engine.say(f"question {i}: " + "dolor sit amet " * 15)
        _messages, estimate = await engine.loop._prompt(_turn_for(engine))
        estimates.append(estimate)
    # The next request the server would see, counted the server's way.
    engine.server.enqueue(reply("last"))
    await engine.say("final")
    reported = count_prompt_tokens(engine.server.chat_requests[-1].body)
    assert abs(estimates[-1] - reported) / reported < 0.10, (estimates[-1], reported)


def _turn_for(engine: Any) -> Any:
    from bot.agent.loop import TurnResult, _Turn

    return _Turn(
        agent_id=engine.agent.id,
        reply=engine.sink,
        observer=None,
        is_owed=False,
        is_shared=False,
        result=TurnResult(),  # type: ignore[arg-type]
    )


async def test_memory_pressure_warning_once_per_fill(make_engine: EngineFactory) -> None:
    engine = await make_engine(context_window=10_000, max_output_tokens=500)
    # The server reports 7,400 then 7,600 prompt tokens: the warning fires at 7,500 (75 %), once.
    engine.server.enqueue(reply("a", prompt_tokens=7_400))
    await engine.say("one")
    assert not any("memory pressure" in m.content for m in await engine.store.get_messages(engine.agent.id))
    engine.server.enqueue(reply("b", prompt_tokens=7_600), TextReply(text="saving what matters", prompt_tokens=7_700))
    result = await engine.say("two")
    assert result.steps == 2
    assert "memory pressure: the context is 7600 of 10000 tokens" in engine.request_messages(-1)[-1]["content"]
    engine.server.enqueue(reply("c", prompt_tokens=7_800))
    result = await engine.say("three")
    assert result.steps == 1, "warned once per fill"
    warnings = [m for m in await engine.store.get_messages(engine.agent.id) if "memory pressure" in m.content]
    assert len(warnings) == 1


async def test_overflow_evicts_oldest_into_a_summary(make_engine: EngineFactory) -> None:
    engine = await make_engine(context_window=4_000, max_output_tokens=500, keep_last_messages=4)
    filler = "the quick brown fox jumps over the lazy dog " * 15

    def answer(body: dict[str, Any]) -> Any:
        if "tools" not in body:
            return TextReply(text="Ada shared early facts about a fox.")
        return reply("ok")

    engine.server.enqueue(*[Computed(answer) for _ in range(20)])
    turns = 0
    while not any("tools" not in r.body for r in engine.server.chat_requests):
        turns += 1
        assert turns < 15, "the context never overflowed"
        await engine.say(f"fact {turns}: {filler}")
    engine.server.allow_unused_steps()
    assert turns > 3, "nothing is evicted while the context fits"
    summary_at = next(i for i, r in enumerate(engine.server.chat_requests) if "tools" not in r.body)
    transcript = engine.server.chat_requests[summary_at].body["messages"][1]["content"]
    assert "Previous summary:\n(none)" in transcript and "fact 1:" in transcript
    agent = await engine.store.get_agent(engine.agent.id)
    assert agent is not None and agent.summary == "Ada shared early facts about a fox."
    assert agent.context_start_seq > 1
    kept = await engine.store.get_messages(engine.agent.id, from_seq=agent.context_start_seq)
    assert kept[0].role != "tool", "a call is never separated from its result"
    assert len(kept) >= 4
    after = engine.request_messages(-1)
    assert "Ada shared early facts about a fox." in after[0]["content"]
    assert f"{agent.context_start_seq - 1} older messages are only in recall memory" in after[0]["content"]
    for request in engine.server.chat_requests:
        if "tools" in request.body:
            assert count_prompt_tokens(request.body) <= 3_500, "every call fits the budget"
    # Recall still holds everything: eviction only leaves the context.
    _found, total = await engine.store.search_messages(engine.agent.id, "fact")
    assert total == turns


async def test_a_second_eviction_folds_the_previous_summary(make_engine: EngineFactory) -> None:
    engine = await make_engine(context_window=3_000, max_output_tokens=500, keep_last_messages=2)
    filler = "lorem ipsum dolor sit amet " * 40

    def answer(body: dict[str, Any]) -> Any:
        if "tools" not in body:
            previous = body["messages"][1]["content"].split("\n")[1]
            return TextReply(text=f"summary after [{previous}]")
        return reply("ok")

    engine.server.enqueue(*[Computed(answer) for _ in range(40)])
    for i in range(14):
        await engine.say(f"note {i}: {filler}")
    engine.server.allow_unused_steps()
    agent = await engine.store.get_agent(engine.agent.id)
    assert agent is not None
    assert agent.summary.startswith("summary after [summary after [")


async def test_server_context_error_compacts_and_retries_once(make_engine: EngineFactory) -> None:
    engine = await make_engine(context_window=16_000)
    for i in range(6):
        engine.server.enqueue(reply(f"r{i}"))
        await engine.say(f"message {i} " + "alpha beta gamma " * 30)
    # The real model has a smaller window than configured: the server says so.
    engine.server.enqueue(context_length_error("vllm"), TextReply(text="older talk summarised"), reply("recovered"))
    result = await engine.say("are you ok?")
    assert not result.is_failed and engine.sink.sent[-1] == "recovered"
    agent = await engine.store.get_agent(engine.agent.id)
    assert agent is not None and agent.summary == "older talk summarised"


async def test_persistent_overflow_fails_the_turn_cleanly(make_engine: EngineFactory) -> None:
    engine = await make_engine()
    for i in range(4):
        engine.server.enqueue(reply(f"r{i}"))
        await engine.say(f"message {i} " + "alpha beta gamma " * 30)
    engine.server.enqueue(context_length_error(), TextReply(text="summary"), context_length_error())
    result = await engine.say("hello")
    assert result.is_failed
    assert "can't reach my language model" in engine.sink.sent[-1]
    assert [m.content for m in await engine.store.get_messages(engine.agent.id) if m.role == "user"][-1] == "hello"


async def test_prompt_prefix_is_byte_stable_between_turns(make_engine: EngineFactory) -> None:
    engine = await make_engine()
    engine.server.enqueue(reply("one"), reply("two"))
    await engine.say("first")
    await engine.say("second")
    first = json.dumps(engine.request_messages(0))
    second = json.dumps(engine.request_messages(1))
    assert second.startswith(first[:-1]), "turn 2's prompt extends turn 1's byte for byte"
    engine.server.enqueue(
        ToolCallReply(calls=(tool_call("core_memory_append", {"label": "human", "content": "likes tea"}),)),
        reply("ok"),
    )
    await engine.say("I like tea")
    assert engine.request_messages(-1)[0] != engine.request_messages(0)[0], "memory changed: the prefix may change"


def _message(seq: int, role: str, *, calls: tuple[StoredToolCall, ...] = (), tokens: int = 100) -> StoredMessage:
    from datetime import UTC, datetime

    return StoredMessage(
        agent_id="a",
        seq=seq,
        role=role,  # type: ignore[arg-type]
        content="x",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        tokens=tokens,
        tool_calls=calls,
        tool_call_id="c1" if role == "tool" else None,
    )


def test_eviction_never_splits_a_call_from_its_result() -> None:
    call = (StoredToolCall(id="c1", name="conversation_search", arguments="{}"),)
    queue = [
        _message(1, "user"),
        _message(2, "assistant", calls=call),
        _message(3, "tool"),
        _message(4, "tool"),
        _message(5, "user"),
        _message(6, "assistant"),
    ]
    # Freeing ~200 tokens would cut after message 2; the cut moves past both results.
    assert choose_eviction(queue, tokens_to_free=200, keep_last=1, max_chars=8000) == 4
    assert choose_eviction(queue, tokens_to_free=10_000, keep_last=2, max_chars=8000) == 4
    assert choose_eviction(queue, tokens_to_free=0, keep_last=2, max_chars=8000) == 0


async def test_context_breakdown_adds_up_to_the_loops_own_estimate(make_engine: EngineFactory) -> None:
    """The console's chart and the loop count one prompt the same way: the parts sum to the
    estimate the loop makes before its next call, and each part is what the request carries."""
    engine = await make_engine(context_window=16_000, max_output_tokens=1_000)
    for i in range(4):
        engine.server.enqueue(reply(f"answer {i} " + "lorem ipsum " * 10))
        await engine.say(f"question {i}: " + "dolor sit amet " * 12)
    agent = await engine.store.get_agent(engine.agent.id)
    assert agent is not None
    await engine.store.update_agent(
        agent.id, AgentUpdate(summary="Ada asked about Latin filler text."), expected_version=agent.version
    )
    breakdown = await engine.loop.context_breakdown(engine.agent.id)
    messages, estimate = await engine.loop._prompt(_turn_for(engine))
    assert breakdown.total == estimate
    system = messages[0]["content"]
    counter = TokenCounter(model=MODEL)
    factor = engine.loop._counter.correction_factor  # calibrated by the turns' reported usage

    def scaled(text: str) -> int:
        return round(counter.count_text(text) * factor)

    assert breakdown.summary == scaled("## Summary of older messages\n\nAda asked about Latin filler text.")
    assert "## Summary of older messages" in system
    core = system[system.index("## Core memory") : system.index("## Memory statistics")].strip()
    assert breakdown.core_memory == scaled(core)
    assert breakdown.functions == scaled(json.dumps(engine.loop.tools))
    assert breakdown.message_count == len(messages) - 1
    assert breakdown.system > counter.count_text("## Memory statistics")
    assert breakdown.window.context_window == 16_000
    assert breakdown.free == 16_000 - 1_000 - breakdown.total


async def test_system_message_is_byte_identical_to_its_sections_joined(make_engine: EngineFactory) -> None:
    engine = await make_engine()
    agent = await engine.store.get_agent(engine.agent.id)
    assert agent is not None
    blocks = await engine.store.get_blocks(agent.id)
    for summary in ("", "older things"):
        record = replace(agent, summary=summary, context_start_seq=5)
        text = build_system_message(instructions="Be Sam.\n", agent=record, blocks=blocks, passage_count=3)
        expected = [
            "Be Sam.",
            "## Core memory",
            render_blocks(blocks),
            "## Memory statistics",
            "4 older messages are only in recall memory (conversation_search). "
            "3 passages are in archival memory (archival_memory_search).",
        ]
        if summary:
            expected += ["## Summary of older messages", summary]
        assert text == "\n\n".join(expected)


async def test_context_breakdown_of_an_idle_agent_reads_the_store_and_caches_nothing(
    make_engine: EngineFactory,
) -> None:
    engine = await make_engine()
    engine.server.enqueue(reply("hi"))
    await engine.say("hello")
    assert engine.loop._queues.holds(engine.agent.id)  # served: cached, and the breakdown uses it
    other = await engine.directory.create(
        name="idle", persona="p", human="h", persona_template="sam", human_template="basic", model=MODEL
    )
    await engine.store.append_messages(
        other.id, [NewMessage(role="user", content="a quiet message", created_at=engine.now(), tokens=4)]
    )
    breakdown = await engine.loop.context_breakdown(other.id)
    assert breakdown.message_count == 1
    assert not engine.loop._queues.holds(other.id) and not engine.loop._shared_queues.holds(other.id)
    cached = await engine.loop.context_breakdown(engine.agent.id)
    assert cached.message_count == len(await engine.store.get_messages(engine.agent.id))


async def test_context_breakdown_from_sizes_equals_the_one_from_messages(make_engine: EngineFactory) -> None:
    """An idle agent's chart (message sizes from the store) and a served one's (the loop's cached
    queue) count the same prompt the same way, long user messages truncated alike."""
    engine = await make_engine(max_user_message_chars=200)
    for text in ["short", "long " * 300, "ünïcödé " * 40]:
        engine.server.enqueue(reply("ok"))
        await engine.say(text)
    served = await engine.loop.context_breakdown(engine.agent.id)
    engine.loop.forget_cached(engine.agent.id)
    idle = await engine.loop.context_breakdown(engine.agent.id)
    assert idle == served
    assert not engine.loop._queues.holds(engine.agent.id)
