"""QA mode: the agent answers each question in a fresh turn; an LLM judge grades the answer.

Each question is a user message to the sample's agent, so the agent decides what to search, as
it would in production. Its `send_message` replies are the answer. The turn is then undone
(`turns.undone_turn`: its messages deleted, the agent's context, summary and core memory put
back), so no question sees another's. `--baseline full-context` asks the model the same question with the whole
conversation in the prompt instead, for comparison on the same run.

Grading follows the published LoCoMo comparisons (Mem0's harness and those after it): an LLM
judge labels the answer CORRECT or WRONG against the gold answer, generous on wording and date
formats (`JUDGE_PROMPT`, our wording of that rubric), and the token F1 of LoCoMo's own
evaluation (lower case, punctuation and articles out, Porter stems; a multi-hop gold answer's
comma-separated parts each scored by their best match and averaged).
"""

from __future__ import annotations

import json
import re
import string
from collections import Counter
from dataclasses import dataclass

from bot.agent.loop import AgentLoop
from bot.agent.model import ChatMessage, ChatModel
from bot.eval.ingest import IngestedAgent
from bot.eval.locomo import ADVERSARIAL, Question, Sample
from bot.eval.turns import question_message, undone_turn
from bot.memory.stemming import porter_stem
from bot.memory.store import MemoryStore

__all__ = ["JUDGE_PROMPT", "AnswerScore", "answer_f1", "answer_full_context", "answer_with_agent", "judge"]

JUDGE_PROMPT = """\
Label a generated answer to a question as CORRECT or WRONG, given the gold (true) answer.

The question was asked about a long conversation between two people; the gold answer is usually \
short and names the thing asked about. Be generous: a longer generated answer is CORRECT when it \
is about the same thing as the gold answer. For questions about time the gold answer is a date, \
month or year; the generated answer is CORRECT when it names the same date or period, in any \
format ("May 7th" and "7 May" are the same) or relative to the conversation's dates.

Question: {question}
Gold answer: {gold}
Generated answer: {generated}

Think in one short sentence, then give the label as JSON: {{"label": "CORRECT"}} or {{"label": "WRONG"}}. \
Never write both labels."""

_FULL_CONTEXT_PROMPT = """\
Below is a conversation between {a} and {b}, in sessions with their dates. Answer the question \
that follows from it, briefly (a few words when that is enough). If the conversation does not \
say, answer that it is not mentioned.

{conversation}"""

_ARTICLES = re.compile(r"\b(a|an|the|and)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


@dataclass(frozen=True, slots=True, kw_only=True)
class AnswerScore:
    answer: str
    is_correct: bool
    f1: float
    prompt_tokens: int
    completion_tokens: int
    judge_tokens: int
    error: str | None = None


class _CollectingSink:
    """The reply sink of an eval turn: keeps what the agent sends."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, text: str) -> str | None:
        self.sent.append(text)
        return None

    async def typing(self) -> None:
        return None


async def answer_with_agent(
    question: Question, sample: Sample, agent: IngestedAgent, *, loop: AgentLoop, store: MemoryStore
) -> tuple[str, int, int, str | None]:
    """The agent's answer (its send_message texts), prompt and completion tokens, and the turn's
    error if it failed; the agent's memory is as before afterwards."""
    sink = _CollectingSink()
    async with undone_turn(agent, store=store, loop=loop):
        result = await loop.run_turn(agent.agent_id, [question_message(question, sample)], reply=sink)
    return "\n".join(sink.sent).strip(), result.prompt_tokens, result.completion_tokens, result.error


async def answer_full_context(question: Question, sample: Sample, *, model: ChatModel) -> tuple[str, int, int]:
    """The baseline: the model answers with the whole conversation in its prompt."""
    sessions = [
        "\n".join([f"Session {s.number} ({s.at:%d %B %Y, %H:%M}):", *(f"{t.speaker}: {t.text}" for t in s.turns)])
        for s in sample.sessions
    ]
    system = _FULL_CONTEXT_PROMPT.format(a=sample.speaker_a, b=sample.speaker_b, conversation="\n\n".join(sessions))
    messages: list[ChatMessage] = [{"role": "system", "content": system}, {"role": "user", "content": question.text}]
    completion = await model.complete(messages, tools=[])
    usage = completion.usage
    return (completion.content or "").strip(), usage.prompt_tokens, usage.completion_tokens


async def judge(question: Question, generated: str, *, model: ChatModel) -> tuple[bool, int]:
    """The judge's verdict on one answer (False when it answers neither label) and its tokens."""
    if not generated:
        return False, 0
    prompt = JUDGE_PROMPT.format(question=question.text, gold=question.answer, generated=generated)
    completion = await model.complete([{"role": "user", "content": prompt}], tools=[])
    tokens = completion.usage.prompt_tokens + completion.usage.completion_tokens
    return _label(completion.content or "") == "CORRECT", tokens


def _label(text: str) -> str | None:
    for match in re.finditer(r"\{[^{}]*\}", text):
        try:
            value = json.loads(match[0])
        except ValueError:
            continue
        if isinstance(value, dict) and str(value.get("label", "")).upper() in ("CORRECT", "WRONG"):
            return str(value["label"]).upper()
    found = {word for word in ("CORRECT", "WRONG") if word in text.upper()}
    return found.pop() if len(found) == 1 else None


def answer_f1(question: Question, generated: str) -> float:
    """LoCoMo's answer F1 for the question's category (see the module docstring)."""
    if question.category == ADVERSARIAL:
        lowered = generated.lower()
        return 1.0 if "not mentioned" in lowered or "no information" in lowered else 0.0
    if question.category == 1:
        parts = [p for p in question.answer.split(",") if p.strip()]
        guesses = [g for g in generated.split(",") if g.strip()] or [generated]
        if not parts:
            return 0.0
        return sum(max(_token_f1(g, p) for g in guesses) for p in parts) / len(parts)
    gold = question.answer.split(";")[0] if question.category == 3 else question.answer
    return _token_f1(generated, gold)


def _tokens(text: str) -> list[str]:
    cleaned = _ARTICLES.sub(" ", text.lower().replace(",", "").translate(_PUNCTUATION))
    return [porter_stem(word) for word in cleaned.split()]


def _token_f1(generated: str, gold: str) -> float:
    guess, truth = _tokens(generated), _tokens(gold)
    common = sum((Counter(guess) & Counter(truth)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(guess), common / len(truth)
    return 2 * precision * recall / (precision + recall)
