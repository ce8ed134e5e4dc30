"""The operator's privacy commands (`membot agents export USER|AGENT`, `membot agents forget USER`)
over the admin service, as a bot-wide admin: the same code, checks and audit log entries as the
platforms' `/memory` and `/membot` commands, run from the shell.

A user is named by their platform id (a Discord user id, a Slack `U...` id): the id that routing
puts at the end of their agents' conversation keys and that recall stores as the speaker.
"""

from __future__ import annotations

import getpass
from typing import Any

from bot.admin import Actor, AdminService, ForgetReport
from bot.app import App
from bot.memory.store import AgentRecord

__all__ = ["cli_actor", "export_agent_or_user", "forget_user", "privacy_admin"]


def cli_actor() -> Actor:
    """The operator at the shell: a bot-wide admin, named in the audit log by their login."""
    try:
        login = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        login = "unknown"
    return Actor(id=f"cli:{login}", name=f"{login} (membot CLI)", scope=None, is_admin=True)


def privacy_admin(app: App) -> AdminService:
    """The admin service over the composition root's store and loop (no runtime: nothing runs turns)."""
    return AdminService(store=app.store, directory=app.directory, loop=app.loop, templates=app.templates)


async def find_agent(app: App, name_or_id: str) -> AgentRecord | None:
    return await app.directory.by_name(name_or_id) or await app.store.get_agent(name_or_id)


async def export_agent_or_user(app: App, target: str, *, is_user: bool) -> dict[str, Any] | None:
    """Everything an agent holds (`target` names an agent by name or id), or everything of a user
    (`is_user`, or no agent is called `target`): their own agents and their messages in shared
    agents. None when neither an agent nor any data of a user with that id exists. Audited."""
    admin, actor = privacy_admin(app), cli_actor()
    if not is_user and (agent := await find_agent(app, target)) is not None:
        return await admin.dump(actor, agent.id)
    exported = await admin.export_user(actor, target)
    if not exported["agents"] and not exported["shared_messages"] and not is_user:
        return None
    return exported


async def forget_user(app: App, user_id: str) -> ForgetReport:
    """Delete the user's own agents and their messages in shared agents; audited as `forget_user`."""
    return await privacy_admin(app).forget_user(cli_actor(), user_id)
