"""Routing policies and the admin audit log, stored beside memory by both stores.

A **policy** says, for one server or workspace (`scope`, e.g. `discord:123`) and optionally one
channel in it, how conversations map to agents (one shared agent per channel, or one agent per
user across the server) and which persona and human templates new agents start from. The
channel's policy wins over the server's; a thread follows its parent channel's.

The **audit log** records every admin action (who, what, on which agent, when), written by the
admin service whatever the platform.

**Joined threads** are the threads a bot was mentioned in: it keeps answering there without a
mention, also after a restart and on every replica.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

__all__ = ["AuditEntry", "Policy", "PolicyStore", "RoutingMode"]

RoutingMode = Literal["per_channel", "per_user"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """How one server (channel=None) or one channel in it routes messages to agents."""

    scope: str
    channel: str | None = None
    mode: RoutingMode = "per_channel"
    persona: str | None = None
    human: str | None = None
    #: Where this server's agents may post on their own (reflection heartbeats); None: nowhere.
    #: Only the server's own policy (channel=None) is consulted for it.
    proactive_channel: str | None = None
    updated_at: datetime
    updated_by: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    """One admin action."""

    at: datetime
    scope: str | None
    actor_id: str
    actor_name: str
    action: str
    agent_id: str | None = None
    detail: str = ""


class PolicyStore(Protocol):
    """Routing policies per server/channel and the audit log."""

    async def get_policy(self, scope: str, channel: str | None) -> Policy | None:
        """The policy set for exactly this scope and channel (None: the server's own)."""
        ...

    async def list_policies(self, scope: str) -> list[Policy]:
        """Every policy of a server: its own first, then its channels' by channel id."""
        ...

    async def list_policy_scopes(self) -> list[str]:
        """Every scope that has a policy, sorted (what `membot migrate` copies)."""
        ...

    async def set_policy(self, policy: Policy) -> None:
        """Create or replace the policy for (scope, channel)."""
        ...

    async def delete_policy(self, scope: str, channel: str | None) -> bool:
        """Remove a policy; False when there was none."""
        ...

    async def append_audit(self, entry: AuditEntry) -> None:
        """Record an admin action."""
        ...

    async def add_joined_thread(self, scope: str, thread: str) -> None:
        """Remember that the bot joined `thread` of server `scope` (it was mentioned there); idempotent."""
        ...

    async def has_joined_thread(self, scope: str, thread: str) -> bool:
        """Whether `add_joined_thread(scope, thread)` was ever called (it outlives restarts)."""
        ...

    async def list_joined_threads(self) -> list[tuple[str, str]]:
        """Every (scope, thread) joined, sorted (what `membot migrate` copies)."""
        ...

    async def list_audit(
        self, *, scope: str | None = None, agent_id: str | None = None, limit: int = 50
    ) -> list[AuditEntry]:
        """The newest entries first, optionally for one server and/or one agent."""
        ...
