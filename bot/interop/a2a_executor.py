"""One exposed membot agent behind the a2a-sdk request handler.

`MembotExecutor.execute` turns the A2A message into one inbound message (its text parts joined,
labelled by speaker where they differ: `bot.interop.a2a_input`), submits it to the shared runtime
(so an A2A turn never overlaps a Discord or Slack turn of the same agent), waits for its turn and
answers with one agent message holding every `send_message` of it. A plain `SendMessage` gets that
message back; `SendStreamingMessage` gets a task that goes submitted -> working -> completed,
the completed status carrying the reply message.

`CheckingRequestHandler` refuses a message that cannot be taken (no text, too long, too many
parts, not from a user) with a JSON-RPC invalid-params error before anything is stored.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncGenerator, Callable
from datetime import UTC, datetime
from typing import Any

from a2a.helpers import new_text_message
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.context import ServerCallContext
from a2a.server.events import Event, EventQueue
from a2a.server.request_handlers import DefaultRequestHandlerV2
from a2a.server.tasks import TaskUpdater
from a2a.types import Message, Role, SendMessageRequest, Task, TaskState, TaskStatus
from a2a.utils.errors import InternalError, InvalidParamsError, TaskNotCancelableError

from bot.events import InboundMessage
from bot.interop.a2a_input import CALLER, A2AInputError, Said, Speaker, said_in
from bot.interop.a2a_replies import PLATFORM, PendingReplies, WaitingRequest, reply_route
from bot.runtime import Runtime

__all__ = ["CheckingRequestHandler", "MembotExecutor"]

_log = logging.getLogger(__name__)

_STREAMING_METHOD = "SendStreamingMessage"


class MembotExecutor(AgentExecutor):
    """Runs A2A requests for one membot agent through the runtime."""

    def __init__(
        self,
        *,
        agent_id: str,
        agent_name: str,
        runtime: Runtime,
        replies: PendingReplies,
        max_chars: int,
        max_parts: int,
        turn_timeout_s: float,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._agent_id = agent_id
        self._agent_name = agent_name
        self._runtime = runtime
        self._replies = replies
        self._max_chars = max_chars
        self._max_parts = max_parts
        self._timeout_s = turn_timeout_s
        self._clock = clock

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        message = context.message
        if message is None:
            raise InvalidParamsError(message="the request carries no message")
        user = context.call_context.user
        caller = Speaker(id=f"a2a:{user.user_name}", name=user.user_name) if user.is_authenticated else CALLER
        try:
            said = said_in(message, max_chars=self._max_chars, max_parts=self._max_parts, caller=caller)
        except A2AInputError as exc:  # checked by the handler already; kept for direct callers
            raise InvalidParamsError(message=str(exc)) from None
        context_id = context.context_id or message.context_id or uuid.uuid4().hex
        task_id = context.task_id or uuid.uuid4().hex
        is_streaming = context.call_context.state.get("method") == _STREAMING_METHOD
        updater = TaskUpdater(event_queue, task_id, context_id)
        if is_streaming:
            await event_queue.enqueue_event(
                Task(id=task_id, context_id=context_id, status=TaskStatus(state=TaskState.TASK_STATE_SUBMITTED))
            )
            await updater.start_work()
        waiting = await self._submit(message, said, context_id)
        if waiting.error is not None and not waiting.texts:
            failure = new_text_message(f"membot could not answer: {waiting.error}", context_id=context_id)
            if is_streaming:
                await updater.failed(message=failure)
                return
            raise InternalError(message=f"membot could not answer: {waiting.error}")
        reply = self._reply(waiting, context_id=context_id, task_id=task_id if is_streaming else None)
        if is_streaming:
            await updater.complete(message=reply)
        else:
            await event_queue.enqueue_event(reply)

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        raise TaskNotCancelableError(message="a membot turn cannot be cancelled once its messages are recorded")

    async def _submit(self, message: Message, said: Said, context_id: str) -> WaitingRequest:
        """Queue the message as one inbound message and wait until it has had its turn."""
        request_id = uuid.uuid4().hex
        conversation_key = f"{PLATFORM}:{self._agent_name}:{context_id}"
        platform_id = f"{PLATFORM}:{context_id}:{message.message_id}"
        inbound = InboundMessage(
            platform=PLATFORM,
            conversation_key=conversation_key,
            speaker_id=said.speaker.id,
            speaker_name=said.speaker.name,
            text=said.text,
            sent_at=self._clock(),
            platform_message_id=platform_id,
            reply_route=reply_route(request_id),
            is_shared_conversation=True,
        )
        waiting = self._replies.open(request_id, conversation_key=conversation_key, platform_ids=[platform_id])
        try:
            is_new = await self._runtime.submit(
                self._agent_id, inbound, keys=[f"{PLATFORM}:{self._agent_id}:{platform_id}"]
            )
            if not is_new:
                raise InvalidParamsError(
                    message=f"message {message.message_id} was already received in this context; "
                    "send a new messageId for a new message"
                )
            try:
                await asyncio.wait_for(waiting.done.wait(), self._timeout_s)
            except TimeoutError:
                waiting.error = waiting.error or f"no answer within {self._timeout_s:g} s; the message is kept"
            return waiting
        finally:
            self._replies.close(request_id)

    def _reply(self, waiting: WaitingRequest, *, context_id: str, task_id: str | None) -> Message:
        text = "\n\n".join(waiting.texts)
        reply = new_text_message(text, context_id=context_id, task_id=task_id, role=Role.ROLE_AGENT)
        reply.metadata.update({"membot_agent": self._agent_name, "membot_replied": bool(waiting.texts)})
        return reply


class CheckingRequestHandler(DefaultRequestHandlerV2):
    """The SDK's handler, refusing messages membot cannot take before anything is stored."""

    def __init__(self, *, max_chars: int, max_parts: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._max_chars = max_chars
        self._max_parts = max_parts

    def _check(self, params: SendMessageRequest) -> None:
        try:
            said_in(params.message, max_chars=self._max_chars, max_parts=self._max_parts)
        except A2AInputError as exc:
            raise InvalidParamsError(message=str(exc)) from None

    async def on_message_send(self, params: SendMessageRequest, context: ServerCallContext) -> Message | Task:
        self._check(params)
        result: Message | Task = await super().on_message_send(params, context)
        return result

    async def on_message_send_stream(
        self, params: SendMessageRequest, context: ServerCallContext
    ) -> AsyncGenerator[Event]:
        self._check(params)
        async for event in super().on_message_send_stream(params, context):
            yield event
