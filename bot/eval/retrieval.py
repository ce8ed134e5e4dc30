"""Retrieval mode: how high the agent's own memory search ranks a question's evidence turns.

Searched as production searches: the question arrives as a user message of the agent, recorded
as a turn's first input (`AgentLoop.begin_turn`), and its text is then the query of the agent's
`conversation_search` within that turn (`RecallMemory.search_messages` with the turn's bounds,
what the function pages through: keyword bm25, time words, and vectors fused in when an embedder
is configured), which never finds the turn's own messages. The turn is then undone
(`turns.undone_turn`), so each question meets the memory ingest left.

`EvalOptions.is_question_recorded=False` (for benchmarks, not on the command line) searches a
memory the question was never recorded in, as figures were measured before: kept to compare.

The first pages (`DEPTH` results) become a ranking of dialog ids. recall@k is the share of the
question's evidence turns among the first k, the reciprocal rank is 1 / the rank of the first
evidence turn (0 when none is in the first `DEPTH`). With `--archival` the sessions' passages are
searched too (`archival_memory_search`), scored at session level.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from bot.agent.loop import AgentLoop
from bot.eval.ingest import IngestedAgent
from bot.eval.locomo import Question, Sample
from bot.eval.turns import question_message, undone_turn
from bot.memory.recall import TurnBounds
from bot.memory.store import MemoryStore, StoredMessage

__all__ = ["DEPTH", "RECALL_KS", "RetrievalScore", "rank_metrics", "score_question"]

#: Results read per question: the first two pages of `conversation_search`.
DEPTH = 10
RECALL_KS = (1, 5, 10)
_ARCHIVAL_DEPTH = 5


@dataclass(frozen=True, slots=True, kw_only=True)
class RetrievalScore:
    recall: dict[int, float]
    reciprocal_rank: float
    ranked: tuple[str, ...]
    latency_ms: float
    #: With --archival: share of the evidence's sessions among the first 5 passages found.
    archival_session_recall: float | None = None


def rank_metrics(ranked: Sequence[str], evidence: Sequence[str]) -> tuple[dict[int, float], float]:
    """recall@k for each k of `RECALL_KS`, and the reciprocal rank, of one ranking."""
    wanted = set(evidence)
    if not wanted:
        raise ValueError("a question without evidence cannot be scored")
    recall = {k: len(wanted.intersection(ranked[:k])) / len(wanted) for k in RECALL_KS}
    first = next((i for i, dia_id in enumerate(ranked, start=1) if dia_id in wanted), None)
    return recall, 0.0 if first is None else 1.0 / first


async def score_question(
    question: Question,
    sample: Sample,
    agent: IngestedAgent,
    loop: AgentLoop,
    *,
    store: MemoryStore,
    archival: bool,
    is_recorded: bool = True,
) -> RetrievalScore:
    if is_recorded:
        async with undone_turn(agent, store=store, loop=loop):
            bounds = await loop.begin_turn(agent.agent_id, [question_message(question, sample)])
            found, latency_ms = await _timed_search(loop, agent, question, bounds)
    else:
        found, latency_ms = await _timed_search(loop, agent, question, None)
    ranked = tuple(dia_id for m in found if (dia_id := agent.dia_ids.get(m.seq)) is not None)
    recall, rr = rank_metrics(ranked, question.evidence)
    session_recall = None
    if archival:
        passages, _ = await loop.archival.search_passages(
            agent.agent_id, question.text, offset=0, limit=_ARCHIVAL_DEPTH
        )
        sessions = {_session_of(p.text) for p in passages}
        wanted = {int(dia_id[1:].split(":")[0]) for dia_id in question.evidence}
        session_recall = len(wanted & sessions) / len(wanted)
    return RetrievalScore(
        recall=recall, reciprocal_rank=rr, ranked=ranked, latency_ms=latency_ms, archival_session_recall=session_recall
    )


async def _timed_search(
    loop: AgentLoop, agent: IngestedAgent, question: Question, bounds: TurnBounds | None
) -> tuple[list[StoredMessage], float]:
    started = time.perf_counter()
    found, _total = await loop.recall.search_messages(
        agent.agent_id, question.text, offset=0, limit=DEPTH, bounds=bounds
    )
    return found, (time.perf_counter() - started) * 1000


def _session_of(passage_text: str) -> int | None:
    """The session number of an ingested session passage ("Session 3, ..."), None for others."""
    head = passage_text.split(",", 1)[0]
    number = head.removeprefix("Session ").strip()
    return int(number) if head.startswith("Session ") and number.isdigit() else None
