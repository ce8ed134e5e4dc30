"""Edits and deletes of Discord messages that are still waiting for their turn.

A message is remembered here once the runtime has stored it. Until its turn starts (the turn
records the message in recall first, so "recorded" means "started"), an edit replaces its
inbox entry with one carrying the new text and a delete closes the entry unanswered. After
that the turn's reply stands. Only messages this process received are matched, and only the
newest `limit` of them; a turn that takes the entry between the "recorded?" check and the
close may still answer the old text (a window of one store round trip).
"""

from __future__ import annotations

import dataclasses
import logging
from collections import OrderedDict
from dataclasses import dataclass

from bot.events import InboundMessage
from bot.runtime import Runtime, Store

__all__ = ["PendingMessages"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Pending:
    agent_id: str
    #: The inbox key of its current entry (the message's own, or its latest edit's).
    key: str
    #: The raw content it was submitted with, to tell a text edit from an embed update.
    content: str
    inbound: InboundMessage


class PendingMessages:
    """Submitted messages by platform message id, for as long as an edit or a delete may matter."""

    def __init__(self, *, store: Store, runtime: Runtime, limit: int = 10_000) -> None:
        self._store = store
        self._runtime = runtime
        self._limit = limit
        self._by_id: OrderedDict[int, _Pending] = OrderedDict()

    def add(self, message_id: int, *, agent_id: str, key: str, content: str, inbound: InboundMessage) -> None:
        """Remember a message the runtime has just stored under `key`."""
        self._by_id[message_id] = _Pending(agent_id=agent_id, key=key, content=content, inbound=inbound)
        while len(self._by_id) > self._limit:
            self._by_id.popitem(last=False)

    async def edit(self, message_id: int, *, content: str, text: str, version: str) -> bool:
        """The message's author changed its content to `content` (`text` for the agent): True
        when its turn will see the new text; False when the edit comes too late or is no text edit."""
        pending = self._by_id.get(message_id)
        if pending is None or content == pending.content:
            return False
        if not await self._withdraw(pending, reason="replaced by an edit before its turn"):
            del self._by_id[message_id]
            return False
        key = f"{pending.inbound.platform}:msg:{message_id}:edit:{version}"
        revised = dataclasses.replace(pending.inbound, text=text)
        if not await self._runtime.submit(pending.agent_id, revised, keys=[key]):
            return False  # the same edit delivered twice
        self.add(message_id, agent_id=pending.agent_id, key=key, content=content, inbound=revised)
        _log.info("message %s was edited before its turn; the turn gets the new text", message_id)
        return True

    async def delete(self, message_id: int) -> bool:
        """The message was deleted: True when its turn will not run."""
        pending = self._by_id.pop(message_id, None)
        if pending is None or not await self._withdraw(pending, reason="deleted by its author before its turn"):
            return False
        _log.info("message %s was deleted before its turn; it is not answered", message_id)
        return True

    async def _withdraw(self, pending: _Pending, *, reason: str) -> bool:
        """Close the message's inbox entry if its turn has not started; False when it has (or
        the entry is gone): then the turn's reply stands."""
        message_id = pending.inbound.platform_message_id or ""
        if await self._store.recorded_platform_ids(pending.agent_id, [message_id]):
            return False  # its turn recorded it in recall: the turn is running or done
        for entry in await self._store.inbox_pending(agent_id=pending.agent_id, limit=200):
            if pending.key in entry.keys:
                await self._store.inbox_finish([entry.id], status="failed", error=reason)
                return True
        return False
