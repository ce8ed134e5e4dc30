"""A membot agent as a Microsoft Agent Framework agent (extra `membot[agent-framework]`).

    from agent_framework.orchestrations import GroupChatBuilder
    async with open_app(load_settings()) as app:
        sam = MembotAgent(app=app, agent_name="sam")
        workflow = GroupChatBuilder(participants=[writer, sam], selection_func=..., max_rounds=4).build()

`run(messages, stream=..., session=...)` takes the messages the agent has not seen (a group
chat hands each participant the others' turns since its last one), records each once with its
author, runs one turn and answers with one assistant message holding every `send_message` of
that turn. The conversation is the session's (`session.session_id`), or the one given.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from typing import Any, Literal, overload

from agent_framework import (
    AgentResponse,
    AgentResponseUpdate,
    AgentRunInputs,
    AgentSession,
    BaseAgent,
    Content,
    Message,
    ResponseStream,
    normalize_messages,
)

from bot.app import App
from bot.interop.group_turns import GroupReply, GroupTurns, PeerMessage

__all__ = ["MembotAgent"]

_PLATFORM = "agent-framework"


class MembotAgent(BaseAgent):
    """A membot agent (memory and all) taking part in Agent Framework conversations and workflows."""

    def __init__(
        self,
        *,
        app: App,
        agent_name: str,
        name: str | None = None,
        description: str | None = None,
        conversation: str | None = None,
        id: str | None = None,
    ) -> None:
        super().__init__(
            id=id,
            name=name or agent_name,
            description=description or f"membot agent {agent_name}: remembers everything said to it",
        )
        self._turns = GroupTurns(
            app=app, agent_name=agent_name, platform=_PLATFORM, conversation=conversation, own_name=self.name
        )

    @property
    def turns(self) -> GroupTurns:
        """The membot side: the agent record, the conversation key, clearing memory on request."""
        return self._turns

    @overload
    def run(
        self,
        messages: AgentRunInputs | None = None,
        *,
        stream: Literal[False] = ...,
        session: AgentSession | None = None,
        conversation: str | None = None,
        function_invocation_kwargs: Mapping[str, Any] | None = None,
        client_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> Awaitable[AgentResponse[Any]]: ...

    @overload
    def run(
        self,
        messages: AgentRunInputs | None = None,
        *,
        stream: Literal[True],
        session: AgentSession | None = None,
        conversation: str | None = None,
        function_invocation_kwargs: Mapping[str, Any] | None = None,
        client_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> ResponseStream[AgentResponseUpdate, AgentResponse[Any]]: ...

    def run(
        self,
        messages: AgentRunInputs | None = None,
        *,
        stream: bool = False,
        session: AgentSession | None = None,
        conversation: str | None = None,
        function_invocation_kwargs: Mapping[str, Any] | None = None,
        client_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> Awaitable[AgentResponse[Any]] | ResponseStream[AgentResponseUpdate, AgentResponse[Any]]:
        """Record the new messages with their authors and answer once.

        Tools, function-invocation and client options from the framework are ignored: the
        agent's functions are its memory functions."""
        peers = [_peer(m) for m in normalize_messages(messages)]
        key = conversation or (session.session_id if session is not None else None)
        if stream:
            return ResponseStream(self._updates(peers, key), finalizer=AgentResponse.from_updates)
        return self._respond(peers, key)

    async def _respond(self, peers: Sequence[PeerMessage], conversation: str | None) -> AgentResponse[Any]:
        reply = await self._turns.take_turn(peers, conversation=conversation)
        return AgentResponse(
            messages=[self._message(reply)],
            response_id=uuid.uuid4().hex,
            agent_id=self.id,
            additional_properties=_turn_properties(reply),
        )

    async def _updates(
        self, peers: Sequence[PeerMessage], conversation: str | None
    ) -> AsyncIterator[AgentResponseUpdate]:
        """One update per `send_message` as the agent sends it, all parts of one reply message."""
        texts: asyncio.Queue[str | None] = asyncio.Queue()

        async def on_reply(text: str) -> None:
            await texts.put(text)

        turn = asyncio.create_task(self._turns.take_turn(peers, conversation=conversation, on_reply=on_reply))
        turn.add_done_callback(lambda _task: texts.put_nowait(None))
        message_id, response_id = uuid.uuid4().hex, uuid.uuid4().hex
        try:
            while (text := await texts.get()) is not None:
                yield AgentResponseUpdate(
                    contents=[Content.from_text(text)],
                    role="assistant",
                    author_name=self.name,
                    agent_id=self.id,
                    message_id=message_id,
                    response_id=response_id,
                )
        finally:
            # The turn writes memory as it goes: let it finish even when the reader stops early.
            await asyncio.shield(turn)

    def _message(self, reply: GroupReply) -> Message:
        return Message(
            "assistant",
            [reply.text] if reply.texts else [],
            author_name=self.name,
            message_id=uuid.uuid4().hex,
        )


def _peer(message: Message) -> PeerMessage:
    speaker = message.author_name or message.role
    return PeerMessage(speaker_name=speaker, text=message.text, message_id=message.message_id)


def _turn_properties(reply: GroupReply) -> dict[str, Any]:
    return {"membot_recorded": reply.recorded, "membot_steps": reply.result.steps}
