"""A LoCoMo question as production meets it: a user message to the sample's agent, in a turn of
its own, undone afterwards so that no question sees another's.

Both modes ask this way. QA runs the whole turn (`AgentLoop.run_turn`); retrieval records the
question as the turn's first input (`AgentLoop.begin_turn`) and runs the agent's
`conversation_search` within that turn's bounds, the path a live search takes. Undoing a turn
deletes its messages (their seqs are given again to the next question's) and puts the agent's
context, summary, memory-pressure flag, last-seen time and core memory back as they were, so each
question meets the memory ingest left: a user back after months, asking one thing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from bot.agent.loop import AgentLoop
from bot.eval.ingest import EVAL_PLATFORM, IngestedAgent
from bot.eval.locomo import Question, Sample
from bot.events import InboundMessage
from bot.memory.store import AgentUpdate, MemoryStore

__all__ = ["EXAMINER", "question_message", "undone_turn"]

#: The speaker of every question.
EXAMINER = "examiner"


def question_message(question: Question, sample: Sample) -> InboundMessage:
    """The question as a user message of the sample's conversation, sent now."""
    return InboundMessage(
        platform=EVAL_PLATFORM,
        conversation_key=f"{EVAL_PLATFORM}:{sample.sample_id}",
        speaker_id=f"{EVAL_PLATFORM}:{EXAMINER}",
        speaker_name=EXAMINER,
        text=question.text,
        sent_at=datetime.now(UTC),
    )


@asynccontextmanager
async def undone_turn(agent: IngestedAgent, *, store: MemoryStore, loop: AgentLoop) -> AsyncIterator[None]:
    """Whatever runs inside is undone when it ends (see the module docstring), even when it fails."""
    before = await store.get_agent(agent.agent_id)
    blocks = await store.get_blocks(agent.agent_id)
    try:
        yield
    finally:
        await store.delete_messages_from(agent.agent_id, agent.last_seq + 1)
        current = {b.label: b for b in await store.get_blocks(agent.agent_id)}
        for block in blocks:
            now = current.get(block.label)
            if now is not None and now.value != block.value:
                await store.write_block(
                    agent.agent_id, block.label, block.value, limit=block.limit, expected_version=now.version
                )
        record = await store.get_agent(agent.agent_id)
        if record is not None and before is not None:
            update = AgentUpdate(
                context_start_seq=agent.last_seq + 1,
                summary=before.summary,
                is_pressure_warned=before.is_pressure_warned,
                last_user_message_at=before.last_user_message_at,
            )
            await store.update_agent(agent.agent_id, update, expected_version=record.version)
        loop.forget_cached(agent.agent_id)
