"""Recall memory: every message ever exchanged, searchable by text and by date, paged.

Search (`search_messages`, behind `conversation_search`) ranks in up to three ways:
- keywords: the store's bm25 over each message's text, speaker and context (the message before
  it, which `record` attaches: `text_terms.message_contexts`);
- time words: a query naming a span of time ("last week", "in May 2023") is searched without
  that phrase; matches from the span come first, then the span's other messages (the phrase may
  be all the query means), then matches from other times (`time_words`);
- meaning: with an embedder, messages not yet embedded are embedded before a search (a bounded
  batch each time, so a long history catches up over a few searches). A message of several
  sentences is embedded sentence by sentence and stored as the mean of those vectors
  (`mean_unit_vector`): a sentence encoder mean-pools its tokens, so one vector of a long turn
  blurs each fact it states into the rest, where each sentence's own vector keeps it
  (all-MiniLM-L6-v2 was trained on single sentences and short paragraphs). Neither the message's
  vector nor the query's carries a speaker's name (`embedded_texts`, `query_without_names`):
  a name in both makes every message of that person near every question naming them, a speaker
  preference hidden in the cosine where nothing can weigh it (on LoCoMo, the vector ranking
  alone found 0.23 of the evidence of questions that name the wrong person, 0.69 without
  names); who said it is weighed once, explicitly, in the speaker step below.
The keyword ranking, and the vector ranking when there is one, are fused (`fuse_rankings`) in
three steps:
  1. reciprocal rank fusion (RRF: each list gives a message 1 / (k + rank)), which needs no
     scaling between two unrelated scores. k = 10, not the customary 60: with 60, rank 1 scores
     only 1.15x rank 10, so a message in the middle of both lists beats one at the top of one;
     a small vector model (all-MiniLM-L6-v2, measured on LoCoMo) is much weaker than bm25 and its
     mid-list guesses are mostly wrong, so each list's top has to count for more;
  2. neighbourhood: each fused message also gets `NEIGHBOUR_WEIGHT` times the fused scores of the
     found messages within `NEIGHBOUR_SPAN` seqs of it. A conversation stays on a topic for a few
     turns, so a message whose neighbours also match is likelier to be on the topic asked about
     than an isolated match of a common word (the cluster hypothesis; passage-level evidence,
     Callan 1994). Only messages a ranking found are ranked;
  3. speaker: a message whose speaker's name is among the query's words scores `SPEAKER_BOOST`
     more ("what did Alice say about ...": the question is about what Alice said). Neither ranking
     can weigh that: in a conversation between two people each name is the speaker of half the
     messages, which bm25's inverse document frequency counts as worth nothing, and the vectors
     leave names out. A boost, not a filter: a question that names the wrong person still finds
     what the other said, a place or two lower.
  Without vectors (no embedder, the endpoint down) the keyword ranking alone goes through the
  same steps.

A search made during a turn (`TurnBounds`) never finds the messages of the turn being answered:
the user's message is in recall before the agent searches, and found, it would make any word
"said" (asked "did I ever mention Zanzibar?", the agent would find Zanzibar mentioned). Messages
still in the context window come after all older ones: the agent sees them already, and recall
search is for what fell out of view (MemGPT's design), but they stay findable (the prompt shows a
long message cut short, and "no match" for a message the agent can see would contradict it).

The functions here format results for the model: compact lines, not JSON, because search
results are paid for in prompt tokens on every following step.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta

from bot.errors import FunctionArgumentError, LLMError
from bot.memory.embeddings import Embedder
from bot.memory.store import MemoryStore, NewMessage, StoredMessage
from bot.memory.text_terms import CONTEXT_ROLES, index_terms, message_contexts, query_terms
from bot.memory.time_words import TimeSpan, find_time_span

__all__ = [
    "NEIGHBOUR_SPAN",
    "NEIGHBOUR_WEIGHT",
    "PAGE_SIZE",
    "RRF_K",
    "SPEAKER_BOOST",
    "RecallMemory",
    "TurnBounds",
    "embedded_texts",
    "format_message_line",
    "fuse_rankings",
    "mean_unit_vector",
    "parse_date_bound",
    "query_without_names",
]

_log = logging.getLogger(__name__)

PAGE_SIZE = 5
#: Reciprocal rank fusion's constant (Cormack et al. 2009): damps the weight of the very top ranks
#: (10 rather than their 60: see the module docstring and bench/README.md's LoCoMo section).
RRF_K = 10
#: A fused message's score gains this share of the fused scores of the found messages
#: within `NEIGHBOUR_SPAN` seqs of it (before or after).
NEIGHBOUR_WEIGHT = 0.3
NEIGHBOUR_SPAN = 2
#: A fused message whose speaker the query names scores this share more (see the module docstring).
SPEAKER_BOOST = 0.5
_RESULT_CHARS = 400
#: How deep each ranking is read before fusing or re-ordering by time (at least).
_CANDIDATES = 50
#: Messages embedded per search when some were left unembedded (an endpoint outage, a new model).
_CATCH_UP_BATCH = 256
#: How far back `record` looks for the message a new one replies to.
_CONTEXT_LOOKBACK = 16
_NO_SEQ_ABOVE = 1 << 40


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnBounds:
    """Where a turn stands in the agent's history when it searches (see the module docstring)."""

    #: The first message of the turn being answered (its first input): it and every later
    #: message are never found.
    turn_start_seq: int
    #: The first message of the context window the model was shown: messages from here to the
    #: turn come after all older ones.
    context_start_seq: int

    def seq_ranges(self) -> list[tuple[int, int]]:
        """The searched seq ranges [from, before), in the order their matches are listed."""
        window = min(self.context_start_seq, self.turn_start_seq)
        return [(first, before) for first, before in ((1, window), (window, self.turn_start_seq)) if first < before]


class RecallMemory:
    """The recall tier over one store; every method takes the agent id."""

    def __init__(
        self,
        store: MemoryStore,
        *,
        embedder: Embedder | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._embedder = embedder
        self._clock = clock

    async def record(self, agent_id: str, messages: Sequence[NewMessage]) -> list[StoredMessage]:
        """Append messages (all or none); the one path every message takes into recall.

        Each searched message gets its context (the message before it) for keyword search.
        Embeddings are not made here, where they would delay every turn: `embed_missing` makes
        them in batches, before each search by meaning."""
        if any(m.role in CONTEXT_ROLES and m.content for m in messages):
            contexts = message_contexts(
                await self._last_searched_text(agent_id), ((m.role, m.content) for m in messages)
            )
            messages = [
                m if c is None or m.context is not None else replace(m, context=c)
                for m, c in zip(messages, contexts, strict=True)
            ]
        return await self._store.append_messages(agent_id, messages)

    async def count(self, agent_id: str) -> int:
        return await self._store.count_messages(agent_id)

    async def search(self, agent_id: str, query: str, *, page: int = 0, bounds: TurnBounds | None = None) -> str:
        """`conversation_search`: one page of messages ranked by relevance."""
        if not query.strip():
            raise FunctionArgumentError("query must not be empty.")
        found, total = await self.search_messages(
            agent_id, query, offset=page * PAGE_SIZE, limit=PAGE_SIZE, bounds=bounds
        )
        return _format_page(found, total, page, empty=f"No messages match {query!r}.")

    async def search_messages(
        self,
        agent_id: str,
        query: str,
        *,
        offset: int = 0,
        limit: int = PAGE_SIZE,
        bounds: TurnBounds | None = None,
    ) -> tuple[list[StoredMessage], int]:
        """Messages best first (see the module docstring) and how many there are in all; with
        `bounds`, as a search made during that turn finds them."""
        span = find_time_span(query, now=self._clock())
        words = span.rest if span is not None else query
        turn_start = None if bounds is None else bounds.turn_start_seq
        if span is not None and not query_terms(words):
            # Time order puts the context window's messages last already.
            return await self._store.messages_between(
                agent_id, span.start, span.end, offset=offset, limit=limit, before_seq=turn_start
            )
        ranges: list[tuple[int, int | None]] = [(1, None)] if bounds is None else [*bounds.seq_ranges()]
        depth = max(_CANDIDATES, offset + limit)
        by_words = [
            await self._store.search_messages(agent_id, words, limit=depth, from_seq=first, before_seq=before)
            for first, before in ranges
        ]
        by_meaning: list[StoredMessage] = []
        if self._embedder is not None:
            # Every message of a speaker the query names matches it (the speaker is indexed), so
            # the candidates nearly always hold one of theirs when they have spoken at all.
            speakers = {m.speaker_name for found, _ in by_words for m in found if m.speaker_name}
            # The window's messages may take places in the vector ranking: as many more are read.
            extra = 0 if bounds is None else min(max(bounds.turn_start_seq - bounds.context_start_seq, 0), depth)
            by_meaning = await self._search_by_meaning(agent_id, query_without_names(query, speakers), depth + extra)
        page: list[StoredMessage] = []
        total = 0
        for (first, before), (ranked, found) in zip(ranges, by_words, strict=True):
            vectors = [m for m in by_meaning if m.seq >= first and (before is None or m.seq < before)]
            ranked = fuse_rankings([ranked, vectors] if vectors else [ranked], query=words)
            found = max(found, len(ranked))
            if span is not None:
                in_span, _ = await self._store.messages_between(
                    agent_id, span.start, span.end, limit=depth, from_seq=first, before_seq=before
                )
                ranked = _from_span_first(ranked, in_span, span)
                found = max(found, len(ranked))
            page += ranked[max(offset - total, 0) : max(offset + limit - total, 0)]
            total += found
        return page, total

    async def search_date(
        self, agent_id: str, start_date: str, end_date: str, *, page: int = 0, bounds: TurnBounds | None = None
    ) -> str:
        """`conversation_search_date`: messages from start_date through end_date (whole days, UTC),
        the turn being answered left out (see `search_messages`)."""
        start = parse_date_bound(start_date, is_end=False)
        end = parse_date_bound(end_date, is_end=True)
        if end <= start:
            raise FunctionArgumentError(f"end_date {end_date!r} is before start_date {start_date!r}.")
        found, total = await self._store.messages_between(
            agent_id,
            start,
            end,
            offset=page * PAGE_SIZE,
            limit=PAGE_SIZE,
            before_seq=None if bounds is None else bounds.turn_start_seq,
        )
        return _format_page(found, total, page, empty=f"No messages between {start_date} and {end_date}.")

    async def embed_missing(self, agent_id: str, *, limit: int = _CATCH_UP_BATCH) -> int:
        """Embed up to `limit` searched messages that have no embedding from the current model;
        returns how many were embedded (0 without an embedder, or when the endpoint fails)."""
        if self._embedder is None:
            return 0
        missing = await self._store.messages_without_embedding(agent_id, self._embedder.model_name, limit=limit)
        return await self._embed(agent_id, missing)

    async def _search_by_meaning(self, agent_id: str, query: str, depth: int) -> list[StoredMessage]:
        assert self._embedder is not None
        if _NAMED_WORD.search(query) is None:
            return []  # the query was only names
        await self.embed_missing(agent_id)
        try:
            (vector,) = await self._embedder.embed([query])
        except LLMError as exc:
            _log.warning("embedding endpoint failed (%s); recall search by keywords only", exc)
            return []
        found, _ = await self._store.search_messages_vector(
            agent_id, vector, embedding_model=self._embedder.model_name, limit=depth
        )
        return found

    async def _embed(self, agent_id: str, messages: Sequence[StoredMessage]) -> int:
        assert self._embedder is not None
        if not messages:
            return 0
        texts = [embedded_texts(m) for m in messages]
        try:
            vectors = await self._embedder.embed([t for sentences in texts for t in sentences])
        except LLMError as exc:
            _log.warning("embedding endpoint failed (%s); %d message(s) left for a later search", exc, len(messages))
            return 0
        pairs: list[tuple[int, list[float]]] = []
        start = 0
        for message, sentences in zip(messages, texts, strict=True):
            pairs.append((message.seq, mean_unit_vector(vectors[start : start + len(sentences)])))
            start += len(sentences)
        await self._store.set_message_embeddings(agent_id, self._embedder.model_name, pairs)
        return len(pairs)

    async def _last_searched_text(self, agent_id: str) -> str | None:
        recent = await self._store.get_messages_before(agent_id, before_seq=_NO_SEQ_ABOVE, limit=_CONTEXT_LOOKBACK)
        return next((m.content for m in reversed(recent) if m.role in CONTEXT_ROLES and m.content), None)


#: Where a message splits into sentences: after a full stop, question or exclamation mark followed
#: by a space, and at line breaks.
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\s*\n\s*")
#: A longer message (a pasted document) has its sentences embedded in this many groups at most.
_MAX_SENTENCES = 32


def embedded_texts(message: StoredMessage) -> list[str]:
    """What a message is embedded as: each of its sentences, without its speaker (who said it is
    weighed once, in `fuse_rankings`); its vector is their vectors' mean (`mean_unit_vector`)."""
    sentences = [s for s in _SENTENCE_BREAK.split(message.content.strip()) if s] or [message.content]
    if len(sentences) > _MAX_SENTENCES:
        size = math.ceil(len(sentences) / _MAX_SENTENCES)
        sentences = [" ".join(sentences[i : i + size]) for i in range(0, len(sentences), size)]
    return sentences


#: A word and its possessive ("Alice's"), as a query is stripped of names.
_NAMED_WORD = re.compile(r"[^\W_]+(?:['\u2019][sS])?")


def query_without_names(query: str, speakers: Iterable[str]) -> str:
    """`query` without the words that name one of `speakers` (as keyword search compares words:
    stemmed, stop words never counting as names): what is searched by meaning."""
    asked = set(query_terms(query))
    names = {term for speaker in speakers for term in index_terms(speaker) if term in asked}
    if not names:
        return query

    def kept(word: re.Match[str]) -> str:
        terms = [t for t in index_terms(word[0]) if t != "s"]
        return "" if terms and all(t in names for t in terms) else word[0]

    return " ".join(_NAMED_WORD.sub(kept, query).split())


def mean_unit_vector(vectors: Sequence[Sequence[float]]) -> list[float]:
    """The mean of `vectors` scaled to length 1 (one vector is returned as it is)."""
    if len(vectors) == 1:
        return list(vectors[0])
    mean = [math.fsum(values) / len(vectors) for values in zip(*vectors, strict=True)]
    norm = math.sqrt(math.fsum(v * v for v in mean))
    return [v / norm for v in mean] if norm > 0.0 else mean


def fuse_rankings(
    rankings: Sequence[Sequence[StoredMessage]],
    *,
    k: int = RRF_K,
    neighbour_weight: float = NEIGHBOUR_WEIGHT,
    neighbour_span: int = NEIGHBOUR_SPAN,
    query: str = "",
    speaker_boost: float = SPEAKER_BOOST,
) -> list[StoredMessage]:
    """Reciprocal rank fusion of one or more rankings, then the neighbourhood, then the speaker
    (see the module docstring).

    A message's fused score is the sum of 1 / (k + rank) over the rankings it is in (rank 1
    first); its final score adds `neighbour_weight` times the fused scores of the other ranked
    messages whose seq is within `neighbour_span` of its own, and is multiplied by
    1 + `speaker_boost` when a word of its speaker's name is one of `query`'s (stemmed, stop
    words apart, as keyword search compares words). Best first, ties newest first."""
    fused: dict[int, float] = {}
    messages: dict[int, StoredMessage] = {}
    for ranking in rankings:
        for rank, message in enumerate(ranking, start=1):
            fused[message.seq] = fused.get(message.seq, 0.0) + 1.0 / (k + rank)
            messages.setdefault(message.seq, message)
    offsets = [d for d in range(-neighbour_span, neighbour_span + 1) if d != 0]
    scores = {
        seq: score + neighbour_weight * sum(fused.get(seq + d, 0.0) for d in offsets) for seq, score in fused.items()
    }
    if speaker_boost and (asked := set(query_terms(query))):
        named = {
            name
            for name in {m.speaker_name for m in messages.values() if m.speaker_name}
            if asked.intersection(index_terms(name))
        }
        for seq, message in messages.items():
            if message.speaker_name in named:
                scores[seq] *= 1.0 + speaker_boost
    return [messages[seq] for seq in sorted(scores, key=lambda seq: (-scores[seq], -seq))]


def _from_span_first(
    ranked: Sequence[StoredMessage], in_span: Sequence[StoredMessage], span: TimeSpan
) -> list[StoredMessage]:
    """Matches from `span` (in rank order), then the span's other messages (in time order), then
    the matches from other times."""
    matched = [m for m in ranked if span.contains(m.created_at)]
    seen = {m.seq for m in matched}
    others = [m for m in in_span if m.seq not in seen]
    return matched + others + [m for m in ranked if not span.contains(m.created_at)]


def parse_date_bound(text: str, *, is_end: bool) -> datetime:
    """A date (`2024-05-01`) or ISO date-time; a bare end date includes that whole day."""
    value = text.strip()
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            moment = datetime.combine(day, time.min, tzinfo=UTC)
            return moment + timedelta(days=1) if is_end else moment
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise FunctionArgumentError(f"{text!r} is not a date; use YYYY-MM-DD (for example 2024-05-01).") from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def format_message_line(message: StoredMessage, *, max_chars: int = _RESULT_CHARS) -> str:
    """`[2024-05-01 14:03] Alice: text` with long texts shortened."""
    who = message.speaker_name or ("you" if message.role == "assistant" else message.role)
    text = message.content if len(message.content) <= max_chars else message.content[:max_chars] + "…"
    return f"[{message.created_at.astimezone(UTC):%Y-%m-%d %H:%M}] {who}: {text}"


def _format_page(found: Sequence[StoredMessage], total: int, page: int, *, empty: str) -> str:
    if not found:
        return empty if page == 0 else f"No results on page {page}; there are {total} results in all."
    pages = (total + PAGE_SIZE - 1) // PAGE_SIZE
    header = f"Page {page} of {pages} (pages start at 0), {total} results:"
    return "\n".join([header, *(format_message_line(m) for m in found)])
