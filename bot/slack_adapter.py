"""The Slack adapter: Bolt events in, `InboundMessage`s to the runtime; replies out.

    event ─> Bolt (signature verified in HTTP mode; own messages dropped) ─> _admit (team,
        bots, edits and deletions) ─> addressed to us? ─> Place ─> router.route
        ─> runtime.submit(keys=["slack:msg:TEAM:CHANNEL:TS", "slack:event:ID"]) ─> ack
    runtime ─> sink_for(message) ─> bot.slack.replies (thread of the triggering message)

Bolt runs with `process_before_response`: Slack's acknowledgement is sent only once the
listener has stored the event in the inbox, so an event is never acknowledged and lost; the
turn runs afterwards. While the store is unavailable the listener fails, Slack is answered 500
and delivers the event again; the outage is logged once (`OutageLog`), not per delivery. Redeliveries (`X-Slack-Retry-Num`) share the event id, and the
`app_mention` + `message` twins of one message share the channel and ts: either key drops
the second copy in the inbox, so a message is answered once, on any replica.

The bot answers `app_mention`s, direct messages, and messages in threads it is part of (it
was mentioned there or started them; remembered in the store, so across restarts and
replicas) unless they mention someone else. Socket Mode when an app-level token is set (one
process), else HTTP mode on `PORT` (several replicas behind a load balancer). slack_bolt and
slack_sdk are imported in the `bot.slack_*` modules only.
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from aiohttp import web
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError

from bot.admin import AdminService
from bot.config import SlackSettings
from bot.errors import ConfigError
from bot.events import InboundMessage, ReplySink
from bot.ops.logging import OutageLog, is_store_outage
from bot.router import Place, Router
from bot.runtime import Runtime
from bot.slack.admin import AdminRequest, SlackAdmin
from bot.slack.client import SLACK_FAILURES, error_code, make_web_client
from bot.slack.commands import SlackCommands
from bot.slack.people import SlackPeople
from bot.slack.replies import ReplyRoute, SlackReplies

__all__ = ["EMPTY_MENTION", "PLATFORM", "JoinedThreads", "SlackAdapter", "message_text"]

_log = logging.getLogger(__name__)

PLATFORM = "slack"
EMPTY_MENTION = "[mentioned you without saying anything]"
#: Message subtypes that are people writing; the rest (edits, deletions, joins, bots) are not.
_SPOKEN_SUBTYPES = frozenset({"file_share", "thread_broadcast"})
_USER_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")
_ADMIN_PREFIX = re.compile(r"^admin(?:\s+|$)", re.IGNORECASE)
_CLOSE_DEADLINE_S = 10.0
_REMEMBERED_ADMIN_EVENTS = 1000


class JoinedThreads(Protocol):
    """Threads the bot takes part in, kept by the store (`PolicyStore`)."""

    async def add_joined_thread(self, scope: str, thread: str) -> None: ...

    async def has_joined_thread(self, scope: str, thread: str) -> bool: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class _Identity:
    """Who the bot is, from auth.test."""

    team_id: str
    user_id: str
    bot_id: str


class SlackAdapter:
    """One Bolt app (one workspace) feeding one runtime through one router."""

    def __init__(
        self,
        *,
        settings: SlackSettings,
        router: Router,
        runtime: Runtime,
        admin: AdminService,
        threads: JoinedThreads,
    ) -> None:
        if settings.bot_token is None:
            raise ConfigError("no Slack bot token: set SLACK_BOT_TOKEN (or MEMBOT_SLACK__BOT_TOKEN)")
        self.name = PLATFORM
        self._settings = settings
        self._router = router
        self._runtime = runtime
        self._threads = threads
        self.client = make_web_client(token=settings.bot_token.get_secret_value(), api_base_url=settings.api_base_url)
        secret = settings.signing_secret.get_secret_value() if settings.signing_secret is not None else ""
        self.app = AsyncApp(name="membot", client=self.client, signing_secret=secret, process_before_response=True)
        self._people = SlackPeople(self.client)
        self._replies = SlackReplies(self.client, is_streaming_enabled=settings.stream_replies)
        slack_admin = SlackAdmin(admin=admin, router=router, people=self._people, admin_users=settings.admin_users)
        self._commands = SlackCommands(client=self.client, admin=slack_admin, spawn=self._spawn)
        self.app.use(self._admit)
        self.app.error(self._on_error)
        self._outage = OutageLog("Slack events", logger=_log)
        self.app.event("app_mention")(self._on_mention)
        self.app.event("message")(self._on_message)
        self._commands.register(self.app)
        self._identity: _Identity | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = asyncio.Event()
        self._serving = asyncio.Event()
        self._handler: AsyncSocketModeHandler | None = None
        self._runner: web.AppRunner | None = None
        #: HTTP mode: the port actually listened on (`PORT=0` picks a free one).
        self.http_port: int | None = None
        #: Threads known to be joined (a cache of the store's answer; joining is never undone).
        self._known_threads: set[str] = set()
        self._unknown_teams: set[str] = set()
        #: Admin mentions already run here: a redelivery of one must not run it twice.
        self._admin_events: OrderedDict[str, None] = OrderedDict()
        runtime.register_sink(PLATFORM, self.sink_for)

    # -- Component ----------------------------------------------------------------------
    async def run(self) -> None:
        """Check the tokens, connect (Socket Mode) or listen (HTTP mode), serve until closed."""
        mode = self._settings.mode
        if mode is None:
            raise ConfigError(
                "Slack needs SLACK_APP_TOKEN (Socket Mode) or SLACK_SIGNING_SECRET (HTTP mode); neither is set"
            )
        self._identity = await self._identify()
        if mode == "socket":
            await self._connect_socket()
        else:
            await self._listen_http()
        if self._closed.is_set():  # closed while connecting
            await self._disconnect()
            return
        self._serving.set()
        await self._closed.wait()

    async def close(self) -> None:
        """Stop taking events, then let admin requests in progress finish (briefly); idempotent."""
        self._closed.set()
        self._serving.clear()
        await self._disconnect()
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=_CLOSE_DEADLINE_S)
            for task in pending:
                task.cancel()

    def is_ready(self) -> bool:
        if not self._serving.is_set() or self._closed.is_set():
            return False
        if self._handler is None:
            return self._runner is not None
        client = self._handler.client
        session = client.current_session
        return not client.closed and session is not None and not session.closed

    async def _disconnect(self) -> None:
        handler, self._handler = self._handler, None
        if handler is not None:
            await handler.close_async()  # type: ignore[no-untyped-call]
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def wait_requests_done(self) -> None:
        """Return once no admin request is in progress (they run after Slack's ack)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def wait_serving(self) -> None:
        """Return once connected (Socket Mode) or listening (HTTP mode)."""
        await self._serving.wait()

    async def _identify(self) -> _Identity:
        try:
            auth = await self.client.auth_test()
        except SlackApiError as exc:
            raise ConfigError(
                f"Slack refused the bot token (SLACK_BOT_TOKEN): {error_code(exc)}; copy it again from "
                "OAuth & Permissions and reinstall the app if it was revoked"
            ) from None
        except SLACK_FAILURES as exc:
            raise ConfigError(
                f"cannot reach Slack's Web API at {self._settings.api_base_url} ({error_code(exc)}); "
                "check MEMBOT_SLACK__API_BASE_URL and the network"
            ) from None
        identity = _Identity(team_id=str(auth["team_id"]), user_id=str(auth["user_id"]), bot_id=str(auth.get("bot_id")))
        _log.info("Slack: signed in as %s (%s) in workspace %s", auth.get("user"), identity.user_id, identity.team_id)
        return identity

    async def _connect_socket(self) -> None:
        assert self._settings.app_token is not None
        handler = AsyncSocketModeHandler(self.app, app_token=self._settings.app_token.get_secret_value())
        try:
            # Asked here, not by the client's connect loop, which would retry a bad token forever.
            handler.client.wss_uri = await handler.client.issue_new_wss_url()
        except SlackApiError as exc:
            await handler.close_async()  # type: ignore[no-untyped-call]
            raise ConfigError(
                f"Slack refused the app-level token (SLACK_APP_TOKEN): {error_code(exc)}; it needs the "
                "connections:write scope and Socket Mode enabled"
            ) from None
        self._handler = handler
        await handler.connect_async()  # type: ignore[no-untyped-call]
        _log.info("Slack: connected in Socket Mode")

    async def _listen_http(self) -> None:
        settings = self._settings
        runner = web.AppRunner(self.app.web_app(path=settings.path, port=settings.port), access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, settings.host, settings.port).start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigError(
                f"cannot listen on {settings.host}:{settings.port} for Slack (HTTP mode): {exc.strerror}; set PORT"
            ) from None
        self._runner = runner
        self.http_port = int(runner.addresses[0][1])
        _log.info("Slack: HTTP mode, listening on %s:%s%s", settings.host, self.http_port, settings.path)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work, name="membot-slack-admin")
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            _log.error("a Slack admin request failed", exc_info=exc)

    # -- inbound ------------------------------------------------------------------------
    async def _admit(self, body: dict[str, Any], next: Callable[[], Awaitable[None]]) -> BoltResponse | None:
        """Bolt middleware (Bolt passes arguments by name, hence `next`): acknowledge and drop the
        events no agent should see, in one place."""
        if body.get("type") == "event_callback":
            reason = self._refusal(body)
            if reason is not None:
                _log.debug("ignored Slack event %s: %s", body.get("event_id"), reason)
                return BoltResponse(status=200, body="")
        await next()
        return None

    async def _on_error(self, error: Exception) -> None:
        """Bolt's error handler (Bolt passes arguments by name): Slack gets a 500 and delivers the
        event again; a store outage is logged once per outage, anything else with its traceback."""
        if is_store_outage(error):
            self._outage.failed(error)
        else:
            _log.error("a Slack listener failed", exc_info=error)

    def _refusal(self, body: dict[str, Any]) -> str | None:
        identity = self._identity
        event = body.get("event") or {}
        team = str(body.get("team_id") or "")
        if identity is not None and team != identity.team_id:
            if team not in self._unknown_teams:
                self._unknown_teams.add(team)
                _log.warning(
                    "ignoring Slack events from workspace %r: this bot is installed in %s", team, identity.team_id
                )
            return "unknown workspace"
        subtype = event.get("subtype")
        if subtype is not None and subtype not in _SPOKEN_SUBTYPES:
            return f"subtype {subtype}"
        if event.get("bot_id") or event.get("bot_profile"):
            if identity is not None and event.get("user") == identity.user_id:
                return "our own message"
            if not self._settings.allow_bots:
                return "from a bot"
        if not event.get("user") or not event.get("channel") or not event.get("ts"):
            return "no author, channel or ts"
        return None

    async def _on_mention(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        """`app_mention`: always for us; `admin ...` goes to the admin commands."""
        command = self._admin_text(event)
        if command is not None:
            if self._is_repeat(f"{event.get('channel')}:{event.get('ts')}"):
                return
            request = AdminRequest(
                team=str(body.get("team_id")),
                user=str(event["user"]),
                channel=str(event["channel"]),
                thread_ts=event.get("thread_ts"),
                text=command,
            )
            self._spawn(self._commands.run_mention(request))
            return
        await self._submit(body, event)

    async def _on_message(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        if await self._is_addressed(body, event):
            await self._submit(body, event)

    async def _is_addressed(self, body: dict[str, Any], event: dict[str, Any]) -> bool:
        """A DM; a mention (the twin of an `app_mention`, answered once); or a thread we are
        part of, unless the message speaks to someone else."""
        if event.get("channel_type") == "im":
            return True
        me = self._me()
        mentioned = {match.group(1) for match in _USER_MENTION.finditer(event.get("text") or "")}
        if me in mentioned:
            return self._admin_text(event) is None  # admin commands run from the app_mention twin only
        thread_ts = event.get("thread_ts")
        if thread_ts is None or thread_ts == event.get("ts") or mentioned:
            return False
        if event.get("parent_user_id") == me:
            return True
        return await self._is_joined(str(body.get("team_id")), str(event["channel"]), str(thread_ts))

    async def _submit(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        """Route the message and store it in the inbox; Bolt acknowledges once this returns."""
        team = str(body.get("team_id"))
        channel, ts, user = str(event["channel"]), str(event["ts"]), str(event["user"])
        thread_ts = event.get("thread_ts")
        is_dm = event.get("channel_type") == "im" or channel.startswith("D")
        in_thread = thread_ts is not None and thread_ts != ts
        if not is_dm and f"<@{self._me()}" in (event.get("text") or ""):
            await self._join(team, channel, str(thread_ts or ts))
        place = Place(
            platform=PLATFORM,
            server_id=None if is_dm else team,
            channel_id=f"{channel}/{thread_ts}" if in_thread else channel,
            thread_parent_id=channel if in_thread else None,
            user_id=user,
        )
        route = await self._router.route(place)
        # In channels the answer goes in the thread of the message; a top-level DM is answered in the DM.
        reply = ReplyRoute(channel=channel, thread_ts=thread_ts if is_dm else (thread_ts or ts), team=team, user=user)
        inbound = InboundMessage(
            platform=PLATFORM,
            conversation_key=route.conversation_key,
            speaker_id=user,
            speaker_name=await self._people.name(user),
            text=message_text(event, self._me()),
            sent_at=datetime.fromtimestamp(float(ts), UTC),
            platform_message_id=f"{channel}:{ts}",
            attachments=tuple(str(f.get("url_private") or f.get("permalink") or "") for f in event.get("files") or ()),
            reply_route=reply.to_json(),
            is_shared_conversation=route.is_shared,
            scope=route.scope,
        )
        keys = [f"slack:msg:{team}:{channel}:{ts}"]
        if body.get("event_id"):
            keys.append(f"slack:event:{body['event_id']}")
        await self._runtime.submit(route.agent_id, inbound, keys=keys)
        self._outage.succeeded()

    async def _join(self, team: str, channel: str, thread_ts: str) -> None:
        thread = f"{channel}/{thread_ts}"
        if thread not in self._known_threads:
            await self._threads.add_joined_thread(f"{PLATFORM}:{team}", thread)
            self._known_threads.add(thread)

    async def _is_joined(self, team: str, channel: str, thread_ts: str) -> bool:
        thread = f"{channel}/{thread_ts}"
        if thread in self._known_threads:
            return True
        if await self._threads.has_joined_thread(f"{PLATFORM}:{team}", thread):
            self._known_threads.add(thread)
            return True
        return False

    def _is_repeat(self, key: str) -> bool:
        """Whether this admin mention was already taken (kept for the last 1,000 of them)."""
        if key in self._admin_events:
            return True
        self._admin_events[key] = None
        if len(self._admin_events) > _REMEMBERED_ADMIN_EVENTS:
            self._admin_events.popitem(last=False)
        return False

    def _me(self) -> str:
        return self._identity.user_id if self._identity is not None else ""

    def _admin_text(self, event: dict[str, Any]) -> str | None:
        """The subcommand of `@membot admin SUBCOMMAND` (outside DMs), else None."""
        if event.get("channel_type") == "im" or str(event.get("channel", "")).startswith("D"):
            return None
        text = _without_mention(event.get("text") or "", self._me())
        return _ADMIN_PREFIX.sub("", text, count=1).strip() if _ADMIN_PREFIX.match(text) else None

    # -- outbound -----------------------------------------------------------------------
    def sink_for(self, message: InboundMessage) -> ReplySink:
        """The runtime's sink factory: rebuilds where to answer from `reply_route` (also after a restart)."""
        return self._replies.sink(ReplyRoute.from_json(message.reply_route))


def message_text(event: dict[str, Any], bot_user_id: str) -> str:
    """The text for the agent: our mention removed, Slack's escaping undone, files named."""
    text = html.unescape(_without_mention(event.get("text") or "", bot_user_id))
    parts = [text] if text else []
    for shared in event.get("files") or ():
        kind = "image" if str(shared.get("mimetype") or "").startswith("image/") else "file"
        parts.append(f"[{kind}: {shared.get('name') or shared.get('title') or 'unnamed'}]")
    return "\n".join(parts) or EMPTY_MENTION


def _without_mention(text: str, bot_user_id: str) -> str:
    if not bot_user_id:
        return text.strip()
    return re.sub(rf"<@{re.escape(bot_user_id)}(?:\|[^>]*)?>", "", text).strip()
