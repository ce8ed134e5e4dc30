"""The router: where a message was posted -> the conversation it belongs to -> its agent.

Conversation keys (stable; they name the agents, so changing them orphans memory):

    {platform}:dm:{user}                 a direct message: one agent per user
    {platform}:{server}:channel:{chan}   a server channel shared by everyone in it (speaker-aware)
    {platform}:{server}:user:{user}      one agent per user across a server

A server's policy (set by its admins, stored in the `PolicyStore`) picks `per_channel` or
`per_user`; a channel's own policy wins over the server's, and a thread follows its parent
channel unless a policy was set for the thread itself. A user's DM agent and a server's agents
never share a key, so they never share memory. Agents are created on first contact from the
policy's persona and human templates: names a server admin chose, checked again here by the
admins' rules (`Templates.for_agent`: never a path, never more than a core block holds), or
the operator's defaults.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from bot.agent.directory import AgentDirectory
from bot.agent.templates import Templates
from bot.errors import StoreError
from bot.memory.policy_store import PolicyStore, RoutingMode
from bot.memory.store import AgentRecord, MemoryStore

__all__ = ["Place", "Route", "Router", "RouterStore", "conversation_key"]

_log = logging.getLogger(__name__)


class RouterStore(MemoryStore, PolicyStore, Protocol):
    """Agents by conversation, and policies."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Place:
    """Where a message was posted, in platform-neutral terms."""

    platform: str
    #: The guild or workspace; None for a direct message.
    server_id: str | None
    channel_id: str
    #: For a message in a thread: the channel the thread belongs to.
    thread_parent_id: str | None = None
    user_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """The agent that answers a message, and how it sees the conversation."""

    agent_id: str
    conversation_key: str
    is_shared: bool
    #: `{platform}:{server}` for per-server budgets and policies; None for DMs.
    scope: str | None


def conversation_key(place: Place, *, mode: RoutingMode, channel: str) -> str:
    if place.server_id is None:
        return f"{place.platform}:dm:{place.user_id}"
    if mode == "per_user":
        return f"{place.platform}:{place.server_id}:user:{place.user_id}"
    return f"{place.platform}:{place.server_id}:channel:{channel}"


class Router:
    """Resolves places to agents, creating agents on first contact."""

    def __init__(
        self,
        *,
        store: RouterStore,
        directory: AgentDirectory,
        templates: Templates,
        model: str,
    ) -> None:
        self._store = store
        self._directory = directory
        self._templates = templates
        self._model = model

    async def route(self, place: Place) -> Route:
        """The agent for a message posted at `place` (created if this conversation is new)."""
        scope = f"{place.platform}:{place.server_id}" if place.server_id is not None else None
        channel, mode, persona, human = await self._effective_policy(place, scope)
        key = conversation_key(place, mode=mode, channel=channel)
        agent = await self._store.get_agent_by_conversation(key)
        if agent is None:
            agent = await self._create(key, persona, human)
        return Route(
            agent_id=agent.id,
            conversation_key=key,
            is_shared=scope is not None and mode == "per_channel",
            scope=scope,
        )

    async def _effective_policy(
        self, place: Place, scope: str | None
    ) -> tuple[str, RoutingMode, str | None, str | None]:
        """(the channel whose policy applies, mode, persona, human) for `place`; None: the default."""
        channel = place.channel_id
        if scope is None:
            return channel, "per_user", None, None
        own = await self._store.get_policy(scope, place.channel_id)
        if own is None and place.thread_parent_id is not None:
            channel = place.thread_parent_id
            own = await self._store.get_policy(scope, channel)
        server = await self._store.get_policy(scope, None)
        mode: RoutingMode = (own.mode if own else None) or (server.mode if server else "per_channel")
        persona = (own.persona if own else None) or (server.persona if server else None)
        human = (own.human if own else None) or (server.human if server else None)
        return channel, mode, persona, human

    async def _create(self, key: str, persona: str | None, human: str | None) -> AgentRecord:
        persona_name, persona_text = self._templates.for_agent("persona", persona)
        human_name, human_text = self._templates.for_agent("human", human)
        try:
            return await self._directory.create(
                name=key,
                persona=persona_text,
                human=human_text,
                persona_template=persona_name,
                human_template=human_name,
                model=self._model,
                conversation_key=key,
            )
        except StoreError:
            # Another replica created it first (the name is unique): use theirs.
            existing = await self._store.get_agent_by_conversation(key)
            if existing is None:
                raise
            _log.debug("agent for %s was created concurrently; using %s", key, existing.id)
            return existing
