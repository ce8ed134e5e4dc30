"""`/membot` subcommands: parse, check, call `bot.admin.AdminService`, format as mrkdwn.

Platform wiring (the slash command, the buttons, the message shortcut, `@membot admin ...`
in threads) is `bot.slack.commands`; this module only turns one request's text into one
`AdminAnswer`. The admin check is here, once, for every way in: workspace admins and owners
(`users.info`) and the configured user ids; `AdminService` checks the `Actor` again.
Destructive subcommands (`reset`, `forget`) answer with a confirmation button whose value
says what to do; `confirm` runs it after checking the clicking user the same way, asking Slack
afresh (not the minute-old cached answer), as for a submitted form (`run(..., fresh=True)`):
whoever was demoted since the question or the form was shown is refused.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, get_args

from bot.admin import Actor, AdminService, BudgetStatus, MemorySummary, ResetReport, ResetScope
from bot.errors import ConfigError, CoreBlockLimitError, NotAllowedError, NotFoundError, UserFacingError
from bot.memory.policy_store import Policy, RoutingMode
from bot.router import Place, Router
from bot.slack.format import mrkdwn_escape
from bot.slack.people import ADMIN_TTL_S, SlackPeople

__all__ = ["CANCEL_ACTION", "CONFIRM_ACTION", "HELP", "AdminAnswer", "AdminFile", "AdminRequest", "SlackAdmin"]

_log = logging.getLogger(__name__)

PLATFORM = "slack"
CONFIRM_ACTION = "membot_confirm"
CANCEL_ACTION = "membot_cancel"
_USER = re.compile(r"^<@([UW][A-Z0-9]+)(?:\|[^>]*)?>$")
_SHOWN_CHARS = 600
_RESET_SCOPES: tuple[str, ...] = get_args(ResetScope)
_MODES: tuple[str, ...] = get_args(RoutingMode)

HELP = """\
*/membot* manages the memory of this channel's agent (workspace admins only):
• `show [@user]`: core memory, counts and summary
• `dump [@user]`: everything the agent holds, as a JSON file in your DM
• `edit BLOCK TEXT`: overwrite a core memory block, e.g. `edit human Alice prefers tea`
• `reset core|recall|archival|all [@user]`: reset part of the memory (asks to confirm)
• `pause [@user]`, `resume [@user]`: stop or restart answering
• `heartbeat [@user]`: give the agent a reflection step now
• `policy [per_channel|per_user] [server]`: show or set how this channel (or the workspace) maps to agents
• `persona NAME [server]`: the persona template new agents here start from
• `export @user`: one person's data, as a JSON file in your DM
• `forget @user`: delete one person's data (asks to confirm)
• `audit [N]`: the last N admin actions (default 20)
• `usage [DAYS]`: LLM tokens spent in this workspace per day (default 7 days); `usage reset`: a fresh daily budget
`@user` picks a person's own agent where the policy is `per_user`. Slash commands do not work in \
threads: there, mention me (`@membot admin show`) or use the message shortcut *Manage membot*."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AdminRequest:
    """One admin command: who ran it, where, and what they typed after `/membot`."""

    team: str
    user: str
    channel: str
    thread_ts: str | None = None
    text: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class AdminFile:
    """A file for the admin (a dump, an export): delivered in their DM with the bot."""

    filename: str
    title: str
    content: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AdminAnswer:
    """What to show the admin, ephemerally: mrkdwn text, optional Block Kit blocks and a file."""

    text: str
    blocks: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    file: AdminFile | None = None


class SlackAdmin:
    """Runs `/membot` subcommands through the admin service."""

    def __init__(self, *, admin: AdminService, router: Router, people: SlackPeople, admin_users: Sequence[str]) -> None:
        self._admin = admin
        self._router = router
        self._people = people
        self._admin_users = frozenset(admin_users)

    async def run(self, request: AdminRequest, *, fresh: bool = False) -> AdminAnswer:
        """One subcommand, checked (`fresh`: with Slack asked now) and run; errors become short answers."""
        words = request.text.split()
        name = words[0].lower() if words else "help"
        if name in ("help", "?"):
            return AdminAnswer(text=HELP)
        actor = await self.actor(request, fresh=fresh)
        if not actor.is_admin:
            return _refusal()
        try:
            return await self._dispatch(request, actor, name, words[1:])
        except Exception as exc:
            return _explain(exc, f"/membot {name}")

    async def confirm(self, request: AdminRequest, value: str) -> AdminAnswer:
        """A click on a confirmation button whose value `reset`/`forget` made."""
        actor = await self.actor(request, fresh=True)
        if not actor.is_admin:
            return _refusal()
        try:
            order = json.loads(value)
            if not isinstance(order, dict):
                return AdminAnswer(text="That button no longer does anything; run the command again.")
            if order.get("op") == "reset" and order.get("scope") in _RESET_SCOPES:
                report = await self._admin.reset(actor, str(order["agent"]), order["scope"])
                return AdminAnswer(text=_describe_reset(report))
            if order.get("op") == "forget":
                forgotten = await self._admin.forget_user(actor, str(order["user"]))
                return AdminAnswer(
                    text=f"Forgot <@{forgotten.user_id}>: {len(forgotten.agents_deleted)} agents deleted, "
                    f"{forgotten.shared_messages_deleted} messages removed from shared agents."
                )
        except Exception as exc:
            return _explain(exc, "a confirmation")
        return AdminAnswer(text="That button no longer does anything; run the command again.")

    async def actor(self, request: AdminRequest, *, fresh: bool = False) -> Actor:
        """The `Actor` for the person who ran the request: the one admin check of every way in
        (`fresh`: Slack is asked now, for forms and buttons used some time after they were shown)."""
        person = await self._people.lookup(request.user, max_age_s=0 if fresh else ADMIN_TTL_S)
        is_admin = request.user in self._admin_users or (person is not None and (person.is_admin or person.is_owner))
        return Actor(
            id=request.user,
            name=person.name if person is not None else request.user,
            scope=f"{PLATFORM}:{request.team}",
            is_admin=is_admin,
        )

    # -- subcommands --------------------------------------------------------------------
    async def _dispatch(self, request: AdminRequest, actor: Actor, name: str, args: list[str]) -> AdminAnswer:
        match name:
            case "show":
                return _describe_memory(await self._admin.show(actor, await self._agent(request, args)))
            case "dump":
                agent_id = await self._agent(request, args)
                dumped = await self._admin.dump(actor, agent_id)
                return _file_answer(f"membot-agent-{agent_id}.json", "Agent dump", dumped, "the dump of this agent")
            case "edit":
                parts = request.text.split(maxsplit=2)
                if len(parts) < 3:
                    return AdminAnswer(text="Usage: `/membot edit BLOCK TEXT` (e.g. `edit human Alice prefers tea`).")
                block = await self._admin.edit_block(actor, await self._agent(request, []), parts[1], parts[2])
                return AdminAnswer(
                    text=f"Core block *{mrkdwn_escape(block.label)}* is now {len(block.value)} characters."
                )
            case "reset":
                if not args or args[0].lower() not in _RESET_SCOPES:
                    return AdminAnswer(text="Usage: `/membot reset core|recall|archival|all [@user]`.")
                scope = args[0].lower()
                agent_id = await self._agent(request, args[1:])
                summary = await self._admin.show(actor, agent_id)
                question = f"Reset *{scope}* memory of agent `{mrkdwn_escape(summary.name)}`? This cannot be undone."
                return _confirmation(question, {"op": "reset", "agent": agent_id, "scope": scope}, "Reset")
            case "pause" | "resume":
                agent_id = await self._agent(request, args)
                if name == "pause":
                    await self._admin.pause(actor, agent_id)
                    return AdminAnswer(text="Paused: the agent answers no one until `/membot resume`.")
                await self._admin.resume(actor, agent_id)
                return AdminAnswer(text="Resumed: the agent answers again.")
            case "heartbeat":
                report = await self._admin.heartbeat_now(actor, await self._agent(request, args))
                return AdminAnswer(text=f"Heartbeat queued for agent `{report.agent_id}`.")
            case "policy":
                return await self._policy(request, actor, args)
            case "persona":
                return await self._persona(request, actor, args)
            case "export":
                user = _user_arg(args)
                if user is None:
                    return AdminAnswer(text="Usage: `/membot export @user`.")
                exported = await self._admin.export_user(actor, user)
                return _file_answer(f"membot-user-{user}.json", "User export", exported, f"the data of <@{user}>")
            case "forget":
                user = _user_arg(args)
                if user is None:
                    return AdminAnswer(text="Usage: `/membot forget @user`.")
                question = f"Delete everything membot holds about <@{user}> in this workspace? This cannot be undone."
                return _confirmation(question, {"op": "forget", "user": user}, "Forget")
            case "usage":
                return await self._usage(actor, args)
            case "audit":
                limit = int(args[0]) if args and args[0].isdigit() else 20
                entries = await self._admin.audit(actor, limit=max(1, min(limit, 100)))
                lines = [
                    f"`{e.at:%Y-%m-%d %H:%M}` {mrkdwn_escape(e.actor_name)}: {e.action}"
                    + (f" agent `{e.agent_id}`" if e.agent_id else "")
                    + (f" ({mrkdwn_escape(e.detail)})" if e.detail else "")
                    for e in entries
                ]
                return AdminAnswer(
                    text="\n".join(["*Recent admin actions*", *lines]) if lines else "No admin actions yet."
                )
        return AdminAnswer(text=f"Unknown subcommand `{mrkdwn_escape(name)}`.\n\n{HELP}")

    async def _usage(self, actor: Actor, args: list[str]) -> AdminAnswer:
        if args and args[0].lower() == "reset":
            status = await self._admin.reset_budget(actor, "server")
            return AdminAnswer(text=f"The workspace's daily budget starts afresh: {_describe_budget(status)}.")
        days = int(args[0]) if args and args[0].isdigit() else 7
        report = await self._admin.usage(actor, days=days, by=("day",))
        lines = [f"*LLM usage* {report.since:%Y-%m-%d} to {report.until:%Y-%m-%d}"]
        lines += [
            f"`{row.day:%Y-%m-%d}` {row.prompt_tokens:,} prompt + {row.completion_tokens:,} completion tokens, "
            f"{row.calls:,} calls"
            for row in report.rows
        ]
        lines.append(
            f"Total: {report.total_prompt_tokens + report.total_completion_tokens:,} tokens in {report.total_calls:,} calls"
        )
        if report.server_budget is not None:
            lines.append(f"Today's budget: {_describe_budget(report.server_budget)}")
        return AdminAnswer(text="\n".join(lines))

    async def _policy(self, request: AdminRequest, actor: Actor, args: list[str]) -> AdminAnswer:
        scope = actor.scope or ""
        channel = None if "server" in (a.lower() for a in args) else request.channel
        where = "the workspace" if channel is None else f"<#{request.channel}>"
        current = await self._admin.get_policy(actor, scope, channel)
        modes = [a.lower() for a in args if a.lower() in _MODES]
        if not modes:
            if current is None:
                return AdminAnswer(
                    text=f"No policy set for {where}: the default (`per_channel`) or the workspace's applies."
                )
            return AdminAnswer(text=f"Policy for {where}: {_describe_policy(current)}.")
        policy = await self._set_policy(actor, scope, channel, current, mode=modes[0])
        return AdminAnswer(text=f"Policy for {where} is now {_describe_policy(policy)}.")

    async def _persona(self, request: AdminRequest, actor: Actor, args: list[str]) -> AdminAnswer:
        names = [a for a in args if a.lower() != "server"]
        if len(names) != 1:
            return AdminAnswer(text="Usage: `/membot persona NAME [server]` (`membot templates persona` lists them).")
        scope = actor.scope or ""
        channel = None if len(names) != len(args) else request.channel
        current = await self._admin.get_policy(actor, scope, channel)
        policy = await self._set_policy(actor, scope, channel, current, persona=names[0])
        return AdminAnswer(text=f"New agents here start from persona `{mrkdwn_escape(policy.persona or '')}`.")

    async def _set_policy(
        self,
        actor: Actor,
        scope: str,
        channel: str | None,
        current: Policy | None,
        *,
        mode: str | None = None,
        persona: str | None = None,
    ) -> Policy:
        """Change one field of the policy, keeping the others (the service replaces it whole)."""
        chosen: RoutingMode = "per_user" if (mode or (current.mode if current else "")) == "per_user" else "per_channel"
        return await self._admin.set_policy(
            actor,
            scope,
            channel,
            chosen,
            persona if persona is not None else (current.persona if current else None),
            current.human if current else None,
            current.proactive_channel if current else None,
        )

    async def _agent(self, request: AdminRequest, args: list[str]) -> str:
        """The agent of the place the command was run in (a person's own one with `@user`)."""
        if request.channel.startswith("D"):
            # A DM's agent belongs to its person, not to the workspace; and routing would create one.
            raise NotAllowedError("A DM's agent is its person's own: run `/membot` in a channel.")
        in_thread = request.thread_ts is not None
        place = Place(
            platform=PLATFORM,
            server_id=request.team,
            channel_id=f"{request.channel}/{request.thread_ts}" if in_thread else request.channel,
            thread_parent_id=request.channel if in_thread else None,
            user_id=_user_arg(args) or request.user,
        )
        return (await self._router.route(place)).agent_id


def _user_arg(args: Sequence[str]) -> str | None:
    for arg in args:
        if match := _USER.match(arg):
            return match.group(1)
    return None


def _refusal() -> AdminAnswer:
    return AdminAnswer(
        text="Only workspace admins and owners (and the users in MEMBOT_SLACK__ADMIN_USERS) can use `/membot`."
    )


def _explain(exc: Exception, what: str) -> AdminAnswer:
    """AdminService errors as one short line; anything else is logged and summarised."""
    if isinstance(exc, (NotAllowedError, CoreBlockLimitError, UserFacingError, ConfigError)):
        return AdminAnswer(text=mrkdwn_escape(str(exc)))
    if isinstance(exc, NotFoundError):
        return AdminAnswer(text=f"Not found: {mrkdwn_escape(str(exc))}")
    if isinstance(exc, (ValueError, KeyError)):
        return AdminAnswer(text="That request was malformed; run the command again.")
    _log.exception("%s failed", what)
    return AdminAnswer(text="Something went wrong running that; the details are in the bot's log.")


def _confirmation(question: str, order: dict[str, str], verb: str) -> AdminAnswer:
    buttons = [
        {
            "type": "button",
            "action_id": CONFIRM_ACTION,
            "style": "danger",
            "text": {"type": "plain_text", "text": verb},
            "value": json.dumps(order),
        },
        {"type": "button", "action_id": CANCEL_ACTION, "text": {"type": "plain_text", "text": "Cancel"}},
    ]
    blocks = (
        {"type": "section", "text": {"type": "mrkdwn", "text": question}},
        {"type": "actions", "block_id": "membot_confirmation", "elements": buttons},
    )
    return AdminAnswer(text=question, blocks=blocks)


def _file_answer(filename: str, title: str, data: dict[str, Any], what: str) -> AdminAnswer:
    content = json.dumps(data, ensure_ascii=False, indent=1, default=str)
    return AdminAnswer(
        text=f"Sent {what} to your DM with me ({len(content):,} characters of JSON).",
        file=AdminFile(filename=filename, title=title, content=content),
    )


def _describe_memory(summary: MemorySummary) -> AdminAnswer:
    lines = [f"*Agent* `{mrkdwn_escape(summary.name)}` (`{summary.agent_id}`)"]
    for block in summary.blocks:
        value = block.value if len(block.value) <= _SHOWN_CHARS else block.value[:_SHOWN_CHARS] + "…"
        lines.append(f"*{mrkdwn_escape(block.label)}* ({block.size}/{block.limit} characters)")
        lines.append(f"```\n{mrkdwn_escape(value)}\n```" if value else "_(empty)_")
    lines.append(f"Recall: {summary.recall_count} messages · archival: {summary.archival_count} passages")
    if summary.is_paused:
        lines.append("*Paused* by an admin.")
    if summary.summary:
        shown = summary.summary if len(summary.summary) <= _SHOWN_CHARS else summary.summary[:_SHOWN_CHARS] + "…"
        lines.append(f"Summary: {mrkdwn_escape(shown)}")
    return AdminAnswer(text="\n".join(lines))


def _describe_reset(report: ResetReport) -> str:
    match report.scope:
        case "all":
            return "Deleted the agent and all its memory; it starts afresh with the next message."
        case "core":
            return f"Reset core memory to its templates ({report.blocks_reset} blocks)."
        case "recall":
            return f"Deleted {report.messages_deleted} messages from recall memory."
    return f"Deleted {report.passages_deleted} passages from archival memory."


def _describe_budget(status: BudgetStatus) -> str:
    if status.limit == 0:
        return f"{status.spent:,} tokens spent, no daily cap"
    return f"{status.spent:,} of {status.limit:,} tokens spent" + (" (used up)" if status.is_spent else "")


def _describe_policy(policy: Policy) -> str:
    parts = [f"`{policy.mode}`"]
    if policy.persona:
        parts.append(f"persona `{mrkdwn_escape(policy.persona)}`")
    if policy.human:
        parts.append(f"human `{mrkdwn_escape(policy.human)}`")
    return ", ".join(parts)
