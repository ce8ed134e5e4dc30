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
"""

from __future__ import annotations

from dataclasses import dataclass

import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route

__all__ = ["DISCORD", "DiscordURLs", "configure_discord_urls", "current_discord_urls"]


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
