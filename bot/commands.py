"""What each `membot` command does, inside the composition root (`bot.app`)."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bot.app import App, open_app, templates_of
from bot.config import Settings
from bot.errors import ConfigError, LLMUnavailableError, NotFoundError, UserFacingError
from bot.memory.store import AgentRecord
from bot.terminal_adapter import TerminalChat

if TYPE_CHECKING:
    from aiohttp import web

    from bot.service import Component, Services

__all__ = [
    "agents",
    "chat",
    "configured_platforms",
    "discord_invite_url",
    "doctor",
    "run",
    "serve",
    "template_names",
]

_log = logging.getLogger(__name__)


async def chat(
    settings: Settings,
    *,
    agent_name: str,
    persona: str | None,
    human: str | None,
    is_user_first: bool,
    is_debug: bool,
    assume_yes: bool,
) -> int:
    console = Console(highlight=False, soft_wrap=True)
    async with open_app(settings) as app:
        await _check_llm_reachable(app)
        agent = await app.directory.by_name(agent_name)
        if agent is None:
            agent = await _create_agent(app, console, agent_name, persona, human, assume_yes=assume_yes)
            if agent is None:
                return 1
        else:
            if persona or human:
                console.print("[yellow]--persona/--human only apply to new agents; resuming with its own memory.[/]")
            agent = await app.directory.set_model(agent, settings.llm.model)
            count = await app.store.count_messages(agent.id)
            console.print(
                f"Resuming agent [bold]{escape(agent.name)}[/] ({count} messages in recall). /help for commands."
            )
        terminal = TerminalChat(
            agent=agent,
            loop=app.loop,
            directory=app.directory,
            store=app.store,
            checkpoint_dir=settings.data_dir / "checkpoints",
            is_debug=is_debug,
            console=console,
        )
        await terminal.run(is_user_first=is_user_first)
    return 0


async def _create_agent(
    app: App, console: Console, name: str, persona: str | None, human: str | None, *, assume_yes: bool
) -> AgentRecord | None:
    settings = app.settings
    persona_name = persona or settings.agent.persona
    human_name = human or settings.agent.human
    persona_text = app.templates.operator_text("persona", persona_name)
    human_text = app.templates.operator_text("human", human_name)
    if not assume_yes and sys.stdin.isatty():
        answer = await asyncio.to_thread(
            input, f"Create a new agent '{name}' (persona {persona_name}, human {human_name})? [Y/n] "
        )
        if answer.strip().lower() not in ("", "y", "yes"):
            console.print("Nothing created.")
            return None
    agent = await app.directory.create(
        name=name,
        persona=persona_text,
        human=human_text,
        persona_template=persona_name,
        human_template=human_name,
        model=settings.llm.model,
    )
    console.print(
        f"Created agent [bold]{escape(name)}[/] (persona {escape(persona_name)}, human {escape(human_name)}). "
        "/help for commands."
    )
    return agent


async def _check_llm_reachable(app: App) -> None:
    """Fail fast with one clear line when nothing listens at the endpoint (a TCP connect:
    no SDK needed, so start-up stays quick; `membot doctor` checks the API itself)."""
    url = urlsplit(app.settings.llm.base_url)
    host = url.hostname or "localhost"
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        async with asyncio.timeout(5):
            _reader, writer = await asyncio.open_connection(host, port)
        writer.close()
        await writer.wait_closed()
    except (OSError, TimeoutError) as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise LLMUnavailableError(
            f"cannot reach the LLM endpoint {app.settings.llm.base_url}: {reason}. "
            "Start your server or set OPENAI_BASE_URL (and OPENAI_API_KEY)."
        ) from None


async def agents(settings: Settings, action: str, args: dict[str, Any]) -> int:
    console = Console(highlight=False, soft_wrap=True)
    async with open_app(settings) as app:
        if action == "list":
            table = Table("name", "id", "created", "recall", "archival")
            for listed in await app.store.list_agents(limit=10_000):
                table.add_row(
                    listed.name,
                    listed.id,
                    f"{listed.created_at:%Y-%m-%d %H:%M}",
                    str(await app.store.count_messages(listed.id)),
                    str(await app.store.count_passages(listed.id)),
                )
            console.print(table)
            return 0
        if action in ("export", "forget"):
            return await _privacy(app, console, action, args)
        agent = await app.directory.by_name(args["name"])
        if agent is None:
            raise NotFoundError(f"no agent named {args['name']!r} (membot agents list shows them)")
        if action == "show":
            for block in await app.store.get_blocks(agent.id):
                console.print(f"[bold]{escape(block.label)}[/] ({len(block.value)}/{block.limit} chars)")
                console.print(escape(block.value))
            console.print(f"summary: {escape(agent.summary) or '(none)'}")
            return 0
        if action == "delete":
            if not args.get("yes"):
                raise UserFacingError("deleting an agent erases all its memory: add -y to confirm")
            from bot.ops.privacy import cli_actor, privacy_admin

            # Through the admin service, like the platforms' reset: audited, heartbeat cancelled.
            await privacy_admin(app).reset(cli_actor(), agent.id, "all")
            console.print(f"Deleted agent {escape(agent.name)}. Recorded in the audit log.")
            return 0
    return 2


async def _privacy(app: App, console: Console, action: str, args: dict[str, Any]) -> int:
    """`agents export AGENT|USER` and `agents forget USER`, as a bot-wide admin (audited)."""
    from bot.ops.privacy import export_agent_or_user, forget_user

    target = str(args["name"])
    if action == "forget":
        if not args.get("yes"):
            raise UserFacingError(
                f"forgetting user {target} deletes their own agents and their messages in shared agents: "
                "add -y to confirm"
            )
        report = await forget_user(app, target)
        console.print(
            f"Forgot user {escape(target)}: {len(report.agents_deleted)} agent(s) deleted, "
            f"{report.shared_messages_deleted} message(s) deleted from {len(report.shared_agents_cleaned)} "
            "shared agent(s). Recorded in the audit log."
        )
        return 0
    exported = await export_agent_or_user(app, target, is_user=bool(args.get("user")))
    if exported is None:
        raise NotFoundError(f"no agent and no user {target!r} (membot agents list shows the agents)")
    text = json.dumps(exported, ensure_ascii=False, indent=1)
    if args.get("out"):
        out: Path = args["out"]
        await asyncio.to_thread(out.write_text, text, encoding="utf-8")
        console.print(f"Wrote {escape(str(out))}")
    else:
        print(text)
    return 0


async def doctor(settings: Settings) -> int:
    """`membot doctor`: every check with ok/warn/fail and a fix; exit code 1 when one failed."""
    from bot.ops.doctor import exit_code, run_checks
    from bot.ops.logging import Redactor, settings_secrets

    console = Console(highlight=False, soft_wrap=True)
    redact = Redactor(settings_secrets(settings))  # an endpoint's error may quote the key it was sent
    checks = [replace(c, detail=redact(c.detail)) for c in await run_checks(settings)]
    colours = {"ok": "green", "warn": "yellow", "fail": "red"}
    width = max(len(c.name) for c in checks)
    for check in checks:
        console.print(
            f"[{colours[check.status]}]{check.status:<4}[/]  {escape(check.name):<{width}}  {escape(check.detail)}"
        )
        if check.hint and check.status != "ok":
            console.print(f"      {'':<{width}}  [dim]fix:[/] {escape(check.hint)}")
    failed = sum(c.status == "fail" for c in checks)
    warned = sum(c.status == "warn" for c in checks)
    console.print(f"{len(checks)} checks: {failed} failed, {warned} warning{'' if warned == 1 else 's'}.")
    return exit_code(checks)


async def migrate(source_url: str, target_url: str, *, database: str) -> int:
    """`membot migrate`: copy every agent from one store to another, with a progress bar."""
    from rich.progress import Progress

    from bot.app import open_store_url
    from bot.memory.migrate import copy_store

    console = Console(highlight=False, soft_wrap=True)
    async with (
        open_store_url(source_url, database=database, must_exist=True) as source,
        open_store_url(target_url, database=database) as target,
    ):
        with Progress(console=console, disable=not console.is_terminal) as progress:
            task = progress.add_task("copying agents", total=None)

            def advance(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            report = await copy_store(source, target, on_progress=advance)
    messages = sum(a.messages for a in report.agents)
    passages = sum(a.passages for a in report.agents)
    console.print(f"Copied {len(report.agents)} agents: {messages} messages and {passages} passages, counts verified.")
    console.print(
        f"Copied {report.policies} routing policies, {report.joined_threads} joined threads and "
        f"{report.audit_entries} audit entries."
    )
    if report.embeddings_not_copied:
        console.print(
            f"[yellow]{report.embeddings_not_copied} passage embeddings could not be read from the source; "
            "they are re-embedded on the next archival search.[/]"
        )
    return 0


async def run(settings: Settings, platforms: Sequence[str]) -> int:
    """`membot run PLATFORM...`: serve the platforms (sharing one runtime) until SIGINT/SIGTERM."""
    from bot.ops.http import ops_server
    from bot.ops.metrics import Metrics
    from bot.service import open_services, run_components

    _check_platform_settings(settings, platforms)
    metrics = Metrics() if settings.ops.http_port else None  # port 0: no health or metrics server
    async with open_services(settings, observer=metrics, store_observer=metrics) as services:
        components: list[Component] = []
        if "discord" in platforms:
            try:
                from bot.discord_adapter import DiscordAdapter
            except ImportError as exc:
                raise _missing_extra("discord", exc) from None

            components.append(
                DiscordAdapter(
                    settings=settings.discord,
                    router=services.router,
                    runtime=services.runtime,
                    store=services.store,
                    admin=services.admin,
                    archival=services.app.loop.archival,
                )
            )
        if "slack" in platforms:
            try:
                from bot.slack_adapter import SlackAdapter
            except ImportError as exc:
                raise _missing_extra("slack", exc) from None

            components.append(
                SlackAdapter(
                    settings=settings.slack,
                    router=services.router,
                    runtime=services.runtime,
                    admin=services.admin,
                    threads=services.store,
                )
            )
        if settings.a2a.agents:
            components.append(_a2a_server(settings, services))
        if metrics is not None:
            metrics.watch(services.runtime, services.scheduler)
            console = _console(settings, services)
            components.append(
                ops_server(settings, store=services.app.store, components=components, metrics=metrics, console=console)
            )
        elif settings.console.token is not None:
            _log.warning("MEMBOT_CONSOLE__TOKEN is set but MEMBOT_OPS__HTTP_PORT is 0: the console is off")
        await run_components(services, components)
    return 0


async def serve(settings: Settings, what: Literal["a2a"]) -> int:
    """`membot serve a2a`: the A2A server alone (its own runtime over the same store) until SIGINT/SIGTERM."""
    from bot.service import open_services, run_components

    if not settings.a2a.agents:
        raise ConfigError("no agents to serve over A2A: name them in MEMBOT_A2A__AGENTS (a JSON list)")
    async with open_services(settings) as services:
        await run_components(services, [_a2a_server(settings, services)])
    return 0


def _console(settings: Settings, services: Services) -> web.Application | None:
    """The web console when its token is set (imported only then: `membot chat` never loads it)."""
    if settings.console.token is None:
        return None
    from bot.console import console_app

    return console_app(
        token=settings.console.token.get_secret_value(),
        session_hours=settings.console.session_hours,
        store=services.store,
        admin=services.admin,
        loop=services.app.loop,
        budget_limits={
            "server": settings.budget.daily_tokens_per_server,
            "user": settings.budget.daily_tokens_per_user,
        },
    )


def _a2a_server(settings: Settings, services: Services) -> Component:
    """The A2A server over the shared runtime; built before the runtime starts so resumed A2A
    entries find their sink."""
    try:
        from bot.interop.a2a import A2AServer
    except ImportError as exc:
        raise _missing_extra("a2a", exc) from None
    return A2AServer(runtime=services.runtime, directory=services.app.directory, settings=settings.a2a)


def _missing_extra(extra: str, exc: ImportError) -> ConfigError:
    """One clear line naming the extra a platform needs."""
    return ConfigError(f"serving {extra} needs its extra: pip install 'membot[{extra}]' ({exc})")


def configured_platforms(settings: Settings) -> tuple[str, ...]:
    """The platforms whose credentials are set (what a bare `membot run` serves)."""
    platforms = tuple(
        name
        for name, is_set in (
            ("discord", settings.discord.token is not None),
            ("slack", settings.slack.bot_token is not None),
        )
        if is_set
    )
    if not platforms:
        raise ConfigError(
            "no platform to serve: set DISCORD_TOKEN for Discord and/or SLACK_BOT_TOKEN (with SLACK_APP_TOKEN "
            "or SLACK_SIGNING_SECRET) for Slack"
        )
    return platforms


def _check_platform_settings(settings: Settings, platforms: Sequence[str]) -> None:
    """Refuse before opening anything when a platform's credentials are missing."""
    if "discord" in platforms and settings.discord.token is None:
        raise ConfigError("no Discord bot token: set DISCORD_TOKEN (or MEMBOT_DISCORD__TOKEN)")
    if "slack" in platforms:
        if settings.slack.bot_token is None:
            raise ConfigError("no Slack bot token: set SLACK_BOT_TOKEN (or MEMBOT_SLACK__BOT_TOKEN)")
        if settings.slack.mode is None:
            raise ConfigError(
                "Slack needs SLACK_APP_TOKEN (Socket Mode) or SLACK_SIGNING_SECRET (HTTP mode); neither is set"
            )


def discord_invite_url(settings: Settings) -> int:
    """`membot discord invite-url`: the link that adds the bot to a server, printed."""
    from bot.discord.urls import application_id_from_token, invite_url

    application_id = settings.discord.application_id
    token = settings.discord.token
    if application_id is None and token is not None:
        application_id = application_id_from_token(token.get_secret_value())
    if application_id is None:
        raise ConfigError(
            "no Discord application id: set MEMBOT_DISCORD__APPLICATION_ID (the developer portal's "
            "Application ID), or DISCORD_TOKEN to read it from the bot token"
        )
    print(invite_url(application_id))
    return 0


def template_names(settings: Settings, kind: Literal["persona", "human"]) -> list[str]:
    return templates_of(settings).names(kind)
