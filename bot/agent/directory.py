"""Agents by name or conversation: create from templates, find, export, reset."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from bot.errors import NotFoundError
from bot.memory.store import AgentRecord, AgentUpdate, CoreBlock, MemoryStore

__all__ = ["AgentDirectory"]

_EXPORT_PAGE = 5000


class AgentDirectory:
    """Finds and creates agents in one store."""

    def __init__(
        self,
        store: MemoryStore,
        *,
        core_block_limit: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._limit = core_block_limit
        self._clock = clock

    async def create(
        self,
        *,
        name: str,
        persona: str,
        human: str,
        persona_template: str,
        human_template: str,
        model: str,
        conversation_key: str | None = None,
    ) -> AgentRecord:
        """A new agent whose core memory starts from the persona and human texts."""
        now = self._clock()
        agent = AgentRecord(
            id=uuid.uuid4().hex,
            name=name,
            conversation_key=conversation_key,
            persona_template=persona_template,
            human_template=human_template,
            model=model,
            created_at=now,
            updated_at=now,
        )
        limit = max(self._limit, len(persona), len(human))
        blocks = [
            CoreBlock(agent_id=agent.id, label="persona", value=persona, limit=limit, version=1, updated_at=now),
            CoreBlock(agent_id=agent.id, label="human", value=human, limit=limit, version=1, updated_at=now),
        ]
        await self._store.create_agent(agent, blocks)
        return agent

    async def by_name(self, name: str) -> AgentRecord | None:
        return await self._store.get_agent_by_name(name)

    async def require(self, agent_id: str) -> AgentRecord:
        agent = await self._store.get_agent(agent_id)
        if agent is None:
            raise NotFoundError(f"no agent with id {agent_id!r}")
        return agent

    async def set_model(self, agent: AgentRecord, model: str) -> AgentRecord:
        if agent.model == model:
            return agent
        return await self._store.update_agent(agent.id, AgentUpdate(model=model), expected_version=agent.version)

    async def pop_messages(self, agent_id: str, count: int) -> int:
        """Delete the newest `count` messages from recall and the context (`/pop`)."""
        newest = await self._store.get_messages_before(agent_id, before_seq=2**62, limit=count)
        if not newest:
            return 0
        agent = await self.require(agent_id)
        deleted = await self._store.delete_messages_from(agent_id, newest[0].seq)
        if agent.context_start_seq > newest[0].seq:
            # Popping past the summary boundary: the queue restarts where the deleted messages began.
            await self._store.update_agent(
                agent_id, AgentUpdate(context_start_seq=newest[0].seq), expected_version=agent.version
            )
        return deleted

    async def export(self, agent_id: str) -> dict[str, Any]:
        """Everything the agent holds, as JSON-ready data (`/save`, admin dumps, `agents export`)."""
        agent = await self.require(agent_id)
        blocks = await self._store.get_blocks(agent_id)
        messages: list[dict[str, Any]] = []
        from_seq = 1
        while True:
            page = await self._store.get_messages(agent_id, from_seq=from_seq, limit=_EXPORT_PAGE)
            messages += [_jsonable(asdict(m)) for m in page]
            if len(page) < _EXPORT_PAGE:
                break
            from_seq = page[-1].seq + 1
        passages: list[dict[str, Any]] = []
        while found := await self._store.list_passages(agent_id, offset=len(passages), limit=_EXPORT_PAGE):
            passages += [_jsonable(asdict(p)) for p in found]
        return {
            "format": "membot-agent-export",
            "version": 1,
            "exported_at": self._clock().isoformat(),
            "agent": _jsonable(asdict(agent)),
            "core_memory": [_jsonable(asdict(b)) for b in blocks],
            "messages": messages,
            "passages": passages,
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
