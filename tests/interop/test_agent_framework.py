"""MembotAgent in an Agent Framework group chat (GroupChatBuilder, a scripted peer, a fixed
speaker order); membot answers through the scripted LLM server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from agent_framework import AgentResponse, AgentResponseUpdate, BaseAgent, Content, Message, ResponseStream
from agent_framework.orchestrations import GroupChatBuilder, GroupChatState

from bot.interop.agent_framework import MembotAgent
from tests.interop.conftest import Membot, reply, search


class ScriptedPeer(BaseAgent):
    """Another participant: says its lines in order, one per turn."""

    def __init__(self, name: str, *lines: str) -> None:
        super().__init__(name=name, description=f"scripted {name}")
        self._lines = list(lines)

    def run(self, messages: Any = None, *, stream: bool = False, **kwargs: Any) -> Any:
        line = self._lines.pop(0)
        message = Message("assistant", [line], author_name=self.name, message_id=uuid.uuid4().hex)
        if stream:

            async def updates() -> AsyncIterator[AgentResponseUpdate]:
                yield AgentResponseUpdate(
                    contents=[Content.from_text(line)],
                    role="assistant",
                    author_name=self.name,
                    message_id=message.message_id,
                )

            return ResponseStream(updates(), finalizer=AgentResponse.from_updates)

        async def respond() -> AgentResponse[Any]:
            return AgentResponse(messages=[message])

        return respond()


def in_turns(*names: str) -> Any:
    def select(state: GroupChatState) -> str:
        return names[state.current_round % len(names)]

    return select


@pytest.mark.parametrize("stream", [False, True], ids=["run", "streamed run"])
async def test_group_chat_messages_reach_recall_once_each_in_order(membot: Membot, stream: bool) -> None:
    sam = MembotAgent(app=membot.app, agent_name="sam")
    writer = ScriptedPeer("writer", "Let's meet in Lisbon on May 3rd.", "I will book the Alfama hotel.")
    membot.server.enqueue(reply("Lisbon works for me."), reply("Great, Alfama it is."))
    workflow = GroupChatBuilder(
        participants=[writer, sam], selection_func=in_turns("writer", "sam"), max_rounds=4, output_from="all"
    ).build()

    if stream:
        events = workflow.run("Plan our offsite.", stream=True)
        async for _event in events:
            pass
        result = await events.get_final_response()
    else:
        result = await workflow.run("Plan our offsite.")

    spoken: list[tuple[str | None, str]] = []
    for output in result.get_outputs():
        if isinstance(output, AgentResponseUpdate):  # streamed: one update per message
            spoken.append((output.author_name, output.text))
        else:
            spoken.extend((m.author_name or m.role, m.text) for m in output.messages)
    assert spoken[:4] == [
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


async def test_a_fact_from_the_group_chat_is_found_in_a_later_session(membot: Membot) -> None:
    sam = MembotAgent(app=membot.app, agent_name="sam")
    writer = ScriptedPeer("writer", "The launch code word is PELICAN.")
    membot.server.enqueue(reply("Noted."))
    workflow = GroupChatBuilder(
        participants=[writer, sam], selection_func=in_turns("writer", "sam"), max_rounds=2
    ).build()
    await workflow.run("Kick-off.")

    later = MembotAgent(app=membot.app, agent_name="sam")
    session = later.create_session()
    membot.server.enqueue(search("code word"), reply("It was PELICAN."))
    response = await later.run(Message("user", ["What was the code word?"], author_name="ops"), session=session)

    assert response.text == "It was PELICAN."
    assert any("The launch code word is PELICAN." in r for r in membot.tool_results(-1))


async def test_streaming_run_answers_once_and_history_sent_again_is_not_stored_twice(membot: Membot) -> None:
    sam = MembotAgent(app=membot.app, agent_name="sam")
    session = sam.create_session()
    hello = Message("user", ["hello"], author_name="ada", message_id="m-1")
    membot.server.enqueue(reply("hi Ada"))
    await sam.run(hello, session=session)
    membot.server.enqueue(reply("one"))
    stream = sam.run(
        [hello, Message("user", ["and again"], author_name="bob", message_id="m-2")], stream=True, session=session
    )

    updates = [u async for u in stream]
    final = await stream.get_final_response()

    assert [u.text for u in updates] == ["one"]
    assert [m.text for m in final.messages] == ["one"]
    assert await membot.said_to("sam") == [("ada", "hello"), ("bob", "and again")]
