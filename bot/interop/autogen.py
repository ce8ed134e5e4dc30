"""A membot agent as an AutoGen AgentChat agent (autogen-agentchat 0.7; extra `membot[autogen]`).

    async with open_app(load_settings()) as app:
        sam = MembotChatAgent("sam", app=app)
        team = RoundRobinGroupChat([writer, sam], termination_condition=MaxMessageTermination(5))
        await team.run(task="...")

AutoGen hands an agent the messages since its last turn; `on_messages` records each once with
its `source` as the speaker, runs one turn and answers with one `TextMessage` holding every
`send_message` of the turn. `on_reset` starts a new conversation: what the agent remembers
(recall, core and archival memory) stays unless `reset_clears_recall=True` was asked for.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

from autogen_agentchat.agents import BaseChatAgent
from autogen_agentchat.base import Response
from autogen_agentchat.messages import (
    BaseAgentEvent,
    BaseChatMessage,
    ModelClientStreamingChunkEvent,
    TextMessage,
)
from autogen_core import CancellationToken

from bot.app import App
from bot.interop.group_turns import GroupReply, GroupTurns, PeerMessage, ReplyCallback

__all__ = ["MembotChatAgent"]

_PLATFORM = "autogen"


class MembotChatAgent(BaseChatAgent):
    """A membot agent (memory and all) as a participant of AutoGen teams.

    `name` is the AutoGen participant name (a Python identifier); `agent_name` the membot agent
    it speaks for (default: the same), created from the configured templates if missing."""

    def __init__(
        self,
        name: str,
        *,
        app: App,
        agent_name: str | None = None,
        description: str | None = None,
        conversation: str | None = None,
        reset_clears_recall: bool = False,
    ) -> None:
        super().__init__(name, description or f"membot agent {agent_name or name}: remembers everything said to it")
        self._turns = GroupTurns(
            app=app, agent_name=agent_name or name, platform=_PLATFORM, conversation=conversation, own_name=name
        )
        self._reset_clears_recall = reset_clears_recall
        self._running: set[asyncio.Task[GroupReply]] = set()

    @property
    def turns(self) -> GroupTurns:
        """The membot side: the agent record, the conversation key, clearing memory on request."""
        return self._turns

    @property
    def produced_message_types(self) -> Sequence[type[BaseChatMessage]]:
        return (TextMessage,)

    async def on_messages(self, messages: Sequence[BaseChatMessage], cancellation_token: CancellationToken) -> Response:
        reply = await self._take_turn(messages, on_reply=None)
        return Response(chat_message=self._message(reply))

    async def on_messages_stream(
        self, messages: Sequence[BaseChatMessage], cancellation_token: CancellationToken
    ) -> AsyncGenerator[BaseAgentEvent | BaseChatMessage | Response]:
        """Each `send_message` as a streaming chunk as it is sent, then the one reply message."""
        chunks: asyncio.Queue[str | None] = asyncio.Queue()

        async def on_reply(text: str) -> None:
            await chunks.put(text)

        turn = asyncio.create_task(self._take_turn(messages, on_reply=on_reply))
        turn.add_done_callback(lambda _task: chunks.put_nowait(None))
        while (text := await chunks.get()) is not None:
            yield ModelClientStreamingChunkEvent(content=text, source=self.name)
        yield Response(chat_message=self._message(await turn))

    async def on_reset(self, cancellation_token: CancellationToken) -> None:
        """Start a new conversation; clear recall only if this agent was built to."""
        self._turns.start_conversation()
        if self._reset_clears_recall:
            await self._turns.clear_memory()

    async def save_state(self) -> Mapping[str, Any]:
        return {"conversation": self._turns.conversation}

    async def load_state(self, state: Mapping[str, Any]) -> None:
        conversation = state.get("conversation")
        if isinstance(conversation, str):
            self._turns.start_conversation(conversation)

    async def _take_turn(
        self,
        messages: Sequence[BaseChatMessage],
        *,
        on_reply: ReplyCallback | None,
    ) -> GroupReply:
        peers = [
            PeerMessage(speaker_name=m.source, text=m.to_text(), message_id=m.id, sent_at=m.created_at)
            for m in messages
        ]
        # Cancelling stops waiting, not the turn: it writes memory as it goes and finishes on its own
        # (kept referenced until then).
        turn = asyncio.create_task(self._turns.take_turn(peers, on_reply=on_reply))
        self._running.add(turn)
        turn.add_done_callback(self._running.discard)
        return await asyncio.shield(turn)

    def _message(self, reply: GroupReply) -> TextMessage:
        return TextMessage(
            content=reply.text,
            source=self.name,
            metadata={"membot_recorded": str(reply.recorded), "membot_steps": str(reply.result.steps)},
        )
