"""MembotChatAgent in an AutoGen RoundRobinGroupChat beside a peer on ReplayChatCompletionClient;
membot answers through the scripted LLM server."""

from __future__ import annotations

from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.conditions import MaxMessageTermination
from autogen_agentchat.messages import ModelClientStreamingChunkEvent, TextMessage
from autogen_agentchat.teams import RoundRobinGroupChat
from autogen_core import CancellationToken
from autogen_ext.models.replay import ReplayChatCompletionClient

from bot.interop.autogen import MembotChatAgent
from tests.interop.conftest import Membot, reply, search


def peer(name: str, *lines: str) -> AssistantAgent:
    return AssistantAgent(name, model_client=ReplayChatCompletionClient(list(lines)))


async def test_round_robin_group_chat_is_remembered_once_each_in_order(membot: Membot) -> None:
    sam = MembotChatAgent("sam", app=membot.app)
    writer = peer("writer", "Let's meet in Lisbon on May 3rd.", "I will book the Alfama hotel.")
    membot.server.enqueue(reply("Lisbon works for me."), reply("Great, Alfama it is."))
    team = RoundRobinGroupChat([writer, sam], termination_condition=MaxMessageTermination(5))

    result = await team.run(task="Plan our offsite.")

    spoken = [(m.source, m.content) for m in result.messages if isinstance(m, TextMessage)]
    assert spoken == [
        ("user", "Plan our offsite."),
        ("writer", "Let's meet in Lisbon on May 3rd."),
        ("sam", "Lisbon works for me."),
        ("writer", "I will book the Alfama hotel."),
        ("sam", "Great, Alfama it is."),
    ]
    assert await membot.said_to("sam") == [
        ("user", "Plan our offsite."),
        ("writer", "Let's meet in Lisbon on May 3rd."),
        ("writer", "I will book the Alfama hotel."),
    ]
    assert len(membot.server.chat_requests) == 2, "each membot reply cost one turn of one step"
    first_prompt = membot.prompt_users(0)
    assert any("user" in u and "Plan our offsite." in u for u in first_prompt)
    assert any("writer" in u and "Lisbon on May 3rd" in u for u in first_prompt)


async def test_a_fact_from_the_group_chat_is_found_in_a_later_session(membot: Membot) -> None:
    sam = MembotChatAgent("sam", app=membot.app)
    writer = peer("writer", "The launch code word is PELICAN.")
    membot.server.enqueue(reply("Noted."))
    await RoundRobinGroupChat([writer, sam], termination_condition=MaxMessageTermination(3)).run(task="Kick-off.")
    first_conversation = sam.turns.conversation

    await sam.on_reset(CancellationToken())
    assert sam.turns.conversation != first_conversation
    membot.server.enqueue(search("code word"), reply("It was PELICAN."))
    response = await sam.on_messages(
        [TextMessage(content="What was the code word?", source="ops")], CancellationToken()
    )

    assert response.chat_message.to_text() == "It was PELICAN."
    assert any("The launch code word is PELICAN." in r for r in membot.tool_results(-1))
    assert ("writer", "The launch code word is PELICAN.") in await membot.said_to("sam"), "reset kept memory"


async def test_messages_sent_again_are_not_stored_twice_and_streaming_yields_each_reply(membot: Membot) -> None:
    sam = MembotChatAgent("sam", app=membot.app)
    hello = TextMessage(content="hello", source="ada")
    membot.server.enqueue(reply("hi Ada"))
    await sam.on_messages([hello], CancellationToken())
    membot.server.enqueue(
        reply("first part"),
    )
    later = TextMessage(content="and again", source="bob")
    items = [item async for item in sam.on_messages_stream([hello, later], CancellationToken())]

    chunks = [i.content for i in items if isinstance(i, ModelClientStreamingChunkEvent)]
    assert chunks == ["first part"]
    assert await membot.said_to("sam") == [("ada", "hello"), ("bob", "and again")]


async def test_reset_clears_recall_only_when_asked(membot: Membot) -> None:
    sam = MembotChatAgent("sam", app=membot.app, reset_clears_recall=True)
    membot.server.enqueue(reply("ok"))
    await sam.on_messages([TextMessage(content="remember me", source="ada")], CancellationToken())
    await sam.on_reset(CancellationToken())
    assert await membot.said_to("sam") == []
