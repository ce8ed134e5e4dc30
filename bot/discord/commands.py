"""Discord's admin app commands: the `/memory ...` group and `/forget-me`, over `AdminService`.

Each command parses its options, checks, calls one `AdminService` method and formats what it
returns (shared/STYLE.md §12); the service checks permissions again and audits. Answers are
ephemeral. Which agent a command acts on: the agent of the channel (or thread) it is run in,
under the server's current policy (through the router, as a message there would be routed),
or with `user:` that user's agent where the policy gives each user their own.

Permissions are checked twice: Discord hides `/memory` from members without the configured
permission (`default_member_permissions`, Manage Server by default; a server admin can change
that in the server's integration settings), and `interaction_check` refuses anyone whose
resolved permissions in the interaction lack it, whatever the client let through. The
`Actor` handed to the service carries that decision; `/memory` exists only in servers.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any, Literal

import discord
from discord import app_commands

from bot.admin import Actor, AdminService, MemorySummary, ResetScope
from bot.discord.answers import answer_error, reply
from bot.discord.forms import FORM_PREFIX, ConfirmView, EditBlockForm, FormOrigin, OpenForms
from bot.discord.render import agent_markdown, audit_lines, forget_text, reset_text, summary_text, usage_text
from bot.router import Place, Router

__all__ = ["AdminCommandTree", "AdminPermission", "MemoryCommands", "PermissionNotes", "forget_me_command"]

_log = logging.getLogger(__name__)

AdminPermission = Literal["manage_guild", "administrator", "manage_channels", "manage_messages"]
#: Channels the bot could not post in since the last admin command in that server (then cleared).
PermissionNotes = Callable[[int], Sequence[int]]

PLATFORM = "discord"
#: Discord's limit on a text input in a modal.
_MODAL_TEXT_LIMIT = 4000
_PERMISSION_NAMES: dict[str, str] = {
    "manage_guild": "Manage Server",
    "administrator": "Administrator",
    "manage_channels": "Manage Channels",
    "manage_messages": "Manage Messages",
}


class AdminCommandTree(app_commands.CommandTree[discord.Client]):
    """The bot's command tree: every command error becomes one short ephemeral answer."""

    async def on_error(
        self, interaction: discord.Interaction[discord.Client], error: app_commands.AppCommandError
    ) -> None:
        if isinstance(error, app_commands.CheckFailure):
            return  # `interaction_check` already answered
        await answer_error(interaction, getattr(error, "original", error))


class MemoryCommands(app_commands.Group):
    """`/memory ...`: inspect and manage the memory of this channel's agent."""

    def __init__(
        self,
        *,
        admin: AdminService,
        router: Router,
        permission: AdminPermission,
        permission_notes: PermissionNotes,
    ) -> None:
        super().__init__(
            name="memory",
            description="Inspect and manage what the bot remembers here",
            guild_only=True,
            default_permissions=discord.Permissions(**{permission: True}),
        )
        self._admin = admin
        self._router = router
        self._permission = permission
        self._notes = permission_notes
        self._forms = OpenForms()

    # -- the one check ---------------------------------------------------------------------
    def actor(self, interaction: discord.Interaction[Any]) -> Actor:
        """Who runs the command: an admin only with the permission resolved for them in this interaction."""
        is_admin = interaction.guild_id is not None and bool(getattr(interaction.permissions, self._permission))
        # Never scope=None (a bot-wide admin): outside a server the actor is scoped to nothing.
        scope = f"{PLATFORM}:{interaction.guild_id}" if interaction.guild_id is not None else f"{PLATFORM}:dm"
        return Actor(id=str(interaction.user.id), name=interaction.user.display_name, scope=scope, is_admin=is_admin)

    async def interaction_check(self, interaction: discord.Interaction[Any]) -> bool:
        if self.actor(interaction).is_admin:
            return True
        await reply(interaction, self._refusal())
        return False

    def _refusal(self) -> str:
        return f"Only members with the {_PERMISSION_NAMES[self._permission]} permission can use /memory here."

    # -- helpers ---------------------------------------------------------------------------
    async def _agent_id(self, interaction: discord.Interaction[Any], user: discord.abc.User | int | None) -> str:
        """The agent a message from `user` (default: the caller) in this channel would reach."""
        channel = interaction.channel
        parent = channel.parent_id if isinstance(channel, discord.Thread) else None
        user_id = user if isinstance(user, int) else (user or interaction.user).id
        place = Place(
            platform=PLATFORM,
            server_id=str(interaction.guild_id),
            channel_id=str(interaction.channel_id),
            thread_parent_id=str(parent) if parent is not None else None,
            user_id=str(user_id),
        )
        return (await self._router.route(place)).agent_id

    def _with_notes(self, interaction: discord.Interaction[Any], text: str) -> str:
        """Append the channels the bot could not post in since the last admin command here."""
        if interaction.guild_id is None:
            return text
        channels = self._notes(interaction.guild_id)
        if not channels:
            return text
        where = ", ".join(f"<#{c}>" for c in channels)
        return f"{text}\n\n⚠️ I could not post in {where}: I lack the Send Messages permission there."

    async def _answer(self, interaction: discord.Interaction[Any], text: str, **extra: Any) -> None:
        await reply(interaction, self._with_notes(interaction, text), **extra)

    # -- commands --------------------------------------------------------------------------
    @app_commands.command(name="show", description="Core memory and counts of this channel's agent")
    @app_commands.describe(user="that user's agent, where each user has their own")
    async def show(self, interaction: discord.Interaction[Any], user: discord.User | None = None) -> None:
        summary: MemorySummary = await self._admin.show(
            self.actor(interaction), await self._agent_id(interaction, user)
        )
        await self._answer(interaction, summary_text(summary))

    @app_commands.command(name="dump", description="Everything the agent remembers, as JSON and Markdown files")
    @app_commands.describe(user="that user's agent, where each user has their own")
    async def dump(self, interaction: discord.Interaction[Any], user: discord.User | None = None) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        agent_id = await self._agent_id(interaction, user)
        exported = await self._admin.dump(self.actor(interaction), agent_id)
        files = [
            _file(f"agent-{agent_id}.json", json.dumps(exported, ensure_ascii=False, indent=1)),
            _file(f"agent-{agent_id}.md", agent_markdown(exported)),
        ]
        await self._answer(interaction, f"Memory of agent `{agent_id}`:", files=files)

    @app_commands.command(name="edit", description="Rewrite one core memory block")
    @app_commands.describe(block="the block's label, e.g. persona or human", user="that user's agent")
    async def edit(self, interaction: discord.Interaction[Any], block: str, user: discord.User | None = None) -> None:
        actor = self.actor(interaction)
        target = (user or interaction.user).id
        agent_id = await self._agent_id(interaction, target)
        summary = await self._admin.show(actor, agent_id)
        current = next((b for b in summary.blocks if b.label == block), None)
        limit = min(current.limit if current is not None else _MODAL_TEXT_LIMIT, _MODAL_TEXT_LIMIT)
        origin = FormOrigin(
            custom_id=f"{FORM_PREFIX}{interaction.id}",
            guild_id=interaction.guild_id or 0,
            channel_id=interaction.channel_id or 0,
            member_id=interaction.user.id,
            target_user_id=target,
            agent_id=agent_id,
            label=block,
        )
        form = EditBlockForm(
            origin=origin,
            value=current.value if current else "",
            limit=limit,
            submit=self.submit_form,
        )
        self._forms.add(origin.custom_id)
        await interaction.response.send_modal(form)

    async def submit_form(self, form: EditBlockForm, interaction: discord.Interaction[Any]) -> None:
        """A submitted `/memory edit` form: written only if it comes from the member, server and
        channel it was opened for, the member is still an admin, and the channel's agent is still
        the one it was opened for (AdminService checks the actor and the server once more)."""
        origin = form.origin
        if interaction.user.id != origin.member_id:
            await reply(
                interaction, "This form was opened by someone else; nothing was saved. Run `/memory edit` yourself."
            )
            return
        if (interaction.guild_id, interaction.channel_id) != (origin.guild_id, origin.channel_id):
            await reply(interaction, "This form was opened in another channel; nothing was saved.")
            return
        actor = self.actor(interaction)
        if not actor.is_admin:
            await reply(interaction, self._refusal())
            return
        if await self._agent_id(interaction, origin.target_user_id) != origin.agent_id:
            await reply(
                interaction,
                "The agent here changed since the form was opened (a reset or a new policy); nothing was saved. "
                "Run `/memory edit` again.",
            )
            return
        block = await self._admin.edit_block(actor, origin.agent_id, origin.label, form.text.value)
        await reply(interaction, f"Saved **{block.label}** ({len(block.value)}/{block.limit} characters).")

    async def answer_stale_form(self, interaction: discord.Interaction[Any]) -> None:
        """Answer the submission of a form no open one takes (timed out, or opened before a restart)."""
        if self._forms.is_stale(interaction):
            await reply(
                interaction,
                "This form has expired (or the bot restarted since it was opened); nothing was saved. "
                "Run `/memory edit` again.",
            )

    @app_commands.command(name="reset", description="Erase part of the agent's memory (asks to confirm)")
    @app_commands.describe(part="core: back to its templates; recall: messages; archival: passages; all: the agent")
    async def reset(
        self, interaction: discord.Interaction[Any], part: ResetScope, user: discord.User | None = None
    ) -> None:
        actor = self.actor(interaction)
        agent_id = await self._agent_id(interaction, user)
        await self._admin.show(actor, agent_id)  # refuses now, not after the click, if it is not ours

        async def confirmed(click: discord.Interaction[Any]) -> str:
            return reset_text(await self._admin.reset(self.actor(click), agent_id, part))

        view = ConfirmView(owner_id=interaction.user.id, action=confirmed)
        await self._answer(
            interaction, f"Erase the **{part}** memory of agent `{agent_id}`? This cannot be undone.", view=view
        )

    @app_commands.command(name="pause", description="Stop the agent answering until resumed")
    async def pause(self, interaction: discord.Interaction[Any], user: discord.User | None = None) -> None:
        agent = await self._admin.pause(self.actor(interaction), await self._agent_id(interaction, user))
        await self._answer(interaction, f"Agent `{agent.id}` is paused; `/memory resume` wakes it.")

    @app_commands.command(name="resume", description="Let a paused agent answer again")
    async def resume(self, interaction: discord.Interaction[Any], user: discord.User | None = None) -> None:
        agent = await self._admin.resume(self.actor(interaction), await self._agent_id(interaction, user))
        await self._answer(interaction, f"Agent `{agent.id}` answers again.")

    @app_commands.command(name="heartbeat", description="Give the agent a reflection step now")
    async def heartbeat(self, interaction: discord.Interaction[Any], user: discord.User | None = None) -> None:
        report = await self._admin.heartbeat_now(self.actor(interaction), await self._agent_id(interaction, user))
        when = "now" if report.is_queued_directly else "on the scheduler's next tick"
        await self._answer(interaction, f"Heartbeat for agent `{report.agent_id}` queued; it runs {when}.")

    @app_commands.command(name="policy", description="One shared agent per channel, or one agent per user")
    @app_commands.describe(
        mode="per_channel: shared and speaker-aware; per_user: each user their own",
        where="this server or only this channel",
    )
    async def policy(
        self,
        interaction: discord.Interaction[Any],
        mode: Literal["per_channel", "per_user"],
        where: Literal["server", "channel"] = "channel",
    ) -> None:
        actor = self.actor(interaction)
        scope, channel = f"{PLATFORM}:{interaction.guild_id}", _where(interaction, where)
        old = await self._admin.get_policy(actor, scope, channel)
        await self._admin.set_policy(
            actor, scope, channel, mode, old.persona if old else None, old.human if old else None,
            old.proactive_channel if old else None,
        )  # fmt: skip
        await self._answer(interaction, f"Routing in {_place_name(where)}: **{mode}**. New conversations follow it.")

    @app_commands.command(name="persona", description="The persona template new agents here start from")
    @app_commands.describe(template="a persona template name (`membot templates persona` lists them)")
    async def persona(
        self, interaction: discord.Interaction[Any], template: str, where: Literal["server", "channel"] = "channel"
    ) -> None:
        actor = self.actor(interaction)
        scope, channel = f"{PLATFORM}:{interaction.guild_id}", _where(interaction, where)
        old = await self._admin.get_policy(actor, scope, channel)
        await self._admin.set_policy(
            actor, scope, channel, old.mode if old else "per_channel", template, old.human if old else None,
            old.proactive_channel if old else None,
        )  # fmt: skip
        await self._answer(interaction, f"New agents in {_place_name(where)} start as persona **{template}**.")

    @app_commands.command(name="export", description="One user's data on this server, as a JSON file")
    async def export(self, interaction: discord.Interaction[Any], user: discord.User) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        exported = await self._admin.export_user(self.actor(interaction), str(user.id))
        text = json.dumps(exported, ensure_ascii=False, indent=1)
        await self._answer(
            interaction, f"Data of {user.mention} on this server:", files=[_file(f"user-{user.id}.json", text)]
        )

    @app_commands.command(name="forget", description="Delete one user's data on this server (asks to confirm)")
    async def forget(self, interaction: discord.Interaction[Any], user: discord.User) -> None:
        async def confirmed(click: discord.Interaction[Any]) -> str:
            return forget_text(await self._admin.forget_user(self.actor(click), str(user.id)))

        view = ConfirmView(owner_id=interaction.user.id, action=confirmed)
        await self._answer(interaction, f"Delete everything {user.mention} said or has on this server?", view=view)

    @app_commands.command(name="usage", description="LLM tokens this server's agents used, per day")
    @app_commands.describe(days="how many days back, today included")
    async def usage(self, interaction: discord.Interaction[Any], days: app_commands.Range[int, 1, 366] = 7) -> None:
        report = await self._admin.usage(self.actor(interaction), days=days, by=("day",))
        await self._answer(interaction, usage_text(report))

    @app_commands.command(name="audit", description="Recent admin actions on this server")
    async def audit(self, interaction: discord.Interaction[Any], limit: app_commands.Range[int, 1, 50] = 15) -> None:
        entries = await self._admin.audit(self.actor(interaction), limit)
        await self._answer(interaction, audit_lines(entries))


def forget_me_command(admin: AdminService) -> app_commands.Command[Any, ..., None]:
    """`/forget-me`: anyone deletes their own direct-message agent (asks to confirm)."""

    @app_commands.command(name="forget-me", description="Delete what the bot remembers from your direct messages")
    async def forget_me(interaction: discord.Interaction[Any]) -> None:
        user = interaction.user

        async def confirmed(_click: discord.Interaction[Any]) -> str:
            report = await admin.forget_me(str(user.id), user.display_name, platform=PLATFORM)
            if not report.agents_deleted:
                return "I had nothing from our direct messages to forget."
            return "Done: everything from our direct messages is deleted."

        view = ConfirmView(owner_id=user.id, action=confirmed)
        await reply(interaction, "Delete everything I remember from our direct messages?", view=view)

    return forget_me


def _file(name: str, text: str) -> discord.File:
    return discord.File(io.BytesIO(text.encode()), filename=name)


def _where(interaction: discord.Interaction[Any], where: Literal["server", "channel"]) -> str | None:
    return None if where == "server" else str(interaction.channel_id)


def _place_name(where: Literal["server", "channel"]) -> str:
    return "this server" if where == "server" else "this channel"
