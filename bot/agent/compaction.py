"""Eviction of the oldest queue messages into a recursive summary written by the LLM.

The summary and the new queue start are written in one compare-and-set update of the
agent record, after the summary exists: a message leaves the context only once it is
summarised, and it never leaves recall.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from bot.agent.context import ContextWindow, choose_eviction, render_transcript, rendered_tokens
from bot.agent.model import ChatMessage, ChatModel, Usage
from bot.agent.tokens import TokenCounter
from bot.errors import ContextOverflowError, LLMResponseError, NotFoundError, VersionConflictError
from bot.memory.store import AgentUpdate, MemoryStore, StoredMessage

__all__ = ["Compactor"]

_log = logging.getLogger(__name__)

_TRANSCRIPT_CHARS_PER_MESSAGE = 2000


class Compactor:
    """Frees context by folding the oldest messages into the agent's summary."""

    def __init__(
        self,
        *,
        store: MemoryStore,
        model: ChatModel,
        counter: TokenCounter,
        summarize_instructions: str,
        window: ContextWindow,
        max_user_message_chars: int,
    ) -> None:
        self._max_chars = max_user_message_chars
        self._store = store
        self._model = model
        self._counter = counter
        self._instructions = summarize_instructions
        self._window = window

    async def compact(self, agent_id: str, *, tokens_to_free: int, evict_fraction: float, keep_last: int) -> Usage:
        """Evict at least `tokens_to_free` (and at least `evict_fraction` of the queue's tokens).

        Raises ContextOverflowError when nothing more can be evicted.
        """
        agent = await self._store.get_agent(agent_id)
        if agent is None:
            raise NotFoundError(f"agent {agent_id!r} does not exist")
        queue = await self._store.get_messages(agent_id, from_seq=agent.context_start_seq)
        queue_tokens = sum(rendered_tokens(m, max_chars=self._max_chars) for m in queue)
        target = max(tokens_to_free, int(queue_tokens * evict_fraction))
        cut = choose_eviction(queue, tokens_to_free=target, keep_last=keep_last, max_chars=self._max_chars)
        if cut == 0 and keep_last > 1:
            cut = choose_eviction(queue, tokens_to_free=target, keep_last=1, max_chars=self._max_chars)
        if cut == 0:
            raise ContextOverflowError(
                "the context is full and nothing more can be summarised: the latest message alone is too long"
            )
        evicted = queue[:cut]
        summary, usage = await self.summarize(agent.summary, evicted)
        try:
            await self._store.update_agent(
                agent_id,
                AgentUpdate(summary=summary, context_start_seq=evicted[-1].seq + 1, is_pressure_warned=False),
                expected_version=agent.version,
            )
        except VersionConflictError:
            # Another writer moved the agent on (an admin edit, a pause): re-read and apply once more.
            fresh = await self._store.get_agent(agent_id)
            if fresh is None or fresh.context_start_seq != agent.context_start_seq:
                raise
            await self._store.update_agent(
                agent_id,
                AgentUpdate(summary=summary, context_start_seq=evicted[-1].seq + 1, is_pressure_warned=False),
                expected_version=fresh.version,
            )
        _log.info("agent %s: summarised %d messages (seq %d-%d)", agent_id, cut, evicted[0].seq, evicted[-1].seq)
        return usage

    async def summarize(self, previous: str, evicted: Sequence[StoredMessage]) -> tuple[str, Usage]:
        """Fold `evicted` into `previous`, in several calls when the transcript is too long
        for one (the recursive part of the recursive summary). Also used by recall retention."""
        budget = self._window.prompt_budget // 2
        summary = previous
        prompt_tokens = completion_tokens = 0
        chunk: list[StoredMessage] = []
        chunk_tokens = 0
        for message in evicted:
            cost = min(message.tokens, _TRANSCRIPT_CHARS_PER_MESSAGE // 2) + 8
            if chunk and chunk_tokens + cost > budget:
                summary, usage = await self._fold(summary, chunk)
                prompt_tokens += usage.prompt_tokens
                completion_tokens += usage.completion_tokens
                chunk, chunk_tokens = [], 0
            chunk.append(message)
            chunk_tokens += cost
        if chunk:
            summary, usage = await self._fold(summary, chunk)
            prompt_tokens += usage.prompt_tokens
            completion_tokens += usage.completion_tokens
        return summary, Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)

    async def _fold(self, previous: str, messages: Sequence[StoredMessage]) -> tuple[str, Usage]:
        transcript = render_transcript(messages, max_chars=_TRANSCRIPT_CHARS_PER_MESSAGE)
        prompt: list[ChatMessage] = [
            {"role": "system", "content": self._instructions},
            {
                "role": "user",
                "content": f"Previous summary:\n{previous or '(none)'}\n\nMessages to fold in:\n{transcript}",
            },
        ]
        completion = await self._model.complete(prompt, tools=[])
        text = (completion.content or "").strip()
        if not text:
            raise LLMResponseError("the model returned an empty summary")
        return text, completion.usage
