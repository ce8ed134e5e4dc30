"""Value types that cross layers: what comes into an agent and how it answers.

Adapters translate their platform's objects into these at the edge; nothing past the
router knows which platform a message came from except by the `platform` string.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

__all__ = [
    "InboundMessage",
    "Interrupt",
    "InterruptKind",
    "ReplySink",
    "TurnInput",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class InboundMessage:
    """A message from speaker S in conversation C, as the engine sees it."""

    platform: str
    conversation_key: str
    speaker_id: str
    speaker_name: str
    text: str
    sent_at: datetime
    platform_message_id: str | None = None
    attachments: tuple[str, ...] = field(default_factory=tuple)
    #: Where to answer, in the adapter's own terms (JSON: channel, thread, message ids); the
    #: adapter's sink factory rebuilds a `ReplySink` from it, also after a restart.
    reply_route: str = ""
    #: A channel shared by several people: the agent sees each speaker's name and id.
    is_shared_conversation: bool = False
    #: The server or workspace (`discord:GUILD`, `slack:TEAM`) for per-server budgets; None for DMs.
    scope: str | None = None


InterruptKind = Literal["heartbeat", "memory_warning", "reflection", "login"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Interrupt:
    """Control handed back to the agent without a user message (MemGPT's system events)."""

    kind: InterruptKind
    reason: str
    at: datetime


TurnInput = InboundMessage | Interrupt


class ReplySink(Protocol):
    """The capability to answer in the conversation a turn came from (like Bolt's `say`)."""

    async def send(self, text: str) -> str | None:
        """Deliver one `send_message` to the user(s), splitting long text as its platform needs.

        Returns the platform's id of the (first) message posted, when it has one, so the
        runtime can record what was delivered and never post it twice."""
        ...

    async def typing(self) -> None:
        """Show that the agent is working; a no-op where the platform has no such thing."""
        ...
