"""The MongoDB store (production and scale-out), on pymongo's async driver.

`store` (agents, core blocks, recall, archival), `schema` (collections, indexes, versions), `log`
(crash-safe appends), `vectors` (`$vectorSearch` and its exact fallback), `runtime` (inbox, leases,
heartbeats), `policy` (routing policies, audit log), `usage` (token usage, budgets).
"""

from bot.memory.mongo.store import MongoStore

__all__ = ["MongoStore"]
