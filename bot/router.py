"""The router: where a message was posted -> the conversation it belongs to -> its agent.

Conversation keys (stable; they name the agents, so changing them orphans memory):

    {platform}:dm:{user}                 a direct message: one agent per user
    {platform}:{server}:channel:{chan}   a server channel shared by everyone in it (speaker-aware)
    {platform}:{server}:user:{user}      one agent per user across a server

A server's policy (set by its admins, stored in the `PolicyStore`) picks `per_channel` or
`per_user`; a channel's own policy wins over the server's, and a thread follows its parent
channel unless a policy was set for the thread itself. A user's DM agent and a server's agents
never share a key, so they never share memory. Agents are created on first contact from the
policy's persona and human templates.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from bot.agent.directory import AgentDirectory
from bot.errors import StoreError
from bot.memory.policy_store import PolicyStore, RoutingMode
from bot.memory.store import AgentRecord, MemoryStore

__all__ = ["Place", "Route", "Router", "RouterStore", "TemplateLoader", "conversation_key"]

_log = logging.getLogger(__name__)

TemplateLoader = Callable[[Literal["persona", "human"], str], str]


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
        load_template: TemplateLoader,
        default_persona: str,
        default_human: str,
        model: str,
    ) -> None:
        self._store = store
        self._directory = directory
        self._load = load_template
        self._persona = default_persona
        self._human = default_human
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

    async def _effective_policy(self, place: Place, scope: str | None) -> tuple[str, RoutingMode, str, str]:
        """(the channel whose policy applies, mode, persona, human) for `place`."""
        channel = place.channel_id
        if scope is None:
            return channel, "per_user", self._persona, self._human
        own = await self._store.get_policy(scope, place.channel_id)
        if own is None and place.thread_parent_id is not None:
            channel = place.thread_parent_id
            own = await self._store.get_policy(scope, channel)
        server = await self._store.get_policy(scope, None)
        mode: RoutingMode = (own.mode if own else None) or (server.mode if server else "per_channel")
        persona = (own.persona if own else None) or (server.persona if server else None) or self._persona
        human = (own.human if own else None) or (server.human if server else None) or self._human
        return channel, mode, persona, human

    async def _create(self, key: str, persona: str, human: str) -> AgentRecord:
        try:
            return await self._directory.create(
                name=key,
                persona=self._load("persona", persona),
                human=self._load("human", human),
                persona_template=persona,
                human_template=human,
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
