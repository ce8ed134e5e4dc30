"""`membot doctor`: check the configuration and every service membot talks to, each with a fix.

Checks run in order and never stop at the first problem: the configuration; the store (reached,
schema version); the LLM endpoint (model list, one tiny completion with a function, embeddings
when configured); then each configured platform (`bot.ops.doctor_platforms`: the Discord token
and intents, the Slack tokens and scopes). Each check is `ok`, `warn` (works, but something
is off) or `fail` (membot will not work until it is fixed); a `fail` makes the exit code 1.

Nothing is written: the SQLite file is read in read-only mode (a missing one is not created),
and the LLM is asked for one short completion. MongoDB is opened as `membot run` opens it.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from bot.agent.llm import OpenAIChatModel, make_openai_client
from bot.agent.model import ChatMessage, ToolSchema
from bot.agent.model_info import resolve_context_window
from bot.config import Settings
from bot.errors import (
    LLMError,
    LLMResponseError,
    LLMUnavailableError,
    MembotError,
    SchemaVersionError,
    StoreError,
)
from bot.memory.openai_embeddings import OpenAIEmbedder
from bot.ops.check import Check, Status
from bot.ops.doctor_platforms import check_discord, check_slack

__all__ = [
    "Check",
    "Status",
    "check_configuration",
    "check_embeddings",
    "check_llm",
    "check_store",
    "exit_code",
    "run_checks",
]


_PING_TOOL: ToolSchema = {
    "type": "function",
    "function": {
        "name": "ping",
        "description": "Report that you can call functions.",
        "parameters": {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]},
    },
}


async def run_checks(settings: Settings, *, timeout_s: float = 20.0) -> list[Check]:
    """Every check, in order; each is bounded by `timeout_s` and none raises."""
    checks = check_configuration(settings)
    checks += await _bounded("store", timeout_s, lambda: _listed(check_store(settings)))
    checks += await _bounded("LLM endpoint", timeout_s, lambda: check_llm(settings))
    if settings.discord.token is not None:
        checks += await _bounded("Discord", timeout_s, lambda: check_discord(settings.discord, timeout_s))
    if settings.slack.bot_token is not None or settings.slack.app_token is not None:
        checks += await _bounded("Slack", timeout_s, lambda: check_slack(settings.slack, timeout_s))
    return checks


def exit_code(checks: list[Check]) -> int:
    """1 when any check failed, else 0."""
    return 1 if any(c.status == "fail" for c in checks) else 0


async def _listed(check: Awaitable[Check]) -> list[Check]:
    return [await check]


async def _bounded(name: str, timeout_s: float, checks: Callable[[], Awaitable[list[Check]]]) -> list[Check]:
    try:
        async with asyncio.timeout(timeout_s * 3):  # a group makes a few calls, each bounded on its own
            return await checks()
    except TimeoutError:
        return [Check(name=name, status="fail", detail=f"no answer within {timeout_s * 3:.0f} s", hint=_NETWORK)]
    except MembotError as exc:  # anything the checks did not foresee still ends as one line
        return [Check(name=name, status="fail", detail=str(exc))]


_NETWORK = "check the address, that the service is up, and that this machine may reach it (firewall, proxy)"


# -- configuration ---------------------------------------------------------------------------------


def check_configuration(settings: Settings) -> list[Check]:
    """What can be told from the settings alone (they already passed validation to get here)."""
    llm, slack = settings.llm, settings.slack
    checks = [
        Check(
            name="configuration",
            status="ok",
            detail=f"model {llm.model} at {llm.base_url}; store {settings.store.kind}",
        )
    ]
    if urlsplit(llm.base_url).hostname == "api.openai.com" and llm.api_key is None:
        checks.append(
            Check(
                name="LLM key",
                status="fail",
                detail="the endpoint is OpenAI's and no API key is set",
                hint="set OPENAI_API_KEY (or MEMBOT_LLM__API_KEY, or name a variable in MEMBOT_LLM__API_KEY_ENV)",
            )
        )
    has_discord = settings.discord.token is not None
    has_slack = any(v is not None for v in (slack.bot_token, slack.app_token, slack.signing_secret))
    if not has_discord and not has_slack:
        checks.append(
            Check(
                name="platforms",
                status="warn",
                detail="neither Discord nor Slack is configured: only `membot chat` can run",
                hint="set DISCORD_TOKEN for Discord, SLACK_BOT_TOKEN with SLACK_APP_TOKEN or SLACK_SIGNING_SECRET for Slack",
            )
        )
    if has_slack:
        checks.append(_slack_mode(settings))
    if settings.log_content:
        checks.append(
            Check(
                name="logs",
                status="warn",
                detail="content logging is on: logs hold message text and LLM payloads",
                hint="set MEMBOT_LOG_CONTENT=false once you are done debugging",
            )
        )
    days = settings.privacy.retention_days
    checks.append(
        Check(
            name="retention",
            status="ok",
            detail=f"recall older than {days} days is summarised and deleted" if days else "recall is kept forever",
        )
    )
    return checks


def _slack_mode(settings: Settings) -> Check:
    slack = settings.slack
    if slack.bot_token is None:
        return Check(
            name="Slack mode",
            status="fail",
            detail="a Slack app token or signing secret is set but no bot token",
            hint="set SLACK_BOT_TOKEN to the Bot User OAuth Token (xoxb-...) from OAuth & Permissions",
        )
    if slack.mode is None:
        return Check(
            name="Slack mode",
            status="fail",
            detail="a bot token but neither an app token (Socket Mode) nor a signing secret (HTTP mode)",
            hint="set SLACK_APP_TOKEN (xapp-..., connections:write) for Socket Mode, or SLACK_SIGNING_SECRET for HTTP mode",
        )
    where = "Socket Mode" if slack.mode == "socket" else f"HTTP mode on {slack.host}:{slack.port}{slack.path}"
    return Check(name="Slack mode", status="ok", detail=where)


# -- store -----------------------------------------------------------------------------------------


async def check_store(settings: Settings) -> Check:
    """SQLite: read the file's schema version without writing; MongoDB: open it as `membot run` does."""
    if settings.store.kind == "sqlite":
        return await asyncio.to_thread(_check_sqlite, settings)
    from bot.app import open_store
    from bot.memory.mongo.schema import SCHEMA_VERSION

    try:
        async with open_store(settings) as store:
            agents = len(await store.list_agents(limit=10_000))
    except SchemaVersionError as exc:
        return Check(name="store", status="fail", detail=str(exc), hint="upgrade membot")
    except StoreError as exc:
        return Check(
            name="store",
            status="fail",
            detail=str(exc),
            hint="check MONGODB_URI (host, user, password, database) and that the user has the readWrite role",
        )
    return Check(
        name="store",
        status="ok",
        detail=f"MongoDB database {settings.store.mongodb_database!r} reached; schema version {SCHEMA_VERSION}; "
        f"{_count(agents, 'agent')}",
    )


def _check_sqlite(settings: Settings) -> Check:
    from bot.memory.sqlite.schema import SCHEMA_VERSION

    path = settings.store.sqlite_path
    if not path.exists():
        folder = next((p for p in path.parents if p.exists()), None)
        if folder is None or not folder.is_dir():
            return Check(name="store", status="fail", detail=f"{path}: no folder to create it in", hint=_SQLITE_PATH)
        return Check(name="store", status="warn", detail=f"{path} does not exist yet; it is created on first use")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        return Check(name="store", status="fail", detail=f"{path}: {exc}", hint=_SQLITE_PATH)
    try:
        found = int(conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])
        agents = int(conn.execute("SELECT count(*) FROM agents").fetchone()[0])
    except (sqlite3.Error, TypeError, ValueError) as exc:
        return Check(
            name="store",
            status="fail",
            detail=f"{path} is not a membot store ({exc})",
            hint=_SQLITE_PATH,
        )
    finally:
        conn.close()
    where = f"{path}: schema version {found}, {_count(agents, 'agent')}"
    if found > SCHEMA_VERSION:
        return Check(
            name="store",
            status="fail",
            detail=f"{where}; this membot understands version {SCHEMA_VERSION}",
            hint="upgrade membot",
        )
    if found < SCHEMA_VERSION:
        return Check(name="store", status="ok", detail=f"{where}; migrated to {SCHEMA_VERSION} on the next start")
    return Check(name="store", status="ok", detail=where)


_SQLITE_PATH = "set MEMBOT_STORE__SQLITE_PATH (or MEMBOT_DATA_DIR) to a writable place for membot's own file"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


# -- LLM -------------------------------------------------------------------------------------------


async def check_llm(settings: Settings) -> list[Check]:
    """The model list, one small completion offering a function, and the embeddings endpoint."""
    llm = settings.llm
    key = llm.api_key.get_secret_value() if llm.api_key else ""
    client = make_openai_client(llm.base_url, key, llm.timeout_s)
    try:
        model = OpenAIChatModel(
            client=client, model=llm.model, max_retries=0, stream=llm.stream, max_output_tokens=llm.max_output_tokens
        )
        listing = await _check_models(model, settings)
        checks = [listing]
        if listing.status == "fail":
            return checks
        checks.append(await _check_window(settings))
        checks.append(await _check_completion(model))
    finally:
        await client.close()
    checks.append(await check_embeddings(settings))
    return checks


async def _check_models(model: OpenAIChatModel, settings: Settings) -> Check:
    llm = settings.llm
    try:
        listed = await model.probe()
    except LLMUnavailableError as exc:
        return Check(
            name="LLM endpoint",
            status="fail",
            detail=f"{llm.base_url}: {exc}",
            hint="start the server, or set OPENAI_BASE_URL to the endpoint up to /v1",
        )
    except LLMResponseError as exc:
        return Check(
            name="LLM endpoint",
            status="fail",
            detail=f"{llm.base_url}: {exc}",
            hint="set OPENAI_API_KEY (or MEMBOT_LLM__API_KEY) to a key this endpoint accepts",
        )
    if listed is None:
        return Check(
            name="LLM endpoint",
            status="warn",
            detail=f"{llm.base_url} answers but lists no models (GET /models failed)",
            hint="fine for servers without /models; otherwise check the base URL ends in /v1",
        )
    if llm.model not in listed:
        shown = ", ".join(sorted(listed)[:8]) + (" ..." if len(listed) > 8 else "")
        return Check(
            name="LLM endpoint",
            status="warn",
            detail=f"{llm.base_url} answers, but {llm.model!r} is not among its models ({shown or 'none'})",
            hint="set MEMBOT_LLM__MODEL to a model the endpoint serves (some gateways list only a few)",
        )
    return Check(name="LLM endpoint", status="ok", detail=f"{llm.base_url} serves {llm.model}")


async def _check_window(settings: Settings) -> Check:
    window = await resolve_context_window(settings.llm)
    detail = f"{window.tokens} tokens ({_WINDOW_SOURCES[window.source]})"
    if window.source == "default":
        return Check(
            name="context window",
            status="warn",
            detail=f"{detail}: the endpoint does not say what it runs {settings.llm.model} with",
            hint="set MEMBOT_LLM__CONTEXT_WINDOW to the context length the server runs the model with",
        )
    return Check(name="context window", status="ok", detail=detail)


_WINDOW_SOURCES = {
    "setting": "from MEMBOT_LLM__CONTEXT_WINDOW",
    "known model": "the model's published window",
    "endpoint": "as the endpoint reports",
    "default": "membot's default",
}


async def _check_completion(model: OpenAIChatModel) -> Check:
    messages: list[ChatMessage] = [
        {"role": "system", "content": "You are a connectivity check. Call the function ping with ok=true."},
        {"role": "user", "content": "ping"},
    ]
    try:
        completion = await model.complete(messages, tools=[_PING_TOOL])
    except LLMError as exc:
        return Check(
            name="LLM completion",
            status="fail",
            detail=str(exc),
            hint="check MEMBOT_LLM__MODEL, and that the server enables function calling (vLLM: --enable-auto-tool-choice)",
        )
    tokens = f"{completion.usage.prompt_tokens} + {completion.usage.completion_tokens} tokens"
    if not any(call.name == "ping" for call in completion.tool_calls):
        return Check(
            name="LLM completion",
            status="warn",
            detail=f"{model.model_name} answered ({tokens}) but did not call the offered function",
            hint="membot's agents act only through function calls: use a model with reliable tool calling",
        )
    return Check(name="LLM completion", status="ok", detail=f"{model.model_name} called a function ({tokens})")


async def check_embeddings(settings: Settings) -> Check:
    """One embedding from the configured model; without one, archival search is full-text."""
    embeddings = settings.embeddings
    if embeddings.model is None:
        return Check(
            name="embeddings",
            status="ok",
            detail="no embedding model set: archival memory is searched by full text",
        )
    key = embeddings.api_key.get_secret_value() if embeddings.api_key else ""
    client = make_openai_client(embeddings.base_url, key, settings.llm.timeout_s)
    try:
        vectors = await OpenAIEmbedder(client=client, model=embeddings.model, max_retries=0).embed(["membot doctor"])
    except LLMError as exc:
        return Check(
            name="embeddings",
            status="fail",
            detail=f"{embeddings.base_url}: {exc}",
            hint="set MEMBOT_EMBEDDINGS__MODEL to an embedding model the endpoint serves "
            "(and MEMBOT_EMBEDDINGS__BASE_URL / __API_KEY if it is another endpoint), or unset it",
        )
    finally:
        await client.close()
    return Check(
        name="embeddings",
        status="ok",
        detail=f"{embeddings.model} at {embeddings.base_url}: {len(vectors[0])} dimensions",
    )
