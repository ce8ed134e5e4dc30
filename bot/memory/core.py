"""Core memory: the small, always-in-context blocks the agent edits about itself and its humans.

Edits are read-modify-compare-and-set with a bounded retry, so two steps (or two replicas)
editing one block never lose each other's writes; limits are enforced on every write with
an error the model can act on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from bot.errors import CoreBlockLimitError, CoreBlockMatchError, FunctionArgumentError, VersionConflictError
from bot.memory.store import CoreBlock, MemoryStore, NewMessage

__all__ = ["CoreMemory", "render_blocks"]

_log = logging.getLogger(__name__)

_MAX_CAS_ATTEMPTS = 8


class CoreMemory:
    """Named core blocks of one store; every method takes the agent id."""

    def __init__(self, store: MemoryStore, *, default_limit: int) -> None:
        self._store = store
        self._default_limit = default_limit

    async def blocks(self, agent_id: str) -> list[CoreBlock]:
        return await self._store.get_blocks(agent_id)

    async def append(
        self, agent_id: str, label: str, content: str, *, record: Callable[[str], Sequence[NewMessage]] = lambda _: ()
    ) -> CoreBlock:
        """Append `content` on a new line of block `label` (created if the label is new)."""
        return await self._edit(agent_id, label, lambda old: f"{old}\n{content}" if old else content, record)

    async def replace(
        self,
        agent_id: str,
        label: str,
        old_content: str,
        new_content: str,
        *,
        record: Callable[[str], Sequence[NewMessage]] = lambda _: (),
    ) -> CoreBlock:
        """Replace the first exact occurrence of `old_content`; an empty `new_content` deletes it."""
        if not old_content:
            raise FunctionArgumentError("old_content must not be empty: quote the exact text to replace.")

        def edit(old: str) -> str:
            if old_content not in old:
                raise CoreBlockMatchError(
                    f"No exact match for {old_content!r} in block '{label}'. Copy the text exactly as it appears in core memory."
                )
            return old.replace(old_content, new_content, 1)

        return await self._edit(agent_id, label, edit, record)

    async def overwrite(self, agent_id: str, label: str, value: str, *, limit: int | None = None) -> CoreBlock:
        """Set a block's whole value (admin edits, templates); still enforces the limit."""
        return await self._edit(agent_id, label, lambda _old: value, lambda _: (), limit=limit)

    async def _edit(
        self,
        agent_id: str,
        label: str,
        change: Callable[[str], str],
        record: Callable[[str], Sequence[NewMessage]],
        *,
        limit: int | None = None,
    ) -> CoreBlock:
        for _attempt in range(_MAX_CAS_ATTEMPTS):
            current = {block.label: block for block in await self._store.get_blocks(agent_id)}.get(label)
            old_value = current.value if current else ""
            block_limit = limit or (current.limit if current else self._default_limit)
            new_value = change(old_value)
            if len(new_value) > block_limit:
                raise CoreBlockLimitError(
                    f"Block '{label}' would be {len(new_value)} characters, over its limit of {block_limit}. "
                    "Shorten it: replace verbose text with a summary, or move details to archival memory."
                )
            try:
                return await self._store.write_block(
                    agent_id,
                    label,
                    new_value,
                    limit=block_limit,
                    expected_version=current.version if current else 0,
                    messages=record(new_value),
                )
            except VersionConflictError:
                _log.debug("core block %s/%s changed under us; retrying", agent_id, label)
        raise VersionConflictError(f"core block '{label}' kept changing; gave up after {_MAX_CAS_ATTEMPTS} attempts")


def render_blocks(blocks: Sequence[CoreBlock]) -> str:
    """Core memory as it appears in the prompt: one tagged section per block, with its fill."""
    parts = []
    for block in blocks:
        parts.append(f'<{block.label} chars="{len(block.value)}/{block.limit}">\n{block.value}\n</{block.label}>')
    return "\n".join(parts)
