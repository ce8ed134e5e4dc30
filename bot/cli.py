"""`membot`: the command line. Parses arguments, loads settings once, configures logging,
and runs one command inside the composition root. Errors become one clear line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import Sequence
from datetime import date
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from bot.errors import ConfigError, MembotError

if TYPE_CHECKING:
    from bot.config import Settings

__all__ = ["main"]

_log = logging.getLogger(__name__)

#: What `membot run NAME` serves.
PLATFORMS: dict[str, tuple[str, ...]] = {"discord": ("discord",), "slack": ("slack",), "all": ("discord", "slack")}

_DESCRIPTION = """\
membot: a chat bot whose agents manage their own memory (MemGPT-style).

Configure the LLM with OPENAI_BASE_URL / OPENAI_API_KEY (any OpenAI-compatible endpoint:
OpenAI, Azure, vLLM, Ollama, LM Studio) and MEMBOT_LLM__MODEL, in the environment, a .env
file, or a TOML file given with --config."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="membot", description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"membot {version('membot')}")
    parser.add_argument(
        "--config", type=Path, help="a TOML settings file (default: $XDG_CONFIG_HOME/membot/config.toml)"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    chat = commands.add_parser(
        "chat",
        help="talk to an agent in the terminal (embedded store by default)",
        description="Talk to a persistent agent in the terminal. Type /help in the chat for its commands. "
        "Piped standard input works too: one message per line.",
    )
    chat.add_argument("--agent", default="membot", help="agent name to resume or create (default: membot)")
    chat.add_argument(
        "--persona", help="persona template for a new agent: a name, or a file in the templates folder's personas/"
    )
    chat.add_argument(
        "--human", help="human template for a new agent: a name, or a file in the templates folder's humans/"
    )
    chat.add_argument("--model", help="LLM model id (overrides MEMBOT_LLM__MODEL)")
    chat.add_argument("--first", action="store_true", help="you speak first (by default the agent greets you)")
    chat.add_argument("--debug", action="store_true", help="show function calls and debug logs")
    chat.add_argument("-y", "--yes", action="store_true", help="create a missing agent without asking")

    agents = commands.add_parser("agents", help="list, show, export, forget or delete agents and users' data")
    agent_commands = agents.add_subparsers(dest="agents_command", metavar="ACTION", required=True)
    agent_commands.add_parser("list", help="every agent with its message and passage counts")
    show = agent_commands.add_parser("show", help="an agent's core memory, counts and summary")
    show.add_argument("name")
    export = agent_commands.add_parser(
        "export",
        help="everything an agent holds, or everything of one user, as JSON",
        description="AGENT (a name or id): the agent's core memory, recall and archival. USER (a Discord or "
        "Slack user id; with --user, or when no agent has that name): the user's own agents and their "
        "messages inside shared channel agents. Recorded in the audit log.",
    )
    export.add_argument("name", metavar="AGENT|USER")
    export.add_argument("--user", action="store_true", help="the argument is a user id, not an agent")
    export.add_argument("--out", type=Path, help="file to write (default: standard output)")
    forget = agent_commands.add_parser(
        "forget",
        help="delete everything of one user (their agents, their messages in shared agents)",
        description="Delete the user's own agents (direct messages, per-user agents: core, recall and "
        "archival) and every message they wrote in shared channel agents, and record in the audit log "
        "that it was done. USER is their Discord or Slack user id.",
    )
    forget.add_argument("name", metavar="USER")
    forget.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    delete = agent_commands.add_parser("delete", help="delete an agent and all its memory")
    delete.add_argument("name")
    delete.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")

    migrate = commands.add_parser(
        "migrate",
        help="copy every agent and its memory from one store to another",
        description="Copy every agent with its core, recall and archival memory from one store to another, "
        "verified by counts. Stores are named sqlite:PATH or a mongodb:// / mongodb+srv:// URI.",
    )
    migrate.add_argument("--from", dest="source", required=True, metavar="STORE", help="sqlite:PATH or mongodb://...")
    migrate.add_argument("--to", dest="target", required=True, metavar="STORE", help="sqlite:PATH or mongodb://...")
    migrate.add_argument("--database", default="membot", help="MongoDB database name on either side (default: membot)")

    run = commands.add_parser(
        "run",
        help="serve a chat platform (discord, slack, or all of them) until interrupted",
        description="Connect to chat platforms and answer there until SIGINT/SIGTERM, sharing one runtime. "
        "discord: set DISCORD_TOKEN. slack: set SLACK_BOT_TOKEN, plus SLACK_APP_TOKEN for Socket Mode or "
        "SLACK_SIGNING_SECRET for HTTP mode (listening on PORT, default 3000, at /slack/events). all: both. "
        "Without a platform: every platform whose credentials are set. "
        "The LLM comes from OPENAI_BASE_URL / OPENAI_API_KEY. When MEMBOT_A2A__AGENTS names agents, "
        "the A2A server runs beside the platforms (docs/interop.md).",
    )
    run.add_argument(
        "platform",
        nargs="?",
        choices=list(PLATFORMS),
        help="what to serve: " + ", ".join(PLATFORMS) + " (default: every platform with credentials set)",
    )
    run.add_argument("--model", help="LLM model id (overrides MEMBOT_LLM__MODEL)")
    run.add_argument("--debug", action="store_true", help="debug logs")

    serve = commands.add_parser(
        "serve",
        help="serve membot agents to other agents (a2a) until interrupted",
        description="a2a: the A2A server alone, for the agents named in MEMBOT_A2A__AGENTS (a JSON list), "
        "on MEMBOT_A2A__HOST:MEMBOT_A2A__PORT (default 127.0.0.1:8390); callers send Authorization: Bearer "
        "with MEMBOT_A2A__TOKEN or a named token of MEMBOT_A2A__CALLERS (required off loopback). "
        "Needs pip install 'membot[a2a]'. "
        "Cards: http://HOST:PORT/a2a/NAME/.well-known/agent-card.json; see docs/interop.md.",
    )
    serve.add_argument("protocol", choices=["a2a"], help="what to serve: a2a")
    serve.add_argument("--model", help="LLM model id (overrides MEMBOT_LLM__MODEL)")
    serve.add_argument("--debug", action="store_true", help="debug logs")

    discord_command = commands.add_parser("discord", help="Discord set-up helpers")
    discord_actions = discord_command.add_subparsers(dest="discord_command", metavar="ACTION", required=True)
    discord_actions.add_parser(
        "invite-url",
        help="print the link that adds the bot to a server with exactly the permissions it needs",
        description="Print the OAuth2 invite URL (scopes bot and applications.commands). The application id "
        "comes from MEMBOT_DISCORD__APPLICATION_ID, else from the bot token (DISCORD_TOKEN).",
    )

    commands.add_parser(
        "doctor",
        help="check the configuration, the store, the LLM endpoint and the platforms' credentials",
        description="Check each thing membot needs and print ok, warn or fail with a fix: the configuration, "
        "the store (reachable, schema version), the LLM endpoint (model list, one small completion with a "
        "function, embeddings if configured), the Discord token and intents, the Slack tokens and scopes. "
        "Exit code 1 when a check failed.",
    )

    templates = commands.add_parser("templates", help="list persona and human templates")
    templates.add_argument("kind", choices=["persona", "human"])

    from bot.eval.arguments import add_eval_parser

    add_eval_parser(commands)

    usage = commands.add_parser(
        "usage",
        help="LLM token usage per day, server, channel and agent",
        description="LLM token usage recorded by `membot run` (every turn's calls, reflections included), "
        "summed per day, server, channel and agent by default. Days are UTC.",
    )
    usage.add_argument("--days", type=int, default=7, help="the last N days, today included (default: 7)")
    usage.add_argument("--since", type=_iso_day, metavar="YYYY-MM-DD", help="from this day instead of --days")
    usage.add_argument(
        "--by",
        default="day,server,channel,agent",
        help="what to sum by, comma-separated: day, server, channel, agent, user, model (default: %(default)s)",
    )
    usage.add_argument("--server", metavar="SCOPE", help="one server only, e.g. discord:123 or slack:T123")
    usage.add_argument("--csv", action="store_true", help="CSV on standard output instead of a table")
    return parser


def _iso_day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date as YYYY-MM-DD, got {text!r}") from None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    is_debug = bool(getattr(args, "debug", False))
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    with contextlib.ExitStack() as logs:
        try:
            from bot.config import load_settings

            overrides: dict[str, Any] = {}
            if getattr(args, "model", None):
                overrides["llm"] = {"model": args.model}
            settings = load_settings(args.config, overrides=overrides)
            if args.command == "chat":
                from bot.sdk_clients import prefetch

                prefetch(settings.llm.model)
            logs.enter_context(_configured_logging(settings, is_debug=is_debug or settings.debug))
            return asyncio.run(_dispatch(args, settings))
        except KeyboardInterrupt:
            return 130
        except MembotError as exc:
            if is_debug:
                _log.exception("command failed")
            err.print(f"[red]error:[/] {exc}", markup=True, highlight=False)
            return 2


async def _dispatch(args: argparse.Namespace, settings: Any) -> int:
    from bot import commands

    match args.command:
        case "chat":
            return await commands.chat(
                settings,
                agent_name=args.agent,
                persona=args.persona,
                human=args.human,
                is_user_first=args.first,
                is_debug=args.debug,
                assume_yes=args.yes,
            )
        case "agents":
            return await commands.agents(settings, args.agents_command, vars(args))
        case "migrate":
            return await commands.migrate(args.source, args.target, database=args.database)
        case "doctor":
            return await commands.doctor(settings)
        case "run":
            platforms = PLATFORMS[args.platform] if args.platform else commands.configured_platforms(settings)
            return await commands.run(settings, platforms)
        case "serve":
            return await commands.serve(settings, args.protocol)
        case "discord":
            return commands.discord_invite_url(settings)
        case "templates":
            for name in commands.template_names(settings, args.kind):
                print(name)
            return 0
        case "usage":
            from bot.ops.usage_report import parse_groups, usage_command

            return await usage_command(
                settings,
                days=args.days,
                since=args.since,
                by=parse_groups(args.by),
                scope=args.server,
                as_csv=args.csv,
            )
        case "eval":
            from bot.eval.arguments import eval_options
            from bot.eval.command import eval_locomo

            return await eval_locomo(settings, eval_options(args), console=Console(highlight=False, soft_wrap=True))
    raise ConfigError(f"unknown command {args.command!r}")


def _configured_logging(settings: Settings, *, is_debug: bool) -> contextlib.AbstractContextManager[object]:
    """Structured logs on standard error for the command's lifetime (`bot.ops.logging`)."""
    from bot.ops.logging import configured_logging, settings_secrets

    return configured_logging(
        level=settings.log_level,
        log_format=settings.log_format,
        is_debug=is_debug,
        is_content_logged=settings.log_content,
        secrets=settings_secrets(settings),
        stream=sys.stderr,
    )


if __name__ == "__main__":
    raise SystemExit(main())
