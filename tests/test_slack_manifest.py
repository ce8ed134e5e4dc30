"""deploy/slack-manifest.yaml asks for exactly what the Slack modules use: the scopes of the
Web API methods they call and of the events they listen to, the slash command and the
message shortcut they register."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from bot.slack.commands import COMMAND, SHORTCUT_CALLBACK

ROOT = Path(__file__).resolve().parent.parent

#: The bot scope each Web API method needs (Slack's method reference); None: no scope.
METHOD_SCOPES: dict[str, str | None] = {
    "auth_test": None,
    "users_info": "users:read",
    "chat_postMessage": "chat:write",
    "chat_postEphemeral": "chat:write",
    "chat_startStream": "chat:write",
    "chat_appendStream": "chat:write",
    "chat_stopStream": "chat:write",
    "conversations_open": "im:write",
    "files_upload_v2": "files:write",
    "views_open": None,
    "issue_new_wss_url": None,  # apps.connections.open: the app-level token's connections:write
}
EVENT_SCOPES = {
    "app_mention": "app_mentions:read",
    "message.channels": "channels:history",
    "message.groups": "groups:history",
    "message.im": "im:history",
}


def _manifest() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "deploy" / "slack-manifest.yaml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def _methods_called() -> set[str]:
    source = "\n".join(
        path.read_text(encoding="utf-8")
        for path in [ROOT / "bot" / "slack_adapter.py", *(ROOT / "bot" / "slack").glob("*.py")]
    )
    return set(re.findall(r"\b(?:self\.)?_?client\.([a-z]+_[A-Za-z0-9_]+)\(", source))


def test_the_manifest_asks_for_exactly_the_scopes_the_code_needs() -> None:
    manifest = _manifest()
    called = _methods_called()
    unknown = called - METHOD_SCOPES.keys()
    assert not unknown, f"add the scopes of {sorted(unknown)} to METHOD_SCOPES and the manifest"
    events = manifest["settings"]["event_subscriptions"]["bot_events"]
    needed = {METHOD_SCOPES[m] for m in called} - {None}
    needed |= {EVENT_SCOPES[e] for e in events}
    needed.add("commands")  # the slash command and the shortcut

    assert set(manifest["oauth_config"]["scopes"]["bot"]) == needed
    assert set(events) == set(EVENT_SCOPES)
    assert {"chat_postMessage", "users_info", "files_upload_v2", "chat_startStream"} <= called


def test_the_manifest_registers_the_command_and_shortcut_the_code_listens_for() -> None:
    features = _manifest()["features"]
    (command,) = features["slash_commands"]
    (shortcut,) = features["shortcuts"]

    assert command["command"] == COMMAND
    assert command["should_escape"] is True, "so @user arrives as <@U...>"
    assert (shortcut["type"], shortcut["callback_id"]) == ("message", SHORTCUT_CALLBACK)
    assert _manifest()["settings"]["socket_mode_enabled"] is True
    assert _manifest()["settings"]["interactivity"]["is_enabled"] is True
