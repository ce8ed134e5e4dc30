"""Where discord.py sends REST calls and opens its gateway: Discord itself, or a local emulator.

discord.py has no constructor option for its endpoints (`proxy`, `connector` and
`http_trace` shape the transport, not the address), but it reads both addresses from
class attributes at call time, so setting them once before the client logs in moves
every path the library takes:

- `discord.http.Route.BASE` ("https://discord.com/api/v10"): every REST call is
  `Route.BASE + path`: login (GET /users/@me), GET /oauth2/applications/@me, messages,
  typing, command sync, and also interaction callbacks and webhook follow-ups, which
  `discord.webhook.async_` builds from the same `Route`.
- `discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY` (wss://gateway.discord.gg/): where
  `Client.connect()` opens its first websocket (it never asks GET /gateway/bot), where
  an `AutoShardedClient` given `shard_count` connects, and where a shard goes back to
  after INVALID_SESSION. An `AutoShardedClient` without `shard_count` connects to the
  `url` that GET /gateway/bot returns (on `Route.BASE`), and every client resumes at the
  `resume_gateway_url` of its READY; both come from the server, so they follow too.

CDN assets (avatars, `Asset.BASE`) are not moved; attachment URLs come from message
payloads, so they point wherever the server that sent them says. The attributes are
process-wide: call `configure_discord_urls` once, before `Client.login()`/`start()`.

`invite_url` is the OAuth2 link a server admin opens to add the bot (`membot discord
invite-url`), asking for exactly `BOT_PERMISSIONS`.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

import discord
import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route

__all__ = [
    "BOT_PERMISSIONS",
    "DISCORD",
    "DiscordURLs",
    "application_id_from_token",
    "configure_discord_urls",
    "current_discord_urls",
    "invite_url",
]

#: What the bot does in a channel, and nothing more: see it and its messages (View Channels),
#: answer (Send Messages, and Send Messages in Threads for threads), and answer *as a reply*,
#: which Discord allows only with Read Message History. Typing needs Send Messages; slash
#: commands, their ephemeral answers and file follow-ups are interaction responses, which
#: need no bot permission; reading attachments needs none either.
BOT_PERMISSIONS = discord.Permissions(
    view_channel=True, send_messages=True, send_messages_in_threads=True, read_message_history=True
)


@dataclass(frozen=True, slots=True, kw_only=True)
class DiscordURLs:
    """The two addresses discord.py talks to."""

    api_base_url: str
    """Versioned REST base, no trailing slash: "https://discord.com/api/v10"."""
    gateway_url: str
    """Gateway websocket; discord.py appends `?v=10&encoding=json&compress=...` itself."""


DISCORD = DiscordURLs(api_base_url="https://discord.com/api/v10", gateway_url="wss://gateway.discord.gg/")
"""discord.py's own defaults: the real Discord."""


def current_discord_urls() -> DiscordURLs:
    """The addresses discord.py uses now."""
    return DiscordURLs(api_base_url=Route.BASE, gateway_url=str(DiscordWebSocket.DEFAULT_GATEWAY))


def configure_discord_urls(urls: DiscordURLs) -> DiscordURLs:
    """Point discord.py (process-wide) at `urls`; returns the previous addresses, to restore later."""
    previous = current_discord_urls()
    Route.BASE = urls.api_base_url.rstrip("/")
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(urls.gateway_url)
    return previous


def application_id_from_token(token: str) -> int | None:
    """The application id a bot token starts with (base64 of the bot user's id, which is the
    application's for every bot made since 2016); None when the token does not look like one."""
    first = token.split(".", 1)[0]
    try:
        decoded = base64.urlsafe_b64decode(first + "=" * (-len(first) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return int(decoded) if decoded.isdigit() else None


def invite_url(application_id: int) -> str:
    """The OAuth2 URL that adds the bot to a server with `BOT_PERMISSIONS` and its slash commands."""
    return discord.utils.oauth_url(application_id, permissions=BOT_PERMISSIONS, scopes=("bot", "applications.commands"))
