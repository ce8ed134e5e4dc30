"""Copy every agent from one memory store to another (`membot migrate --from ... --to ...`).

Agents keep their ids, records (versions and times included), core blocks, messages (with the
same seqs, so `context_start_seq` still points at the same message) and passages. Passage ids
are the target's own. Embeddings travel when the source can hand them over
(`PassageEmbeddingSource`); otherwise passages arrive without one and the report counts them,
so the embedder can fill them in later (`passages_without_embedding` finds them).

Then the servers' routing policies, the threads the bot joined and the audit log (oldest entry
first) follow. Token usage records are not copied: they are accounting of the old deployment.

Nothing is copied if the target already holds any of the source's agent ids; after each agent
the counts are compared, and a mismatch raises StoreError naming the agent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from bot.errors import StoreError
from bot.memory.policy_store import PolicyStore
from bot.memory.store import AgentRecord, MemoryStore, NewMessage, NewPassage

__all__ = ["AgentCopy", "MigratableStore", "MigrationReport", "copy_store"]

#: More admin actions than any deployment writes; the audit log is read in one go.
_AUDIT_LIMIT = 10_000_000


class MigratableStore(MemoryStore, PolicyStore, Protocol):
    """What a migration reads and writes: memory, policies, joined threads and the audit log."""


_log = logging.getLogger(__name__)

_PAGE = 500


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentCopy:
    """What was copied for one agent (each count verified against the target)."""

    agent_id: str
    blocks: int
    messages: int
    passages: int
    embeddings: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MigrationReport:
    agents: tuple[AgentCopy, ...]
    #: Passages with an embedding model but no readable vector in the source; re-embedded on search.
    embeddings_not_copied: int
    policies: int = 0
    joined_threads: int = 0
    audit_entries: int = 0


async def _all_agents(store: MemoryStore) -> list[AgentRecord]:
    agents: list[AgentRecord] = []
    while page := await store.list_agents(offset=len(agents), limit=_PAGE):
        agents.extend(page)
    return agents


async def _copy_messages(source: MemoryStore, target: MemoryStore, agent_id: str) -> int:
    copied, from_seq = 0, 1
    while page := await source.get_messages(agent_id, from_seq=from_seq, limit=_PAGE):
        stored = await target.append_messages(
            agent_id,
            [
                NewMessage(
                    role=m.role,
                    content=m.content,
                    created_at=m.created_at,
                    tokens=m.tokens,
                    speaker_id=m.speaker_id,
                    speaker_name=m.speaker_name,
                    platform_message_id=m.platform_message_id,
                    tool_calls=m.tool_calls,
                    tool_call_id=m.tool_call_id,
                    tool_name=m.tool_name,
                    context=m.context,
                )
                for m in page
            ],
        )
        if [m.seq for m in stored] != [m.seq for m in page]:
            # The target numbers densely from 1; a source with holes cannot keep its seqs.
            raise StoreError(
                f"agent {agent_id!r}: messages got seqs {stored[0].seq}.. in the target, not {page[0].seq}.."
            )
        copied += len(page)
        from_seq = page[-1].seq + 1
    return copied


async def _copy_passages(source: MemoryStore, target: MemoryStore, agent_id: str) -> tuple[int, int, int]:
    """(passages, embeddings copied, embeddings that could not be read from the source)."""
    copied = embedded = missing = 0
    while page := await source.list_passages(agent_id, offset=copied, limit=_PAGE):
        vectors = await source.passage_embeddings([p.id for p in page])
        new: list[NewPassage] = []
        for p in page:
            model, vector = vectors.get(p.id, (p.embedding_model, None))
            if vector is not None:
                embedded += 1
            elif p.embedding_model is not None:
                missing += 1
            new.append(NewPassage(text=p.text, created_at=p.created_at, embedding=vector, embedding_model=model))
        await target.insert_passages(agent_id, new)
        copied += len(page)
    return copied, embedded, missing


async def copy_store(
    source: MigratableStore,
    target: MigratableStore,
    *,
    on_progress: Callable[[int, int], None] | None = None,
) -> MigrationReport:
    """Copy every agent of `source` into `target`; `on_progress(agents_done, agents_total)`."""
    agents = await _all_agents(source)
    clashes = [a.id for a in agents if await target.get_agent(a.id) is not None]
    if clashes:
        raise StoreError(f"the target already has agent(s) {', '.join(map(repr, clashes[:5]))}; nothing was copied")
    copies: list[AgentCopy] = []
    missing_total = 0
    for done, agent in enumerate(agents, start=1):
        blocks = await source.get_blocks(agent.id)
        await target.create_agent(agent, blocks)
        messages = await _copy_messages(source, target, agent.id)
        passages, embedded, missing = await _copy_passages(source, target, agent.id)
        expected = (len(blocks), await source.count_messages(agent.id), await source.count_passages(agent.id))
        found = (
            len(await target.get_blocks(agent.id)),
            await target.count_messages(agent.id),
            await target.count_passages(agent.id),
        )
        if found != expected or (messages, passages) != expected[1:]:
            raise StoreError(
                f"agent {agent.id!r}: the target has (blocks, messages, passages) {found}, expected {expected}"
            )
        copies.append(
            AgentCopy(agent_id=agent.id, blocks=len(blocks), messages=messages, passages=passages, embeddings=embedded)
        )
        missing_total += missing
        _log.info("copied agent %r: %d messages, %d passages", agent.id, messages, passages)
        if on_progress is not None:
            on_progress(done, len(agents))
    policies, threads, audit = await _copy_servers(source, target)
    return MigrationReport(
        agents=tuple(copies),
        embeddings_not_copied=missing_total,
        policies=policies,
        joined_threads=threads,
        audit_entries=audit,
    )


async def _copy_servers(source: MigratableStore, target: MigratableStore) -> tuple[int, int, int]:
    """Policies, joined threads and the audit log; (policies, threads, audit entries) copied."""
    policies = 0
    for scope in await source.list_policy_scopes():
        for policy in await source.list_policies(scope):
            await target.set_policy(policy)
            policies += 1
    threads = await source.list_joined_threads()
    for scope, thread in threads:
        await target.add_joined_thread(scope, thread)
    entries = await source.list_audit(limit=_AUDIT_LIMIT)
    for entry in reversed(entries):  # newest first from the source: append oldest first
        await target.append_audit(entry)
    _log.info("copied %d policies, %d joined threads, %d audit entries", policies, len(threads), len(entries))
    return policies, len(threads), len(entries)
