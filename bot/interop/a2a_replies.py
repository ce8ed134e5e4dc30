"""A2A requests waiting for their turn: the A2A "platform" as the runtime sees it.

An A2A call is a request that waits for its answer, while the runtime queues messages and
answers through a sink when their turn comes. `PendingReplies` joins the two: the executor
opens a waiting request, submits its messages to the runtime with the request's id as the reply
route, and waits; the runtime's sink (`sink`) collects each `send_message` on that request, and
its turn listener (`on_turn`) releases the request once every message of it has had its turn.

When the runtime merges several requests of one conversation into one turn (a burst), the reply
goes to the latest; the earlier requests of that conversation get the same reply, since
everyone in the conversation sees it. Waiting state lives in this process only: after a restart
the callers have gone, and a resumed turn's reply is recorded in recall but delivered to no one.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from bot.events import InboundMessage, ReplySink
from bot.runtime import FinishedTurn

__all__ = ["PLATFORM", "PendingReplies", "WaitingRequest", "reply_route"]

_log = logging.getLogger(__name__)

PLATFORM = "a2a"


def reply_route(request_id: str) -> str:
    return json.dumps({"request": request_id})


def _request_of(message: InboundMessage) -> str | None:
    try:
        route = json.loads(message.reply_route or "{}")
    except ValueError:
        return None
    request = route.get("request") if isinstance(route, dict) else None
    return request if isinstance(request, str) else None


@dataclass(slots=True, kw_only=True)
class WaitingRequest:
    """One A2A call waiting for the turn(s) that answer its messages."""

    request_id: str
    conversation_key: str
    #: Platform message ids of this request's messages that have not had their turn yet.
    unanswered: set[str]
    texts: list[str] = field(default_factory=list)
    error: str | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def forget(self, platform_ids: Iterable[str]) -> None:
        """These messages will never have a turn here (duplicates of earlier ones)."""
        self.unanswered.difference_update(platform_ids)
        if not self.unanswered:
            self.done.set()


class _RequestSink:
    def __init__(self, replies: PendingReplies, request_id: str | None) -> None:
        self._replies = replies
        self._request_id = request_id

    async def send(self, text: str) -> str | None:
        waiting = self._replies.get(self._request_id)
        if waiting is None:
            _log.info("an A2A reply found no caller waiting (it gave up, or the server restarted)")
            return None
        waiting.texts.append(text)
        return f"a2a:{waiting.request_id}:{len(waiting.texts)}"

    async def typing(self) -> None:
        pass


class PendingReplies:
    """The waiting A2A requests of this process, by request id."""

    def __init__(self) -> None:
        self._waiting: dict[str, WaitingRequest] = {}

    def open(self, request_id: str, *, conversation_key: str, platform_ids: Iterable[str]) -> WaitingRequest:
        waiting = WaitingRequest(request_id=request_id, conversation_key=conversation_key, unanswered=set(platform_ids))
        self._waiting[request_id] = waiting
        return waiting

    def close(self, request_id: str) -> None:
        self._waiting.pop(request_id, None)

    def get(self, request_id: str | None) -> WaitingRequest | None:
        return self._waiting.get(request_id) if request_id is not None else None

    def sink(self, message: InboundMessage) -> ReplySink:
        """The runtime's sink factory for the `a2a` platform."""
        return _RequestSink(self, _request_of(message))

    def on_turn(self, turn: FinishedTurn) -> None:
        """The runtime's turn listener: release the requests this turn answered."""
        touched: dict[str, WaitingRequest] = {}
        for message in turn.messages:
            if message.platform != PLATFORM or message.platform_message_id is None:
                continue
            waiting = self.get(_request_of(message))
            if waiting is None:
                continue
            waiting.unanswered.discard(message.platform_message_id)
            touched[waiting.request_id] = waiting
        by_conversation: dict[str, list[str]] = {}
        for waiting in touched.values():
            by_conversation.setdefault(waiting.conversation_key, []).extend(waiting.texts)
        for waiting in touched.values():
            if not waiting.texts:
                waiting.texts.extend(by_conversation[waiting.conversation_key])
            if turn.error is not None:
                waiting.error = turn.error
            if not waiting.unanswered:
                waiting.done.set()

    def fail_all(self, reason: str) -> None:
        """Release every waiting request with an error (the server is shutting down)."""
        for waiting in self._waiting.values():
            waiting.error = waiting.error or reason
            waiting.done.set()
