"""Slack's inbound wire as the fake speaks it: who the app is, signed requests, payload shapes.

Everything here is pure: it builds the JSON and form bodies Slack sends to an app (Events
API `event_callback` envelopes, slash commands, `block_actions`, message
shortcuts, `url_verification`, Socket Mode envelopes) and signs them the way Slack does
(`v0=` + HMAC-SHA256 of `v0:{timestamp}:{body}` under the signing secret). The shapes follow
Slack's documented payloads, trimmed to the fields an app reads. Sending them is
`tests.fakes.slack_requests`; the event bodies themselves are `tests.fakes.slack_events`.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlencode

__all__ = [
    "JSON",
    "AppIdentity",
    "ChannelType",
    "SocketEnvelopeType",
    "block_actions_payload",
    "dumps",
    "event_callback",
    "form_body",
    "message_shortcut_payload",
    "new_event_id",
    "new_trigger_id",
    "sign",
    "signed_headers",
    "slash_command_form",
    "socket_envelope",
    "url_verification",
    "view_submission_payload",
]

JSON = dict[str, Any]
ChannelType = Literal["channel", "group", "im", "mpim"]
SocketEnvelopeType = Literal["events_api", "slash_commands", "interactive"]

_event_ids = itertools.count(1)
_trigger_ids = itertools.count(1)


@dataclass(frozen=True, slots=True, kw_only=True)
class AppIdentity:
    """The installed app as Slack knows it: workspace, app and bot ids, and its three secrets."""

    team_id: str = "T0FAKE001"
    team_name: str = "Membot Test Workspace"
    team_domain: str = "membot-test"
    enterprise_id: str | None = None
    app_id: str = "A0FAKE001"
    bot_user_id: str = "U0MEMBOT1"
    bot_id: str = "B0MEMBOT1"
    bot_name: str = "membot"
    bot_token: str = "xoxb-1111-2222-fakebottoken"
    app_token: str = "xapp-1-A0FAKE001-3333-fakeapptoken"
    signing_secret: str = "fake-signing-secret-0123456789abcdef"

    def authorizations(self) -> list[JSON]:
        """The `authorizations` list of an `event_callback`: the bot installation the event is for."""
        return [
            {
                "enterprise_id": self.enterprise_id,
                "team_id": self.team_id,
                "user_id": self.bot_user_id,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ]


def new_event_id() -> str:
    """A fresh `event_id` ("Ev" + 9 characters, as Slack's look)."""
    return f"Ev{next(_event_ids):09d}"


def new_trigger_id() -> str:
    """A fresh `trigger_id` (what `views.open` takes; Slack's expire after 3 s, the fake's never do)."""
    n = next(_trigger_ids)
    return f"{1_700_000_000 + n}.{n}.{hashlib.sha256(str(n).encode()).hexdigest()[:32]}"


# -- signing ---------------------------------------------------------------------------
def sign(body: bytes | str, *, secret: str, timestamp: str) -> str:
    """Slack's request signature: "v0=" + hex HMAC-SHA256 of "v0:{timestamp}:{body}"."""
    raw = body.encode() if isinstance(body, str) else body
    digest = hmac.new(secret.encode(), b"v0:" + timestamp.encode() + b":" + raw, hashlib.sha256).hexdigest()
    return f"v0={digest}"


def signed_headers(
    body: bytes | str,
    *,
    secret: str,
    content_type: str,
    timestamp: int | None = None,
    retry_num: int | None = None,
    retry_reason: str | None = None,
) -> dict[str, str]:
    """The headers Slack sends with a request: content type, timestamp, signature (and retry headers)."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    headers = {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": sign(body, secret=secret, timestamp=stamp),
        "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
    }
    if retry_num is not None:
        headers["X-Slack-Retry-Num"] = str(retry_num)
        headers["X-Slack-Retry-Reason"] = retry_reason or "http_timeout"
    return headers


def form_body(fields: Mapping[str, str]) -> str:
    """Form-encode fields as Slack does for slash commands and interactivity."""
    return urlencode(dict(fields))


# -- Events API ------------------------------------------------------------------------
def event_callback(
    event: JSON, *, app: AppIdentity, event_id: str | None = None, event_time: int | None = None
) -> JSON:
    """Wrap an event in the `event_callback` envelope Slack posts to the Request URL."""
    return {
        "token": "legacy-verification-token",
        "team_id": app.team_id,
        "enterprise_id": app.enterprise_id,
        "context_team_id": app.team_id,
        "context_enterprise_id": app.enterprise_id,
        "api_app_id": app.app_id,
        "event": event,
        "type": "event_callback",
        "event_id": event_id or new_event_id(),
        "event_time": event_time if event_time is not None else int(float(event.get("event_ts", time.time()))),
        "authorizations": app.authorizations(),
        "is_ext_shared_channel": False,
        "event_context": f"4-fake-{event.get('type', 'event')}-{app.team_id}-{event.get('channel', '')}",
    }


def url_verification(challenge: str) -> JSON:
    """The one-off handshake Slack sends when the Request URL is saved; the app echoes `challenge`."""
    return {"token": "legacy-verification-token", "challenge": challenge, "type": "url_verification"}


# -- slash commands and interactivity --------------------------------------------------
def slash_command_form(
    *,
    app: AppIdentity,
    command: str,
    text: str,
    user_id: str,
    user_name: str,
    channel_id: str,
    channel_name: str,
    response_url: str,
    trigger_id: str | None = None,
) -> dict[str, str]:
    """The form fields Slack posts for a slash command (Socket Mode carries the same as JSON)."""
    fields = {
        "token": "legacy-verification-token",
        "team_id": app.team_id,
        "team_domain": app.team_domain,
        "channel_id": channel_id,
        "channel_name": channel_name,
        "user_id": user_id,
        "user_name": user_name,
        "command": command,
        "text": text,
        "api_app_id": app.app_id,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id or new_trigger_id(),
    }
    if app.enterprise_id is not None:
        fields["enterprise_id"] = app.enterprise_id
    return fields


def _user_ref(app: AppIdentity, user_id: str, user_name: str) -> JSON:
    return {"id": user_id, "username": user_name, "name": user_name, "team_id": app.team_id}


def block_actions_payload(
    *,
    app: AppIdentity,
    user_id: str,
    user_name: str,
    channel_id: str,
    channel_name: str,
    message: JSON,
    action_id: str,
    value: str,
    response_url: str,
    block_id: str = "actions",
    button_text: str = "Button",
    trigger_id: str | None = None,
) -> JSON:
    """A button click on a message: the `block_actions` payload (sent as form field `payload`)."""
    container: JSON = {
        "type": "message",
        "message_ts": message["ts"],
        "channel_id": channel_id,
        "is_ephemeral": False,
    }
    if "thread_ts" in message:
        container["thread_ts"] = message["thread_ts"]
    return {
        "type": "block_actions",
        "user": _user_ref(app, user_id, user_name),
        "api_app_id": app.app_id,
        "token": "legacy-verification-token",
        "container": container,
        "trigger_id": trigger_id or new_trigger_id(),
        "team": {"id": app.team_id, "domain": app.team_domain},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel_id, "name": channel_name},
        "message": message,
        "state": {"values": {}},
        "response_url": response_url,
        "actions": [
            {
                "action_id": action_id,
                "block_id": block_id,
                "text": {"type": "plain_text", "text": button_text, "emoji": True},
                "value": value,
                "type": "button",
                "action_ts": f"{int(time.time())}.000001",
            }
        ],
    }


def message_shortcut_payload(
    *,
    app: AppIdentity,
    callback_id: str,
    user_id: str,
    user_name: str,
    channel_id: str,
    channel_name: str,
    message: JSON,
    response_url: str,
    trigger_id: str | None = None,
) -> JSON:
    """A message shortcut (`message_action`) on `message` (sent as form field `payload`)."""
    return {
        "type": "message_action",
        "token": "legacy-verification-token",
        "action_ts": f"{int(time.time())}.000002",
        "team": {"id": app.team_id, "domain": app.team_domain},
        "user": _user_ref(app, user_id, user_name),
        "channel": {"id": channel_id, "name": channel_name},
        "is_enterprise_install": False,
        "enterprise": None,
        "callback_id": callback_id,
        "trigger_id": trigger_id or new_trigger_id(),
        "response_url": response_url,
        "message_ts": message["ts"],
        "message": message,
    }


def view_submission_payload(
    *,
    app: AppIdentity,
    user_id: str,
    user_name: str,
    view: JSON,
    values: JSON,
) -> JSON:
    """A modal's submit: the `view_submission` payload with the view as opened and the inputs'
    `state.values` ({block_id: {action_id: {"type": ..., "value": ...}}})."""
    submitted = {**view, "state": {"values": values}, "hash": "1700000000.fakehash"}
    return {
        "type": "view_submission",
        "team": {"id": app.team_id, "domain": app.team_domain},
        "user": _user_ref(app, user_id, user_name),
        "api_app_id": app.app_id,
        "token": "legacy-verification-token",
        "trigger_id": new_trigger_id(),
        "view": submitted,
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }


# -- Socket Mode -----------------------------------------------------------------------
def socket_envelope(
    kind: SocketEnvelopeType,
    payload: JSON,
    *,
    envelope_id: str,
    retry_attempt: int = 0,
    retry_reason: str = "",
) -> JSON:
    """One Socket Mode frame: the HTTP payload wrapped with the `envelope_id` the app must ack."""
    envelope: JSON = {
        "envelope_id": envelope_id,
        "payload": payload,
        "type": kind,
        "accepts_response_payload": kind == "slash_commands",
    }
    if kind == "events_api":
        envelope["retry_attempt"] = retry_attempt
        envelope["retry_reason"] = retry_reason
    return envelope


def dumps(body: object) -> str:
    """JSON text as Slack sends it (compact)."""
    return json.dumps(body, separators=(",", ":"))
