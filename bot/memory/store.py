"""The storage protocol every memory store implements, and the records it stores.

Two stores implement `MemoryStore`: `bot.memory.sqlite.SQLiteStore` (embedded, the default)
and `bot.memory.mongo.MongoStore` (production, scale-out). The same contract test suite
(`tests/contract/`) runs against both; behaviour must match, including search ranking order
for the suite's fixtures.

Conventions:
- Every time is a timezone-aware UTC `datetime`; stores return aware datetimes.
- Messages of one agent carry a strictly increasing `seq` (1, 2, 3, ...) assigned by the store.
  A seq is never given twice, even after the newest messages were deleted (by speaker, by age);
  only `delete_messages_from` (a truncation: `/pop`, a recall reset) lets the next message reuse it.
  The agent's in-context FIFO queue is every message with `seq >= AgentRecord.context_start_seq`.
- Compare-and-set: `update_agent` and `write_block` take the version the caller read and raise
  `VersionConflictError` when the stored version differs; a successful write bumps the version.
- Paging: `offset`/`limit`; search methods return `(page, total_matches)`.
- Unknown agent ids raise `NotFoundError` on writes; reads of an unknown agent return empty results.
- Each store keeps its own schema version (`sqlite_schema.SCHEMA_VERSION`,
  `mongo_schema.SCHEMA_VERSION`), migrates older data forward on `open()` and refuses newer data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

__all__ = [
    "AgentRecord",
    "AgentUpdate",
    "CoreBlock",
    "MemoryStore",
    "MessageRole",
    "MessageSize",
    "NewMessage",
    "NewPassage",
    "Passage",
    "RecallStats",
    "StoredMessage",
    "StoredToolCall",
    "key_prefix_bound",
]

MessageRole = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentRecord:
    """One agent: its identity, its templates and the state of its virtual context."""

    id: str
    name: str
    conversation_key: str | None
    persona_template: str
    human_template: str
    model: str
    created_at: datetime
    updated_at: datetime
    #: The recursive summary of every message evicted from the context so far.
    summary: str = ""
    #: First message seq still in the FIFO queue; everything before it is only in recall.
    context_start_seq: int = 1
    #: Set when the memory-pressure warning was sent for the current fill; cleared by eviction.
    is_pressure_warned: bool = False
    #: Last time a user message reached this agent (drives the login interrupt and reflection).
    last_user_message_at: datetime | None = None
    is_paused: bool = False
    #: `pause_heartbeats`: timed heartbeats (reflection) are skipped until then.
    heartbeats_paused_until: datetime | None = None
    version: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentUpdate:
    """Fields of an `AgentRecord` that `update_agent` may change; `None` leaves a field as it is."""

    name: str | None = None
    model: str | None = None
    summary: str | None = None
    context_start_seq: int | None = None
    is_pressure_warned: bool | None = None
    last_user_message_at: datetime | None = None
    is_paused: bool | None = None
    heartbeats_paused_until: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CoreBlock:
    """A named, size-limited block of core memory (`persona`, `human`, notes per speaker)."""

    agent_id: str
    label: str
    value: str
    limit: int
    version: int
    updated_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredToolCall:
    """A function call the assistant made, as stored (arguments are the raw JSON text)."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NewMessage:
    """A message to append to recall; the store assigns `seq`."""

    role: MessageRole
    content: str
    created_at: datetime
    tokens: int
    speaker_id: str | None = None
    speaker_name: str | None = None
    platform_message_id: str | None = None
    tool_calls: tuple[StoredToolCall, ...] = field(default_factory=tuple)
    #: For role "tool": the id of the call this is the result of, and the function's name.
    tool_call_id: str | None = None
    tool_name: str | None = None
    #: Text the message is also found by, weighted like the speaker's name: the message before
    #: it (`RecallMemory.record` sets it; see `text_terms.message_contexts`). Never shown.
    context: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredMessage:
    """A message in recall memory."""

    agent_id: str
    seq: int
    role: MessageRole
    content: str
    created_at: datetime
    tokens: int
    speaker_id: str | None = None
    speaker_name: str | None = None
    platform_message_id: str | None = None
    tool_calls: tuple[StoredToolCall, ...] = field(default_factory=tuple)
    tool_call_id: str | None = None
    tool_name: str | None = None
    context: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NewPassage:
    """A passage to insert into archival memory, with its embedding when one was computed."""

    text: str
    created_at: datetime
    embedding: tuple[float, ...] | None = None
    embedding_model: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Passage:
    """A passage in archival memory. `score` is set by searches (higher is better)."""

    id: str
    agent_id: str
    text: str
    created_at: datetime
    embedding_model: str | None = None
    score: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageSize:
    """How big one stored message is, without its text: what a prompt's size is computed from."""

    seq: int
    role: MessageRole
    tokens: int
    #: len(content), in characters.
    chars: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RecallStats:
    """How much recall holds for one agent, and when its newest message was written."""

    message_count: int
    last_message_at: datetime | None


def key_prefix_bound(prefix: str) -> str | None:
    """The least string above every string that starts with `prefix`, for an indexed range
    query `prefix <= key < bound` (code-point order, which is UTF-8 byte order); None: no bound."""
    stripped = prefix.rstrip("\U0010ffff")
    if not stripped:
        return None
    following = ord(stripped[-1]) + 1
    if 0xD800 <= following <= 0xDFFF:  # surrogates are no characters of their own
        following = 0xE000
    return stripped[:-1] + chr(following)


class MemoryStore(Protocol):
    """Persistent memory for every agent: agents, core blocks, recall and archival."""

    # -- lifecycle --------------------------------------------------------------------------
    async def open(self) -> None:
        """Connect, create tables/indexes, check and migrate the schema (refuse a newer one)."""
        ...

    async def close(self) -> None:
        """Release connections; safe to call twice."""
        ...

    # -- agents -----------------------------------------------------------------------------
    async def create_agent(self, agent: AgentRecord, blocks: Sequence[CoreBlock]) -> None:
        """Store a new agent and its initial core blocks atomically; duplicate id or name raises StoreError."""
        ...

    async def get_agent(self, agent_id: str) -> AgentRecord | None:
        """The agent with this id, or None."""
        ...

    async def get_agent_by_name(self, name: str) -> AgentRecord | None:
        """The agent with this name, or None."""
        ...

    async def get_agent_by_conversation(self, conversation_key: str) -> AgentRecord | None:
        """The agent bound to this conversation key, or None."""
        ...

    async def list_agents(
        self, *, offset: int = 0, limit: int = 100, key_prefix: str | None = None
    ) -> list[AgentRecord]:
        """Agents ordered by creation time, oldest first; with `key_prefix`, only those whose
        conversation key starts with it (`discord:`, `discord:123:`), by an indexed range."""
        ...

    async def count_agents(self, *, key_prefix: str | None = None) -> int:
        """How many agents `list_agents` would page through."""
        ...

    async def message_sizes(self, agent_id: str, *, from_seq: int) -> list[MessageSize]:
        """The size of each message with seq >= from_seq, in seq order, without reading the texts
        (the console's context chart of an agent whose queue no loop holds)."""
        ...

    async def recall_stats(self, agent_ids: Sequence[str]) -> dict[str, RecallStats]:
        """Each agent's message count and newest message time, from indexes or counters (never a
        scan of the messages themselves); unknown ids are left out."""
        ...

    async def update_agent(self, agent_id: str, update: AgentUpdate, *, expected_version: int) -> AgentRecord:
        """Apply `update` if the stored version is `expected_version`; return the new record."""
        ...

    async def delete_agent(self, agent_id: str) -> None:
        """Delete the agent with its blocks, messages and passages; unknown ids are a no-op."""
        ...

    # -- core memory ------------------------------------------------------------------------
    async def get_blocks(self, agent_id: str) -> list[CoreBlock]:
        """The agent's core blocks ordered by label."""
        ...

    async def write_block(
        self,
        agent_id: str,
        label: str,
        value: str,
        *,
        limit: int,
        expected_version: int,
        messages: Sequence[NewMessage] = (),
    ) -> CoreBlock:
        """Compare-and-set one block. `expected_version=0` creates a block that must not exist yet.

        `messages` (the function result that reports the edit) are appended in the same
        transaction, so an edit and its record in recall are both stored or both absent.
        """
        ...

    async def delete_blocks(self, agent_id: str) -> None:
        """Delete every core block of the agent (an admin reset of core memory)."""
        ...

    # -- recall -----------------------------------------------------------------------------
    async def append_messages(self, agent_id: str, messages: Sequence[NewMessage]) -> list[StoredMessage]:
        """Append atomically (all or none), assigning consecutive seqs; returns the stored messages."""
        ...

    async def get_messages(self, agent_id: str, *, from_seq: int = 1, limit: int | None = None) -> list[StoredMessage]:
        """Messages with seq >= from_seq in seq order (at most `limit`)."""
        ...

    async def get_messages_before(self, agent_id: str, *, before_seq: int, limit: int) -> list[StoredMessage]:
        """The `limit` messages just before `before_seq`, in seq order (for `/dump` and paging back)."""
        ...

    async def delete_messages_from(self, agent_id: str, from_seq: int) -> int:
        """Delete messages with seq >= from_seq (the terminal's `/pop` and `/retry`); returns the count."""
        ...

    async def delete_messages_before(self, agent_id: str, before_seq: int) -> int:
        """Delete messages with seq < before_seq (recall retention); returns the count. New messages
        still continue after the highest seq ever used; unknown agent raises NotFoundError."""
        ...

    async def delete_messages_by_speaker(self, agent_id: str, speaker_id: str) -> int:
        """Delete every message of the agent whose speaker_id is `speaker_id` (a user asking to be
        forgotten); returns the count. Seqs of other messages are unchanged; unknown agent raises
        NotFoundError like the other deletes."""
        ...

    async def recorded_platform_ids(self, agent_id: str, platform_message_ids: Sequence[str]) -> set[str]:
        """Which of these platform message ids recall already holds for the agent (so a turn
        resumed after a crash does not store its messages twice)."""
        ...

    async def count_messages(self, agent_id: str) -> int:
        """How many messages recall holds for this agent."""
        ...

    async def search_messages(
        self,
        agent_id: str,
        query: str,
        *,
        offset: int = 0,
        limit: int = 5,
        roles: Sequence[MessageRole] = ("user", "assistant"),
        from_seq: int = 1,
        before_seq: int | None = None,
    ) -> tuple[list[StoredMessage], int]:
        """Full-text search ranked by relevance (best first; ties newest first), with the total match count.

        Matches words with stemming (`running` finds `run`), ignoring case and punctuation. Searches
        the content, the speaker name and the message's `context` (FTS5's bm25 with weights 1, 0.5
        and 0.5). Stop words (`text_terms.STOP_WORDS`) are dropped from the query; an empty,
        all-stop-word or all-punctuation query matches nothing. Only messages with
        `from_seq <= seq < before_seq` (no upper bound when None) are found and counted; the bounds
        never change a match's score (bm25's statistics are those of the unbounded search).
        """
        ...

    async def messages_between(
        self,
        agent_id: str,
        start: datetime,
        end: datetime,
        *,
        offset: int = 0,
        limit: int = 5,
        roles: Sequence[MessageRole] = ("user", "assistant"),
        from_seq: int = 1,
        before_seq: int | None = None,
    ) -> tuple[list[StoredMessage], int]:
        """Messages with start <= created_at < end and `from_seq <= seq < before_seq` (no upper
        bound when None) in time order (ties by seq), with the total."""
        ...

    async def messages_without_embedding(
        self, agent_id: str, embedding_model: str, *, limit: int
    ) -> list[StoredMessage]:
        """User and assistant messages with text and no embedding from `embedding_model`, oldest
        first (to embed for hybrid recall search)."""
        ...

    async def set_message_embeddings(
        self, agent_id: str, embedding_model: str, embeddings: Sequence[tuple[int, Sequence[float]]]
    ) -> None:
        """Store (seq, vector) embeddings of the agent's messages by `embedding_model`, replacing any
        earlier one of those messages; seqs the agent does not have are skipped. Unknown agent:
        NotFoundError. A message's embedding is deleted with it."""
        ...

    async def search_messages_vector(
        self,
        agent_id: str,
        embedding: Sequence[float],
        *,
        embedding_model: str,
        offset: int = 0,
        limit: int = 5,
        roles: Sequence[MessageRole] = ("user", "assistant"),
    ) -> tuple[list[StoredMessage], int]:
        """Messages embedded by `embedding_model`, by cosine similarity to `embedding` (best first,
        ties newest first); the total counts the messages of `roles` embedded by that model."""
        ...

    # -- archival ---------------------------------------------------------------------------
    async def insert_passages(self, agent_id: str, passages: Sequence[NewPassage]) -> list[str]:
        """Insert passages atomically; returns their ids in order."""
        ...

    async def list_passages(self, agent_id: str, *, offset: int = 0, limit: int = 100) -> list[Passage]:
        """Passages in insertion order (exports, migration); `score` is None."""
        ...

    async def count_passages(self, agent_id: str) -> int:
        """How many passages archival holds for this agent."""
        ...

    async def search_passages_text(
        self, agent_id: str, query: str, *, offset: int = 0, limit: int = 5
    ) -> tuple[list[Passage], int]:
        """Full-text search over passages, ranked as `search_messages`."""
        ...

    async def search_passages_vector(
        self, agent_id: str, embedding: Sequence[float], *, embedding_model: str, offset: int = 0, limit: int = 5
    ) -> tuple[list[Passage], int]:
        """Cosine-similarity search over passages embedded by `embedding_model` only (best first).

        The total counts passages that have an embedding from that model.
        """
        ...

    async def passages_without_embedding(self, agent_id: str, embedding_model: str, *, limit: int) -> list[Passage]:
        """Passages with no embedding from `embedding_model` (never embedded, or by another model)."""
        ...

    async def set_passage_embedding(self, passage_id: str, embedding: Sequence[float], embedding_model: str) -> None:
        """Replace a passage's embedding (after the embedding model changed)."""
        ...

    async def delete_passages(self, agent_id: str) -> int:
        """Delete every passage of the agent; returns the count."""
        ...

    async def passage_embeddings(self, passage_ids: Sequence[str]) -> dict[str, tuple[str, tuple[float, ...]]]:
        """The embedding model and stored (unit) vector of each of these passages that has one
        (for migration between stores); unknown ids are left out."""
        ...
