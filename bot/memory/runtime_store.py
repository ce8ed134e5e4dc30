"""The coordination records the runtime keeps beside memory: the inbox, leases and due
heartbeats. Implemented by both stores (`SQLiteStore`, `MongoStore`) and covered by the
same contract suite, so several replicas on one MongoDB agree without talking to each other.

- **Inbox**: every platform event is stored under one or more keys (a Discord message id; a
  Slack `event_id` *and* the message's channel+ts, so the `app_mention` and `message` twins
  of one message collapse). A second event with any existing key is a duplicate.
- **Leases**: one replica runs an agent at a time. A lease is claimed atomically when free or
  expired (expiry is compared by the store's caller-supplied clock; no TTL index is relied on),
  renewed and released only by its holder. Each claim by a new holder increments the agent's
  **fencing token**; memory writes made under a lease pass it, and the store refuses a write
  whose token is older than the agent's current one (`LeaseLostError`).
- **Schedule**: when each agent's next reflection heartbeat is due. Claiming a due heartbeat
  is one atomic update, so across replicas each fires once.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

__all__ = [
    "WRITE_FENCE",
    "DueHeartbeat",
    "Fence",
    "HeartbeatState",
    "InboxEntry",
    "InboxStatus",
    "Lease",
    "RuntimeStore",
]

InboxStatus = Literal["pending", "done", "failed"]


@dataclass(frozen=True, slots=True, kw_only=True)
class InboxEntry:
    """One platform event, stored before the platform is acknowledged."""

    id: str
    keys: tuple[str, ...]
    agent_id: str
    #: The event as JSON (an `InboundMessage` or an `Interrupt`, tagged), opaque to the store.
    payload: str
    received_at: datetime
    status: InboxStatus = "pending"
    attempts: int = 0
    #: Platform ids of the replies already delivered for this entry, in order.
    replies: tuple[str, ...] = ()
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Lease:
    """The right to run one agent until `expires_at`; `token` fences its writes."""

    agent_id: str
    owner: str
    token: int
    expires_at: datetime
    #: Set by `lease_acquire` when this claim took the agent from another owner whose lease
    #: had expired without being released (a takeover: that replica died or froze).
    taken_over_from: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Fence:
    """The lease token a turn's memory writes are made under."""

    agent_id: str
    token: int


#: Set by the runtime around a turn. Both stores read it in every memory write for that
#: agent (append_messages, write_block, update_agent, insert_passages, ...) and raise
#: `LeaseLostError` inside the write's transaction when the agent's fencing token has moved
#: past it. A context variable rather than a parameter threaded through every layer: it
#: follows the turn's task, and code outside a runtime turn (the terminal, admin edits,
#: migrations) writes unfenced.
WRITE_FENCE: ContextVar[Fence | None] = ContextVar("membot_write_fence", default=None)


@dataclass(frozen=True, slots=True, kw_only=True)
class HeartbeatState:
    """An agent's row in the heartbeat schedule."""

    agent_id: str
    due_at: datetime | None
    last_fired_at: datetime | None
    #: The server or workspace the agent belongs to (for per-server budgets), if known.
    scope: str | None = None
    #: Reflection tokens spent on `budget_day` (UTC date, ISO), for the daily cap.
    budget_day: str | None = None
    tokens_spent: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class DueHeartbeat:
    """A claimed reflection heartbeat: the claimer runs it, then calls `finish_heartbeat`."""

    agent_id: str
    due_at: datetime
    claimed_by: str


class RuntimeStore(Protocol):
    """Inbox, leases and the heartbeat schedule."""

    # -- inbox ----------------------------------------------------------------------------
    async def inbox_put(self, entry: InboxEntry) -> bool:
        """Store a new entry; False (and nothing stored) when any of its keys is already taken."""
        ...

    async def inbox_pending(self, *, agent_id: str | None = None, limit: int = 100) -> list[InboxEntry]:
        """Pending entries, oldest first (for one agent, or all: resuming after a crash)."""
        ...

    async def inbox_record_reply(self, entry_id: str, reply_id: str) -> None:
        """Append the platform id of a reply delivered for this entry."""
        ...

    async def inbox_finish(self, entry_ids: Sequence[str], *, status: InboxStatus, error: str | None = None) -> None:
        """Mark entries done or failed, counting one more attempt."""
        ...

    async def inbox_prune(self, *, older_than: datetime) -> int:
        """Delete finished entries (and their keys) received before `older_than`."""
        ...

    # -- leases -----------------------------------------------------------------------------
    async def lease_acquire(self, agent_id: str, owner: str, *, now: datetime, expires_at: datetime) -> Lease | None:
        """Claim the agent when it is free, expired or already ours; None when another holds it.

        A claim by a different owner than the last one increments the fencing token. When the
        previous owner's lease expired rather than being released, the returned lease names
        that owner in `taken_over_from`."""
        ...

    async def lease_renew(self, lease: Lease, *, expires_at: datetime) -> Lease | None:
        """Extend a lease we still hold (same owner and token); None when it was taken."""
        ...

    async def lease_release(self, lease: Lease) -> None:
        """Give the lease up if we still hold it (same owner and token); otherwise do nothing."""
        ...

    async def lease_check(self, agent_id: str, token: int) -> None:
        """Raise `LeaseLostError` when `token` is older than the agent's current fencing token."""
        ...

    # -- schedule ---------------------------------------------------------------------------
    async def schedule_heartbeat(self, agent_id: str, *, due_at: datetime, scope: str | None = None) -> None:
        """Set (or move) the agent's next heartbeat and drop any claim on it; one per agent, the
        latest call wins. `scope` (the agent's server or workspace) is recorded when given and
        kept when None."""
        ...

    async def cancel_heartbeat(self, agent_id: str) -> None:
        """Clear the agent's next heartbeat, if any (its history stays)."""
        ...

    async def heartbeat_state(self, agent_id: str) -> HeartbeatState | None:
        """The agent's schedule row, or None when it never had one."""
        ...

    async def reflection_tokens_spent(self, scope: str, *, day: str) -> int:
        """Reflection tokens spent on `day` (UTC date, ISO) by every agent of `scope`."""
        ...

    async def claim_due_heartbeats(
        self, owner: str, *, now: datetime, claim_until: datetime, limit: int
    ) -> list[DueHeartbeat]:
        """Atomically claim up to `limit` heartbeats due at `now` that are unclaimed or whose
        claim expired; another replica calling at the same time gets different ones."""
        ...

    async def finish_heartbeat(self, heartbeat: DueHeartbeat, *, fired_at: datetime, tokens: int) -> None:
        """Record a claimed heartbeat as fired: clear its due time unless it was rescheduled
        meanwhile, set `last_fired_at`, and add `tokens` to the day's spend (resetting the
        spend when `fired_at` is on a new UTC day)."""
        ...
