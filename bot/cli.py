"""`membot`: the command line. Parses arguments, loads settings once, configures logging,
and runs one command inside the composition root. Errors become one clear line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

from rich.console import Console

from bot.errors import ConfigError, MembotError

__all__ = ["main"]

_log = logging.getLogger(__name__)

#: What `membot run NAME` serves.
PLATFORMS: dict[str, tuple[str, ...]] = {"discord": ("discord",)}

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
    chat.add_argument("--persona", help="persona template for a new agent: a shipped name or a file path")
    chat.add_argument("--human", help="human template for a new agent: a shipped name or a file path")
    chat.add_argument("--model", help="LLM model id (overrides MEMBOT_LLM__MODEL)")
    chat.add_argument("--first", action="store_true", help="you speak first (by default the agent greets you)")
    chat.add_argument("--debug", action="store_true", help="show function calls and debug logs")
    chat.add_argument("-y", "--yes", action="store_true", help="create a missing agent without asking")

    agents = commands.add_parser("agents", help="list, show, export or delete agents")
    agent_commands = agents.add_subparsers(dest="agents_command", metavar="ACTION", required=True)
    agent_commands.add_parser("list", help="every agent with its message and passage counts")
    show = agent_commands.add_parser("show", help="an agent's core memory, counts and summary")
    show.add_argument("name")
    export = agent_commands.add_parser("export", help="everything an agent holds, as JSON")
    export.add_argument("name")
    export.add_argument("--out", type=Path, help="file to write (default: standard output)")
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
        help="serve a chat platform (discord) until interrupted",
        description="Connect to a chat platform and answer there until SIGINT/SIGTERM. Only `discord` exists "
        "for now: set DISCORD_TOKEN (and OPENAI_BASE_URL / OPENAI_API_KEY for the LLM).",
    )
    run.add_argument("platform", choices=list(PLATFORMS), help="what to serve: " + ", ".join(PLATFORMS))
    run.add_argument("--model", help="LLM model id (overrides MEMBOT_LLM__MODEL)")
    run.add_argument("--debug", action="store_true", help="debug logs")

    templates = commands.add_parser("templates", help="list persona and human templates")
    templates.add_argument("kind", choices=["persona", "human"])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    is_debug = bool(getattr(args, "debug", False))
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        from bot.config import load_settings

        overrides: dict[str, Any] = {}
        if getattr(args, "model", None):
            overrides["llm"] = {"model": args.model}
        settings = load_settings(args.config, overrides=overrides)
        if args.command == "chat":
            from bot.sdk_clients import prefetch

            prefetch(settings.llm.model)
        _configure_logging(settings.log_level, is_debug=is_debug or settings.debug)
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
        case "run":
            return await commands.run(settings, PLATFORMS[args.platform])
        case "templates":
            for name in commands.template_names(settings, args.kind):
                print(name)
            return 0
    raise ConfigError(f"unknown command {args.command!r}")


def _configure_logging(level: str, *, is_debug: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if is_debug else getattr(logging, level.upper(), logging.WARNING),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not is_debug:
        for noisy in ("httpx", "httpx2", "httpcore", "httpcore2", "openai"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


if __name__ == "__main__":
    raise SystemExit(main())
