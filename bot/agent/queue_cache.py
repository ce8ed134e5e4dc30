"""The FIFO queues of recently active agents, kept between steps and turns.

Reading and rendering the whole queue on every step costs milliseconds once a
conversation is long; the queue only ever grows at its end (new messages) and shrinks
at its start (eviction), so a cached copy is brought up to date with one store read of
the messages after the last one it holds. The read starts *at* that last message and
checks it is unchanged, so a `/pop` or another writer that rewrote the tail is noticed
and the queue is reloaded whole.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from bot.agent.model import ChatMessage
from bot.memory.store import MemoryStore, StoredMessage

__all__ = ["CachedQueue", "QueueCache"]


@dataclass(slots=True, kw_only=True)
class CachedQueue:
    """One agent's queue: stored messages with their rendering, in seq order."""

    start_seq: int
    messages: list[StoredMessage] = field(default_factory=list)
    rendered: list[ChatMessage] = field(default_factory=list)


class QueueCache:
    """A bounded LRU of agents' queues (idle agents fall out and cost no memory)."""

    def __init__(
        self, store: MemoryStore, *, render: Callable[[StoredMessage], ChatMessage], max_agents: int = 256
    ) -> None:
        self._store = store
        self._render = render
        self._max_agents = max_agents
        self._queues: OrderedDict[str, CachedQueue] = OrderedDict()

    async def load(self, agent_id: str, start_seq: int) -> CachedQueue:
        """The queue of messages with seq >= start_seq, current with the store."""
        queue = self._queues.pop(agent_id, None)
        if queue is not None and queue.messages and start_seq >= queue.start_seq:
            tail = queue.messages[-1]
            fresh = await self._store.get_messages(agent_id, from_seq=tail.seq)
            if fresh and fresh[0] == tail:
                self._extend(queue, fresh[1:])
                self._drop_before(queue, start_seq)
            else:
                queue = None
        else:
            queue = None
        if queue is None:
            queue = CachedQueue(start_seq=start_seq)
            self._extend(queue, await self._store.get_messages(agent_id, from_seq=start_seq))
        self._queues[agent_id] = queue
        while len(self._queues) > self._max_agents:
            self._queues.popitem(last=False)
        return queue

    def holds(self, agent_id: str) -> bool:
        """Whether the agent's queue is cached (a reader that must not evict others asks first)."""
        return agent_id in self._queues

    def invalidate(self, agent_id: str) -> None:
        """Forget an agent's queue (after an admin edit of its history)."""
        self._queues.pop(agent_id, None)

    def _extend(self, queue: CachedQueue, messages: list[StoredMessage]) -> None:
        queue.messages.extend(messages)
        queue.rendered.extend(self._render(m) for m in messages)

    @staticmethod
    def _drop_before(queue: CachedQueue, start_seq: int) -> None:
        if start_seq == queue.start_seq:
            return
        keep = next((i for i, m in enumerate(queue.messages) if m.seq >= start_seq), len(queue.messages))
        del queue.messages[:keep]
        del queue.rendered[:keep]
        queue.start_seq = start_seq
