"""`membot doctor`'s platform checks, over plain HTTP to the configured API base URLs (so they
work the same against Discord, Slack, GovSlack, a proxy or a test emulator):

- Discord: `GET /users/@me` (is the bot token valid, which bot is it) and `GET /applications/@me`
  (its flags say which privileged gateway intents the Developer Portal enabled);
- Slack: `auth.test` with the bot token (valid, which workspace; the `x-oauth-scopes` header lists
  what the installation granted, compared with what membot uses), and `apps.connections.open`
  with the app-level token in Socket Mode.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from bot.config import DiscordSettings, SlackSettings
from bot.ops.check import Check, Status

__all__ = ["SLACK_BOT_SCOPES", "check_discord", "check_slack"]

# Application flags (https://discord.com/developers/docs/resources/application#application-object-application-flags).
_MESSAGE_CONTENT = 1 << 18
_MESSAGE_CONTENT_LIMITED = 1 << 19


@dataclass(frozen=True, slots=True)
class _Scope:
    name: str
    #: What membot cannot do without it.
    needed_for: str
    is_required: bool = False


#: The bot token scopes membot uses (those of deploy/slack-manifest.yaml); without a required one it
#: cannot answer at all.
SLACK_BOT_SCOPES: tuple[_Scope, ...] = (
    _Scope("app_mentions:read", "hearing @mentions", is_required=True),
    _Scope("chat:write", "posting replies", is_required=True),
    _Scope("im:history", "reading direct messages", is_required=True),
    _Scope("channels:history", "following its threads in public channels"),
    _Scope("groups:history", "following its threads in private channels"),
    _Scope("users:read", "speakers' names, and who is a workspace admin"),
    _Scope("commands", "the /membot admin command"),
    _Scope("im:write", "sending admin dumps and exports by direct message"),
    _Scope("files:write", "admin dumps and exports as files"),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Answer:
    status: int
    body: Any
    headers: Mapping[str, str]


async def _call(
    session: aiohttp.ClientSession, method: str, url: str, *, headers: Mapping[str, str], data: object = None
) -> _Answer:
    async with session.request(method, url, headers=dict(headers), data=data) as response:
        text = await response.text()
        try:
            body: Any = json.loads(text) if text else None
        except ValueError:
            body = None
        return _Answer(status=response.status, body=body, headers=dict(response.headers))


def _check(name: str, status: Status, detail: str, hint: str = "") -> Check:
    return Check(name=name, status=status, detail=detail, hint=hint)


# -- Discord ---------------------------------------------------------------------------------------


async def check_discord(settings: DiscordSettings, timeout_s: float) -> list[Check]:
    """The token (which bot it is) and the privileged intents the application may use."""
    if settings.token is None:
        return []
    headers = {
        "Authorization": f"Bot {settings.token.get_secret_value()}",
        "User-Agent": "DiscordBot (https://github.com/membot, 0.1) membot-doctor",
    }
    base = settings.api_base_url
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:
            me = await _call(session, "GET", f"{base}/users/@me", headers=headers)
            if me.status in (401, 403):
                return [
                    _check(
                        "Discord token",
                        "fail",
                        f"Discord refused the bot token (HTTP {me.status})",
                        "reset the token on the Bot page of the Developer Portal and set DISCORD_TOKEN to it",
                    )
                ]
            if me.status != 200 or not isinstance(me.body, dict):
                return [_check("Discord token", "fail", f"GET /users/@me answered HTTP {me.status}", _DISCORD_URL)]
            app = await _call(session, "GET", f"{base}/applications/@me", headers=headers)
    except (aiohttp.ClientError, TimeoutError) as exc:
        return [_check("Discord token", "fail", f"{base}: {type(exc).__name__} {exc}".strip(), _DISCORD_URL)]
    who = f"{me.body.get('username', '?')} (id {me.body.get('id', '?')})"
    checks = [_check("Discord token", "ok", f"valid: the bot is {who}")]
    if app.status != 200 or not isinstance(app.body, dict):
        checks.append(_check("Discord intents", "warn", f"GET /applications/@me answered HTTP {app.status}"))
        return checks
    checks.append(_discord_intents(settings, int(app.body.get("flags") or 0)))
    return checks


_DISCORD_URL = "check MEMBOT_DISCORD__API_BASE_URL (default https://discord.com/api/v10) and the network"


def _discord_intents(settings: DiscordSettings, flags: int) -> Check:
    if not settings.message_content_intent:
        return _check(
            "Discord intents",
            "ok",
            "message content intent not requested: the bot reads only mentions and DMs",
        )
    if flags & _MESSAGE_CONTENT:
        return _check("Discord intents", "ok", "message content intent enabled")
    if flags & _MESSAGE_CONTENT_LIMITED:
        return _check(
            "Discord intents",
            "ok",
            "message content intent enabled while the bot is in fewer than 100 servers (verification needed past that)",
        )
    return _check(
        "Discord intents",
        "fail",
        "the message content intent is not enabled: Discord will refuse the gateway connection",
        "enable Message Content Intent on the Bot page of the Developer Portal, "
        "or set MEMBOT_DISCORD__MESSAGE_CONTENT_INTENT=false (then the bot reads only mentions and DMs)",
    )


# -- Slack -----------------------------------------------------------------------------------------


async def check_slack(settings: SlackSettings, timeout_s: float) -> list[Check]:
    """The bot token and its scopes; the app-level token when Socket Mode is configured."""
    checks: list[Check] = []
    base = settings.api_base_url
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:
            if settings.bot_token is not None:
                auth = await _call(
                    session, "POST", f"{base}/auth.test", headers=_bearer(settings.bot_token.get_secret_value())
                )
                checks += _slack_bot(auth)
            if settings.app_token is not None:
                opened = await _call(
                    session,
                    "POST",
                    f"{base}/apps.connections.open",
                    headers=_bearer(settings.app_token.get_secret_value()),
                )
                checks.append(_slack_app_token(opened))
    except (aiohttp.ClientError, TimeoutError) as exc:
        checks.append(_check("Slack", "fail", f"{base}: {type(exc).__name__} {exc}".strip(), _SLACK_URL))
    return checks


_SLACK_URL = "check MEMBOT_SLACK__API_BASE_URL (default https://slack.com/api) and the network"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/x-www-form-urlencoded"}


def _slack_error(answer: _Answer) -> str | None:
    """Slack's error code, or None when the call succeeded."""
    if isinstance(answer.body, dict) and answer.body.get("ok") is True:
        return None
    if isinstance(answer.body, dict) and answer.body.get("error"):
        return str(answer.body["error"])
    return f"HTTP {answer.status}"


def _slack_bot(auth: _Answer) -> list[Check]:
    error = _slack_error(auth)
    if error is not None:
        return [
            _check(
                "Slack bot token",
                "fail",
                f"Slack refused the bot token: {error}",
                "reinstall the app to the workspace and set SLACK_BOT_TOKEN to the Bot User OAuth Token (xoxb-...)",
            )
        ]
    body = auth.body
    checks = [
        _check(
            "Slack bot token",
            "ok",
            f"valid: bot {body.get('user', '?')} (user {body.get('user_id', '?')}) in workspace "
            f"{body.get('team', '?')} ({body.get('team_id', '?')})",
        )
    ]
    header = next((v for k, v in auth.headers.items() if k.lower() == "x-oauth-scopes"), None)
    if header is None:
        checks.append(_check("Slack scopes", "warn", "Slack did not list the token's scopes (no x-oauth-scopes)"))
        return checks
    granted = {scope.strip() for scope in header.split(",") if scope.strip()}
    missing = [scope for scope in SLACK_BOT_SCOPES if scope.name not in granted]
    fix = "add the scopes under OAuth & Permissions (or in the app manifest), then reinstall the app"
    required = [s for s in missing if s.is_required]
    if required:
        what = "; ".join(f"{s.name} ({s.needed_for})" for s in required)
        return [*checks, _check("Slack scopes", "fail", f"missing required scopes: {what}", fix)]
    if missing:
        what = "; ".join(f"{s.name} ({s.needed_for})" for s in missing)
        return [*checks, _check("Slack scopes", "warn", f"missing scopes, some features will not work: {what}", fix)]
    return [*checks, _check("Slack scopes", "ok", f"all {len(SLACK_BOT_SCOPES)} scopes membot uses are granted")]


def _slack_app_token(opened: _Answer) -> Check:
    error = _slack_error(opened)
    if error is None:
        return _check("Slack app token", "ok", "valid: Socket Mode connections can be opened")
    return _check(
        "Slack app token",
        "fail",
        f"Slack refused the app-level token: {error}",
        "enable Socket Mode, generate an app-level token with connections:write under Basic Information, "
        "and set SLACK_APP_TOKEN to it",
    )
