"""The embedded store: every tier, the runtime's coordination, policies and usage in one SQLite file.

`store` (agents, core blocks, recall, archival), `schema` (tables and versions), `runtime` (inbox,
leases, heartbeats), `policy` (routing policies, audit log), `usage` (token usage, budgets).
"""

from bot.memory.sqlite.store import SQLiteStore

__all__ = ["SQLiteStore"]
