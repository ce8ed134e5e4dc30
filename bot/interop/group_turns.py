"""One membot agent taking part in another framework's conversation, in process.

Agent Framework and AutoGen hand an agent the messages it has not seen yet (other
participants' turns since its last one) and ask for one answer. `GroupTurns.take_turn` records
each of them once, with its speaker, through the engine's batch entry point
(`AgentLoop.run_turn` with several inputs) and runs exactly one turn: the old MemGPT
integration's failures (messages skipped by a counter, one LLM step per message) cannot happen.

A message that carries an id is recorded under it (`{platform}:{id}`), so a framework that
sends the whole history again, or a retried call, never stores a message twice. The agent's
own earlier replies, when a framework echoes them back, are not recorded as input.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bot.agent.loop import TurnResult
from bot.app import App
from bot.events import InboundMessage
from bot.memory.store import AgentRecord, AgentUpdate

__all__ = ["GroupReply", "GroupTurns", "PeerMessage", "ReplyCallback"]

_log = logging.getLogger(__name__)

ReplyCallback = Callable[[str], Awaitable[None]]


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerMessage:
    """Something another participant said, in framework-neutral terms."""

    speaker_name: str
    text: str
    #: The framework's id for the message, when it has one: the key that keeps it from being stored twice.
    message_id: str | None = None
    sent_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupReply:
    """What the membot agent said in one turn (every `send_message`, in order)."""

    texts: tuple[str, ...]
    #: Messages recorded in recall by this turn (after dropping ones already there).
    recorded: int
    result: TurnResult

    @property
    def text(self) -> str:
        return "\n\n".join(self.texts)


@dataclass(slots=True)
class _CollectingSink:
    """The reply sink of an in-process turn: keeps each message and passes it on if asked."""

    on_reply: ReplyCallback | None
    texts: list[str] = field(default_factory=list)

    async def send(self, text: str) -> str | None:
        self.texts.append(text)
        if self.on_reply is not None:
            await self.on_reply(text)
        return None

    async def typing(self) -> None:
        pass


class GroupTurns:
    """A membot agent (found by name, created from the default templates if missing) over an
    opened `App`; holds no conversation state but the current conversation key."""

    def __init__(
        self,
        *,
        app: App,
        agent_name: str,
        platform: str,
        conversation: str | None = None,
        own_name: str | None = None,
    ) -> None:
        self._app = app
        self.agent_name = agent_name
        #: The name the framework gives this agent's messages, so echoes of them are not inputs.
        self._own_names = {agent_name.casefold(), (own_name or agent_name).casefold()}
        self._platform = platform
        self.conversation = conversation or uuid.uuid4().hex

    async def agent(self) -> AgentRecord:
        """The membot agent, created from the configured persona and human templates on first use."""
        directory = self._app.directory
        found = await directory.by_name(self.agent_name)
        if found is None:
            settings = self._app.settings
            persona, human = settings.agent.persona, settings.agent.human
            found = await directory.create(
                name=self.agent_name,
                persona=self._app.templates.operator_text("persona", persona),
                human=self._app.templates.operator_text("human", human),
                persona_template=persona,
                human_template=human,
                model=settings.llm.model,
            )
            _log.info("created agent %s for a %s conversation", self.agent_name, self._platform)
        return found

    async def take_turn(
        self,
        messages: Sequence[PeerMessage],
        *,
        conversation: str | None = None,
        on_reply: ReplyCallback | None = None,
    ) -> GroupReply:
        """Record the new messages (each once, in order, with its speaker) and answer once."""
        agent = await self.agent()
        key = f"{self._platform}:{conversation or self.conversation}"
        inbound = await self._new_inputs(agent.id, key, messages)
        sink = _CollectingSink(on_reply=on_reply)
        result = await self._app.loop.run_turn(agent.id, inbound, reply=sink, is_shared=True, is_reply_owed=True)
        return GroupReply(texts=tuple(sink.texts), recorded=len(inbound), result=result)

    def start_conversation(self, conversation: str | None = None) -> str:
        """Begin a new conversation (a fresh key); the agent's memory is untouched."""
        self.conversation = conversation or uuid.uuid4().hex
        return self.conversation

    async def clear_memory(self) -> None:
        """Delete the agent's recall and summary (core and archival memory stay): only on request."""
        agent = await self.agent()
        store = self._app.store
        await store.delete_messages_from(agent.id, 1)
        current = await self._app.directory.require(agent.id)
        await store.update_agent(
            agent.id,
            AgentUpdate(context_start_seq=1, summary="", is_pressure_warned=False),
            expected_version=current.version,
        )
        self._app.loop.forget_cached(agent.id)

    async def _new_inputs(self, agent_id: str, key: str, messages: Sequence[PeerMessage]) -> list[InboundMessage]:
        candidates: list[PeerMessage] = []
        seen_ids: set[str] = set()
        for message in messages:
            if not message.text.strip() or message.speaker_name.casefold() in self._own_names:
                continue
            if message.message_id is not None:
                if message.message_id in seen_ids:
                    continue
                seen_ids.add(message.message_id)
            candidates.append(message)
        ids = [self._platform_id(m.message_id) for m in candidates if m.message_id is not None]
        recorded = await self._app.store.recorded_platform_ids(agent_id, ids) if ids else set()
        now = datetime.now(UTC)
        inbound: list[InboundMessage] = []
        for message in candidates:
            platform_id = self._platform_id(message.message_id) if message.message_id is not None else None
            if platform_id is not None and platform_id in recorded:
                continue
            inbound.append(
                InboundMessage(
                    platform=self._platform,
                    conversation_key=key,
                    speaker_id=f"{self._platform}:{message.speaker_name}",
                    speaker_name=message.speaker_name,
                    text=message.text,
                    sent_at=message.sent_at or now,
                    platform_message_id=platform_id,
                    is_shared_conversation=True,
                )
            )
        return inbound

    def _platform_id(self, message_id: str) -> str:
        return f"{self._platform}:{message_id}"
