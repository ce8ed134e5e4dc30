"""Every memory function, driven by scripted tool calls through the real loop and store."""

from __future__ import annotations

import json
from datetime import timedelta

from bot.memory.store import AgentUpdate
from tests.engine.conftest import Engine, EngineFactory
from tests.fakes.llm_server import TextReply, ToolCallReply, tool_call


def reply(text: str) -> ToolCallReply:
    return ToolCallReply(calls=(tool_call("send_message", {"message": text}),))


def call(name: str, **arguments: object) -> ToolCallReply:
    return ToolCallReply(calls=(tool_call(name, {**arguments, "request_heartbeat": True}),))


def tool_results(messages: list[dict[str, object]]) -> list[dict[str, object]]:
    return [json.loads(str(m["content"])) for m in messages if m["role"] == "tool"]


async def test_send_message_reaches_the_user_and_thoughts_do_not(make_engine: EngineFactory) -> None:
    engine = await make_engine()
    engine.server.enqueue(
        ToolCallReply(content="They greeted me.", calls=(tool_call("send_message", {"message": "Hello Ada!"}),))
    )
    result = await engine.say("hi there")
    assert engine.sink.sent == ["Hello Ada!"]
    assert result.replies == ["Hello Ada!"]
    assert result.steps == 1
    stored = await engine.store.get_messages(engine.agent.id)
    assert [m.role for m in stored] == ["system", "user", "assistant", "tool"]
    assert stored[2].content == "They greeted me."


async def test_core_memory_append_is_in_the_next_prompt(make_engine: EngineFactory) -> None:
    engine = await make_engine()
    engine.server.enqueue(call("core_memory_append", label="human", content="Name: Ada Lovelace"), reply("Noted!"))
    await engine.say("my name is Ada Lovelace")
    assert "Name: Ada Lovelace" in engine.system_prompt(-1)
    assert "Name: Ada Lovelace" not in engine.system_prompt(0)
    blocks = {b.label: b for b in await engine.store.get_blocks(engine.agent.id)}
    assert blocks["human"].value == "First name: unknown\nName: Ada Lovelace"
    assert blocks["human"].version == 2


async def test_core_memory_replace_and_delete(make_engine: EngineFactory) -> None:
    engine = await make_engine()
    engine.server.enqueue(
        call("core_memory_replace", label="human", old_content="unknown", new_content="Ada"),
        call("core_memory_replace", label="persona", old_content=" friendly", new_content=""),
        reply("Done"),
    )
    await engine.say("I'm Ada")
    blocks = {b.label: b.value for b in await engine.store.get_blocks(engine.agent.id)}
    assert blocks == {"human": "First name: Ada", "persona": "I am Sam, a companion."}


async def test_conversation_search_finds_an_old_message(make_engine: EngineFactory) -> None:
    engine = await make_engine()
    engine.server.enqueue(reply("Nice!"))
    await engine.say("I adopted a dog named Biscuit")
    engine.advance(timedelta(days=3))
    engine.server.enqueue(call("conversation_search", query="dog"), reply("Biscuit!"))
    await engine.say("what was my dog called?")
    results = tool_results(engine.request_messages(-1))
    assert results[-1]["status"] == "OK"
    assert "I adopted a dog named Biscuit" in str(results[-1]["message"])


async def ask_about_a_word_never_said(engine: Engine) -> list[str]:
    engine.server.enqueue(reply("Nice!"))
    await engine.say("I adopted a dog named Biscuit")
    engine.server.enqueue(
        call("conversation_search", query="Did I ever mention zanzibar?"),
        call("conversation_search", query="zanzibar"),
        reply("No."),
    )
    await engine.say("Did I ever mention zanzibar?")
    return [str(r["message"]) for r in tool_results(engine.request_messages(-1))[-2:]]


async def test_conversation_search_never_finds_the_message_it_answers(make_engine: EngineFactory) -> None:
    # The user's message is in recall before the agent searches; found, it would say that a word
    # never said before was said ("found: yes").
    assert await ask_about_a_word_never_said(await make_engine()) == [
        "No messages match 'Did I ever mention zanzibar?'.",
        "No messages match 'zanzibar'.",
    ]


async def test_hybrid_search_never_finds_the_message_it_answers(make_engine: EngineFactory) -> None:
    # By meaning the nearest messages are always found; the question itself (its own nearest) is not one.
    for found in await ask_about_a_word_never_said(await make_engine(with_embeddings=True)):
        assert "Biscuit" in found and "zanzibar" not in found


async def test_conversation_search_ranks_what_left_the_context_before_what_is_still_in_it(
    make_engine: EngineFactory,
) -> None:
    engine = await make_engine()
    engine.server.enqueue(reply("Nice!"))
    await engine.say("I adopted a dog named Biscuit")
    # Evicted, as compaction leaves it: only in recall from now on.
    agent = await engine.store.get_agent(engine.agent.id)
    assert agent is not None
    window_start = len(await engine.store.get_messages(engine.agent.id)) + 1
    await engine.store.update_agent(
        engine.agent.id, AgentUpdate(context_start_seq=window_start), expected_version=agent.version
    )
    engine.server.enqueue(reply("ok"))
    await engine.say("my dog dog dog loves the dog park")  # a better bm25 match, still in the context window
    engine.server.enqueue(
        call("conversation_search", query="dog"), call("conversation_search", query="dog", page=1), reply("Biscuit")
    )
    await engine.say("what was my dog called again?")
    first, second = (str(r["message"]).splitlines() for r in tool_results(engine.request_messages(-1))[-2:])
    assert first[0] == "Page 0 of 1 (pages start at 0), 2 results:"
    assert "I adopted a dog named Biscuit" in first[1]
    assert "my dog dog dog loves the dog park" in first[2]
    assert second == ["No results on page 1; there are 2 results in all."]


async def test_conversation_search_date_leaves_out_the_turn_being_answered(make_engine: EngineFactory) -> None:
    engine = await make_engine()
    engine.server.enqueue(reply("ok"))
    await engine.say("lunch was great")
    engine.server.enqueue(call("conversation_search_date", start_date="2026-05-01", end_date="2026-05-01"), reply("ok"))
    await engine.say("what did I say today?")
    found = str(tool_results(engine.request_messages(-1))[-1]["message"]).splitlines()
    assert found[0] == "Page 0 of 1 (pages start at 0), 2 results:"
    assert "lunch was great" in found[1] and "you: " in found[2]  # the agent's reply of that turn
    # Time words in conversation_search follow the same rule.
    engine.server.enqueue(call("conversation_search", query="today"), reply("ok"))
    await engine.say("and what else today?")
    found = str(tool_results(engine.request_messages(-1))[-1]["message"]).splitlines()
    assert not any("what else today" in line for line in found)
    assert any("what did I say today?" in line for line in found)


async def test_conversation_search_date_pages_by_day(make_engine: EngineFactory) -> None:
    engine = await make_engine()
    for day in range(3):
        engine.server.enqueue(reply("ok"))
        await engine.say(f"message on day {day}")
        engine.advance(timedelta(days=1))
    engine.server.enqueue(call("conversation_search_date", start_date="2026-05-02", end_date="2026-05-02"), reply("ok"))
    await engine.say("what did I say on May 2nd?")
    found = str(tool_results(engine.request_messages(-1))[-1]["message"])
    assert "message on day 1" in found
    assert "message on day 0" not in found and "message on day 2" not in found


async def test_archival_insert_and_search_by_embedding(make_engine: EngineFactory) -> None:
    engine = await make_engine(with_embeddings=True)
    engine.server.enqueue(
        call("archival_memory_insert", content="Ada's favourite book is Dune by Frank Herbert."),
        call("archival_memory_insert", content="Ada works as a nurse in Leeds."),
        call("archival_memory_search", query="favourite book"),
        reply("Dune!"),
    )
    await engine.say("remember my favourite book is Dune, and I work as a nurse in Leeds")
    found = str(tool_results(engine.request_messages(-1))[-1]["message"]).splitlines()
    assert found[0] == "Page 0 of 1 (pages start at 0), 2 results:"
    assert "Dune by Frank Herbert" in found[1]
    assert "nurse in Leeds" in found[2]
    assert len(engine.server.embedding_requests) == 3
    assert "2 passages are in archival memory" in engine.system_prompt(-1)


async def test_archival_search_falls_back_to_text_without_embeddings(make_engine: EngineFactory) -> None:
    engine = await make_engine(with_embeddings=False)
    engine.server.enqueue(
        call("archival_memory_insert", content="The wifi password is hunter2."),
        call("archival_memory_search", query="wifi password"),
        reply("ok"),
    )
    await engine.say("remember the wifi password is hunter2")
    assert "hunter2" in str(tool_results(engine.request_messages(-1))[-1]["message"])
    assert engine.server.embedding_requests == []


async def test_changing_the_embedding_model_reembeds_old_passages(make_engine: EngineFactory) -> None:
    engine = await make_engine(with_embeddings=True)
    await engine.loop.archival.insert(engine.agent.id, ["Biscuit is a golden retriever."])
    # A later deployment switches model: the old vector must not be compared with new ones.
    from bot.memory.archival import ArchivalMemory
    from bot.memory.openai_embeddings import OpenAIEmbedder

    client = engine.loop.archival._embedder._client  # type: ignore[union-attr]
    other = ArchivalMemory(engine.store, embedder=OpenAIEmbedder(client=client, model="other-embed"))
    stale = await engine.store.passages_without_embedding(engine.agent.id, "other-embed", limit=10)
    assert len(stale) == 1
    found, total = await other.search_passages(engine.agent.id, "golden retriever", offset=0, limit=5)
    assert total == 1 and found[0].text == "Biscuit is a golden retriever."
    assert found[0].embedding_model == "other-embed"
    assert await engine.store.passages_without_embedding(engine.agent.id, "other-embed", limit=10) == []


async def test_pause_heartbeats_is_stored(make_engine: EngineFactory) -> None:
    engine = await make_engine()
    engine.server.enqueue(ToolCallReply(calls=(tool_call("pause_heartbeats", {"minutes": 90}),)), reply("ok"))
    await engine.say("please stop reflecting for a while")
    agent = await engine.store.get_agent(engine.agent.id)
    assert agent is not None
    assert agent.heartbeats_paused_until == engine.now() + timedelta(minutes=90)


async def test_plain_text_reply_is_private_and_reminded_once(make_engine: EngineFactory) -> None:
    engine = await make_engine()
    engine.server.enqueue(TextReply(text="I should answer."), reply("Here I am."))
    result = await engine.say("hello?")
    assert engine.sink.sent == ["Here I am."]
    assert result.steps == 2
    assert "You have not replied to the user" in engine.request_messages(-1)[-1]["content"]


async def test_no_reply_after_the_reminder_ends_the_turn(make_engine: EngineFactory) -> None:
    engine = await make_engine()
    engine.server.enqueue(TextReply(text="hmm"), TextReply(text="still thinking"))
    result = await engine.say("hello?")
    assert engine.sink.sent == []
    assert result.steps == 2
    assert not result.is_failed
