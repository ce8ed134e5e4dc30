"""The loop's semantics: malformed calls, heartbeats, LLM failures, interrupts."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from bot.errors import AgentPausedError, NotFoundError
from bot.events import Interrupt
from bot.memory.store import AgentUpdate, NewMessage, StoredToolCall
from tests.engine.conftest import EngineFactory
from tests.fakes.llm_server import (
    Delayed,
    TextReply,
    ToolCallReply,
    http_error,
    rate_limit_error,
    tool_call,
)


def reply(text: str) -> ToolCallReply:
    return ToolCallReply(calls=(tool_call("send_message", {"message": text}),))


def last_tool_result(messages: list[dict[str, object]]) -> dict[str, object]:
    result: dict[str, object] = json.loads(str([m for m in messages if m["role"] == "tool"][-1]["content"]))
    return result


@pytest.mark.parametrize(
    ("name", "arguments", "expected"),
    [
        ("core_memory_append", '{"label": "human", "content": ', "not valid JSON"),
        ("core_memory_append", "[1, 2]", "must be a JSON object"),
        ("forget_everything", "{}", "Unknown function 'forget_everything'"),
        ("core_memory_append", '{"label": "human"}', "content: Field required"),
        ("conversation_search", '{"query": "x", "page": "first"}', "page: Input should be a valid integer"),
        ("core_memory_append", json.dumps({"label": "human", "content": "x" * 2100}), "over its limit of 2000"),
        ("core_memory_replace", '{"label": "human", "old_content": "Zanzibar", "new_content": "x"}', "No exact match"),
        ("conversation_search_date", '{"start_date": "last week", "end_date": "2026-01-01"}', "is not a date"),
        ("send_message", '{"message": "  "}', "must not be empty"),
    ],
)
async def test_malformed_calls_go_back_to_the_model(
    make_engine: EngineFactory, name: str, arguments: str, expected: str
) -> None:
    engine = await make_engine()
    engine.server.enqueue(ToolCallReply(calls=(tool_call(name, arguments),)), reply("sorry, fixed"))
    result = await engine.say("do the thing")
    outcome = last_tool_result(engine.request_messages(-1))
    assert outcome["status"] == "Failed"
    assert expected in str(outcome["message"])
    assert result.steps == 2, "a failed function earns a heartbeat"
    assert engine.sink.sent == ["sorry, fixed"]
    blocks = {b.label: b.value for b in await engine.store.get_blocks(engine.agent.id)}
    assert blocks["human"] == "First name: unknown", "a failed edit changes nothing"


async def test_request_heartbeat_chains_steps_up_to_the_cap(make_engine: EngineFactory) -> None:
    engine = await make_engine(max_chained_steps=3)
    search = ToolCallReply(calls=(tool_call("conversation_search", {"query": "x", "request_heartbeat": True}),))
    engine.server.enqueue(search, search, search)
    result = await engine.say("loop forever")
    assert result.steps == 3
    stored = await engine.store.get_messages(engine.agent.id)
    assert "limit of 3 chained steps" in stored[-1].content


async def test_send_message_without_heartbeat_ends_the_turn(make_engine: EngineFactory) -> None:
    engine = await make_engine()
    engine.server.enqueue(reply("one"))
    result = await engine.say("hi")
    assert result.steps == 1


async def test_rate_limit_is_retried_honouring_retry_after(make_engine: EngineFactory) -> None:
    engine = await make_engine()
    engine.server.enqueue(rate_limit_error(retry_after="3"), http_error(502), reply("made it"))
    result = await engine.say("hi")
    assert engine.sink.sent == ["made it"]
    assert engine.sleeps.delays[0] == 3.0
    assert len(engine.sleeps.delays) == 2
    assert not result.is_failed


async def test_llm_down_apologises_and_keeps_the_message(make_engine: EngineFactory) -> None:
    engine = await make_engine(max_retries=1)
    engine.server.enqueue(http_error(503), http_error(503))
    result = await engine.say("are you there?")
    assert result.is_failed
    assert len(engine.sink.sent) == 1 and "can't reach my language model" in engine.sink.sent[0]
    stored = await engine.store.get_messages(engine.agent.id)
    assert [m.content for m in stored if m.role == "user"] == ["are you there?"]
    assert stored[-1].role == "system" and "turn failed" in stored[-1].content
    # The next turn sees what happened and answers.
    engine.server.enqueue(reply("back now"))
    await engine.say("hello again")
    contents = [m["content"] for m in engine.request_messages(-1)]
    assert any("are you there?" in str(c) for c in contents)


async def test_timeouts_are_retried(make_engine: EngineFactory) -> None:
    engine = await make_engine(llm_timeout=0.3)
    engine.server.enqueue(Delayed(seconds=2.0, then=reply("late")), reply("on time"))
    await engine.say("hi")
    assert engine.sink.sent == ["on time"]
    engine.server.allow_unused_steps()


async def test_login_event_after_a_gap(make_engine: EngineFactory) -> None:
    engine = await make_engine(login_gap=timedelta(hours=1))
    engine.server.enqueue(reply("hi"), reply("again"), reply("welcome back"))
    await engine.say("first")
    engine.advance(timedelta(minutes=10))
    await engine.say("second")
    engine.advance(timedelta(days=3))
    await engine.say("third")
    events = [m.content for m in await engine.store.get_messages(engine.agent.id) if m.role == "system"]
    assert events[0] == "login: the user is here for the first time."
    assert len(events) == 2
    assert events[1].startswith("login: the user is back; last seen 2026-05-01 12:10 UTC (3 days ago)")


async def test_interrupts_run_without_a_user_and_owe_no_reply(make_engine: EngineFactory) -> None:
    engine = await make_engine()
    engine.server.enqueue(TextReply(text="Nothing to tidy."))
    result = await engine.loop.run_turn(
        engine.agent.id, [Interrupt(kind="heartbeat", reason="manual", at=engine.now())], reply=engine.sink
    )
    assert result.steps == 1 and engine.sink.sent == []
    assert "[system event 2026-05-01 12:00] heartbeat: manual" in engine.request_messages(-1)[-1]["content"]


async def test_paused_and_unknown_agents_are_refused(make_engine: EngineFactory) -> None:
    engine = await make_engine()
    with pytest.raises(NotFoundError):
        await engine.loop.run_turn("nobody", [engine.message("hi")], reply=engine.sink)
    await engine.store.update_agent(engine.agent.id, AgentUpdate(is_paused=True), expected_version=engine.agent.version)
    with pytest.raises(AgentPausedError):
        await engine.say("hi")
    assert await engine.store.count_messages(engine.agent.id) == 0


async def test_a_call_interrupted_by_a_crash_is_repaired_on_the_wire(make_engine: EngineFactory) -> None:
    engine = await make_engine()
    # A crash after the assistant's tool call was stored but before its result was.
    await engine.store.append_messages(
        engine.agent.id,
        [
            NewMessage(role="user", content="save this", created_at=engine.now(), tokens=3, speaker_name="Ada"),
            NewMessage(
                role="assistant",
                content="",
                created_at=engine.now(),
                tokens=10,
                tool_calls=(StoredToolCall(id="call_crash", name="archival_memory_insert", arguments="{}"),),
            ),
        ],
    )
    engine.server.enqueue(reply("where were we?"))
    await engine.say("hello?")  # the fake server rejects a tool call with no result (400)
    repaired = [m for m in engine.request_messages(-1) if m["role"] == "tool"]
    assert repaired == [
        {
            "role": "tool",
            "tool_call_id": "call_crash",
            "content": '{"status": "Failed", "message": "interrupted before it finished"}',
        }
    ]


async def test_a_long_message_is_truncated_for_the_model_but_kept_whole(make_engine: EngineFactory) -> None:
    engine = await make_engine(max_user_message_chars=8000)
    text = "word " * 20_000
    engine.server.enqueue(reply("that was long"))
    await engine.say(text)
    sent = engine.request_messages(-1)[-1]["content"]
    assert len(sent) < 8200
    assert "truncated: the message is 100000 characters" in sent
    stored = [m for m in await engine.store.get_messages(engine.agent.id) if m.role == "user"]
    assert stored[0].content == text


async def test_a_burst_from_several_speakers_is_one_turn(make_engine: EngineFactory) -> None:
    engine = await make_engine()
    engine.server.enqueue(reply("Hi both!"))
    burst = [
        engine.message("hi", speaker="Ada", speaker_id="u1"),
        engine.message("hey", speaker="Bob", speaker_id="u2"),
    ]
    result = await engine.loop.run_turn(engine.agent.id, burst, reply=engine.sink, is_shared=True)
    assert result.steps == 1 and engine.sink.sent == ["Hi both!"]
    users = [m["content"] for m in engine.request_messages(-1) if m["role"] == "user"]
    assert users[-2:] == ["[2026-05-01 12:00 Ada (u1)] hi", "[2026-05-01 12:00 Bob (u2)] hey"]
