"""A LoCoMo conversation into one agent's memory, without an LLM.

Every dialog turn goes into recall through `RecallMemory.record`, the path the agent loop
records every message through: role `user`, speaker = the LoCoMo speaker, time = its session's
date and time, platform message id = the dialog id (`D1:3`), a shared image's caption kept as
text. Each session is one append (all or none), so an interrupted ingest resumes at the first
session recall does not hold. With `archival`, each session is also one archival passage
(embedded when the agent loop has an embedder, full text otherwise).

After ingest the agent's context starts past the conversation (`context_start_seq`) and its user
was last seen at the conversation's last turn: a question finds the conversation only by
searching memory, as it would months later in production.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bot.agent.directory import AgentDirectory
from bot.agent.loop import AgentLoop
from bot.agent.tokens import TokenCounter
from bot.eval.locomo import Sample, Session, Turn
from bot.memory.store import AgentUpdate, MemoryStore, NewMessage

__all__ = ["EVAL_PLATFORM", "IngestedAgent", "agent_name", "ingest_sample"]

_log = logging.getLogger(__name__)

EVAL_PLATFORM = "locomo"
_PERSONA = (
    "I am a careful assistant with a long memory. I answer questions about conversations I took part "
    "in as a silent note-taker, by searching my memory first."
)


@dataclass(frozen=True, slots=True, kw_only=True)
class IngestedAgent:
    agent_id: str
    #: Seqs of the conversation's messages: 1..last_seq; anything after is a question's turn.
    last_seq: int
    turns: int
    #: Dialog id of each stored message seq.
    dia_ids: dict[int, str]


def agent_name(sample: Sample) -> str:
    return f"locomo-{sample.sample_id}"


async def ingest_sample(
    sample: Sample,
    *,
    store: MemoryStore,
    directory: AgentDirectory,
    loop: AgentLoop,
    counter: TokenCounter,
    model: str,
    archival: bool,
) -> IngestedAgent:
    """The sample's agent with the whole conversation in recall (and archival), made or completed now."""
    agent = await directory.by_name(agent_name(sample))
    if agent is None:
        human = (
            f"The conversation in my recall memory is between {sample.speaker_a} and {sample.speaker_b}. "
            "An examiner asks me questions about it."
        )
        agent = await directory.create(
            name=agent_name(sample), persona=_PERSONA, human=human, persona_template="locomo-eval",
            human_template="locomo-eval", model=model,
        )  # fmt: skip
    held = await store.recorded_platform_ids(agent.id, [t.dia_id for t in sample.turns])
    passages = await store.count_passages(agent.id)
    for number, session in enumerate(sample.sessions):
        if not all(t.dia_id in held for t in session.turns):
            await loop.recall.record(agent.id, [_message(turn, counter) for turn in session.turns])
        if archival and number >= passages:
            await loop.archival.insert(agent.id, [_session_text(session)])
    while await loop.recall.embed_missing(agent.id):
        pass  # with an embedder: every turn embedded now, not during the timed searches
    turn_ids = {t.dia_id for t in sample.turns}
    stored = await store.get_messages(agent.id, from_seq=1)
    dia_ids = {m.seq: m.platform_message_id for m in stored if m.platform_message_id in turn_ids}
    last_seq = max(dia_ids, default=0)
    agent = await directory.require(agent.id)
    last_said = max((t.at for t in sample.turns), default=None)
    if agent.context_start_seq <= last_seq or (last_said is not None and agent.last_user_message_at is None):
        update = AgentUpdate(
            context_start_seq=max(agent.context_start_seq, last_seq + 1), last_user_message_at=last_said
        )
        await store.update_agent(agent.id, update, expected_version=agent.version)
    return IngestedAgent(agent_id=agent.id, last_seq=last_seq, turns=len(sample.turns), dia_ids=dia_ids)


def _message(turn: Turn, counter: TokenCounter) -> NewMessage:
    return NewMessage(
        role="user",
        content=turn.text,
        created_at=turn.at,
        tokens=counter.count_text(turn.text) + counter.count_text(turn.speaker),
        speaker_id=f"{EVAL_PLATFORM}:{turn.speaker}",
        speaker_name=turn.speaker,
        platform_message_id=turn.dia_id,
    )


def _session_text(session: Session) -> str:
    lines = [f"Session {session.number}, {session.at:%Y-%m-%d %H:%M}:"]
    lines += [f"{turn.speaker}: {turn.text}" for turn in session.turns]
    return "\n".join(lines)
