"""A fake Slack on loopback, for tests that go through the real slack-bolt and slack_sdk.

It serves, from a thread with its own event loop on 127.0.0.1 port 0:

* the Web API under `base_url` (".../api/", what `AsyncWebClient(base_url=...)` takes):
  JSON, form or query arguments, `Authorization: Bearer` checked against the bot token
  (the app token for `apps.connections.open`), Slack's `{"ok": false, "error": ...}`
  answers, every call recorded; the methods are `tests.fakes.slack_workspace`'s;
* `upload_url`s of the external-upload flow and `url_private` downloads of hosted files;
* `response_url`s of slash commands and interactivity (recorded; expirable: 404 `expired_url`);
* Socket Mode (`tests.fakes.slack_socket`): `apps.connections.open` -> `ws://` -> `hello`.

Tests make Slack fail on demand (`fail`, `rate_limit`, `delay`), wait on calls instead of
sleeping (`await wait_for_call("chat.postMessage")`) and play people through `events`
(event bodies) and `requests_to(url)` (signed HTTP delivery).

    with FakeSlack() as fake:
        client = AsyncWebClient(base_url=fake.base_url, token=fake.app.bot_token)
        fake.fail("chat.update", "msg_too_long", times=1)
        ...
        call = await fake.wait_for_call("chat.postMessage", lambda c: c.args.get("thread_ts") == ts)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from aiohttp import web

from tests.fakes.loopback import LoopbackServer
from tests.fakes.slack_events import WorkspaceEvents
from tests.fakes.slack_models import (
    ADMIN,
    ALICE,
    BOB,
    DM_ALICE,
    GENERAL,
    MAX_UPDATE_TEXT,
    OWNER,
    PRIVATE,
    RANDOM,
    ApiError,
    SlackChannel,
    SlackUser,
    StoredMessage,
)
from tests.fakes.slack_recording import Recorder
from tests.fakes.slack_requests import Delivery, Signature, SlackRequestSender
from tests.fakes.slack_socket import SocketAck, SocketConnection, SocketModeServer
from tests.fakes.slack_wire import JSON, AppIdentity
from tests.fakes.slack_workspace import Workspace

__all__ = [
    "ADMIN",
    "ALICE",
    "BOB",
    "DM_ALICE",
    "GENERAL",
    "OWNER",
    "PRIVATE",
    "RANDOM",
    "AppIdentity",
    "Delivery",
    "FakeSlack",
    "ResponseUrlPost",
    "Signature",
    "SlackCall",
    "SlackChannel",
    "SlackRequestSender",
    "SlackUser",
    "SocketAck",
    "SocketConnection",
    "StoredMessage",
]

_NO_TOKEN_METHODS = frozenset({"api.test"})
_APP_TOKEN_METHODS = frozenset({"apps.connections.open"})
#: What installing membot's app grants its bot token; Slack lists them in `x-oauth-scopes` on every call.
BOT_SCOPES: tuple[str, ...] = (
    "app_mentions:read", "channels:history", "groups:history", "im:history", "chat:write", "users:read",
    "commands", "im:write", "files:write",
)  # fmt: skip
_LOGIN_PAGE = "<!DOCTYPE html><html><head><title>Slack</title></head><body>Sign in to Slack</body></html>"


@dataclass(frozen=True, slots=True, kw_only=True)
class SlackCall:
    """One Web API request as the fake received and answered it."""

    method: str
    args: JSON  # query, form and JSON arguments merged (the token argument left out)
    token: str | None
    http_method: str
    content_type: str
    status: int
    response: JSON

    @property
    def ok(self) -> bool:
        return bool(self.response.get("ok"))


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseUrlPost:
    """One POST to a `response_url`: which one, for which command's channel/user, the JSON body."""

    url: str
    channel: str
    user: str
    body: JSON
    status: int


@dataclass(slots=True, kw_only=True)
class _Rule:
    """A failure (`error`, `status`, `headers`) or a delay (`seconds`) for the next `times` calls."""

    method: str
    channel: str | None
    times: int | None
    error: str = ""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def matches(self, method: str, args: JSON) -> bool:
        channel = args.get("channel") or args.get("channel_id")
        return self.method == method and (self.channel is None or self.channel == channel)


@dataclass(slots=True, kw_only=True)
class _ResponseUrl:
    channel: str
    user: str
    is_expired: bool = False


class FakeSlack(LoopbackServer):
    """The fake. Thread-safe: tests configure and read it from any thread while it serves."""

    def __init__(self, *, app: AppIdentity | None = None, max_update_text: int = MAX_UPDATE_TEXT) -> None:
        self.app = app or AppIdentity()
        self.workspace = Workspace(app=self.app, max_update_text=max_update_text)
        self.events = WorkspaceEvents(self.workspace, new_response_url=self.new_response_url)
        self.socket = SocketModeServer(app=self.app)
        self._calls: Recorder[SlackCall] = Recorder(describe=_describe_call)
        self._response_posts: Recorder[ResponseUrlPost] = Recorder()
        self._lock = threading.Lock()
        self._failures: list[_Rule] = []
        self._delays: list[_Rule] = []
        self._response_urls: dict[str, _ResponseUrl] = {}
        self._response_ids = itertools.count(1)
        self._all_response_urls_expired = False
        self._is_bot_token_revoked = False
        #: The scopes the bot token was granted (a test may take some away).
        self.bot_scopes: tuple[str, ...] = BOT_SCOPES
        self._stopping: asyncio.Event | None = None
        super().__init__()

    # -- lifecycle ---------------------------------------------------------------------
    label = "fake Slack"

    def _add_routes(self, app: web.Application) -> None:
        self._stopping = asyncio.Event()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/upload/v1/{token}", self._upload)
        app.router.add_get("/files-pri/{key}/{tail:.*}", self._download)
        app.router.add_post("/commands/{team}/{id}/{secret}", self._response_url)
        app.router.add_get("/link/", self.socket.handle)
        app.on_shutdown.append(lambda _: self.socket.close_all())

    async def _on_started(self) -> None:
        self.workspace.files.root_url = self.root_url
        self.socket.bind(asyncio.get_running_loop(), f"ws://127.0.0.1:{self._port}")

    async def _on_stopping(self) -> None:
        # Open sockets are closed by the app's shutdown; pending delays are cut short here.
        if self._stopping is not None:
            self._stopping.set()

    @property
    def root_url(self) -> str:
        return self.origin

    @property
    def base_url(self) -> str:
        """What to give slack_sdk as `base_url`: "http://127.0.0.1:PORT/api/"."""
        return f"{self.root_url}/api/"

    # -- failures on demand ------------------------------------------------------------
    def fail(
        self,
        method: str,
        error: str,
        *,
        channel: str | None = None,
        times: int | None = 1,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Answer `method` (for `channel` only, if given) with `error` the next `times` calls
        (None: until `clear_failures`). Slack answers errors with HTTP 200 unless told."""
        rule = _Rule(
            method=method, channel=channel, times=times, error=error, status=status, headers=dict(headers or {})
        )
        with self._lock:
            self._failures.append(rule)

    def rate_limit(
        self, method: str, *, retry_after: int = 1, times: int | None = 1, channel: str | None = None
    ) -> None:
        """Answer `method` with HTTP 429, `Retry-After: retry_after` and error `ratelimited`."""
        headers = {"Retry-After": str(retry_after)}
        self.fail(method, "ratelimited", channel=channel, times=times, status=429, headers=headers)

    def delay(self, method: str, seconds: float, *, times: int | None = 1) -> None:
        """Answer `method` only after `seconds` (cut short when the fake stops)."""
        with self._lock:
            self._delays.append(_Rule(method=method, channel=None, times=times, seconds=seconds))

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()
            self._delays.clear()

    def revoke_bot_token(self) -> None:
        """From now on every bot-token call answers `token_revoked` (as after an uninstall)."""
        self._is_bot_token_revoked = True

    def _take(self, rules: list[_Rule], method: str, args: JSON) -> _Rule | None:
        with self._lock:
            for rule in rules:
                if rule.matches(method, args):
                    if rule.times is not None:
                        rule.times -= 1
                        if rule.times <= 0:
                            rules.remove(rule)
                    return rule
        return None

    # -- recorded calls ----------------------------------------------------------------
    @property
    def calls(self) -> list[SlackCall]:
        """Every Web API call received, oldest first (a copy)."""
        return self._calls.items()

    def calls_to(self, method: str) -> list[SlackCall]:
        return [c for c in self.calls if c.method == method]

    async def wait_for_call(
        self,
        method: str,
        predicate: Callable[[SlackCall], bool] | None = None,
        *,
        timeout: float = 3.0,  # noqa: ASYNC109
    ) -> SlackCall:
        """The first call to `method` (matching `predicate`), already made or the next one."""
        return await self._calls.wait_for(
            lambda c: c.method == method and (predicate is None or predicate(c)),
            timeout=timeout,
            what=f"a {method} call" + (" matching the predicate" if predicate else ""),
        )

    async def wait_for_calls(
        self,
        method: str,
        count: int,
        predicate: Callable[[SlackCall], bool] | None = None,
        *,
        timeout: float = 3.0,  # noqa: ASYNC109
    ) -> list[SlackCall]:
        """The first `count` calls to `method` (matching `predicate`), once there are that many."""
        return await self._calls.wait_for_count(
            lambda c: c.method == method and (predicate is None or predicate(c)),
            count,
            timeout=timeout,
            what=f"{count} {method} call(s)",
        )

    # -- response_url ------------------------------------------------------------------
    def new_response_url(self, channel: str = GENERAL, user: str = ALICE) -> str:
        """A fresh `response_url` for a command or action by `user` in `channel`."""
        number = next(self._response_ids)
        path = f"/commands/{self.app.team_id}/{number}/secret{number:04d}"
        with self._lock:
            self._response_urls[path] = _ResponseUrl(channel=channel, user=user)
        return f"{self.root_url}{path}"

    def expire_response_urls(self, url: str | None = None) -> None:
        """Make one `response_url` (or, without `url`, every one) answer 404 `expired_url`."""
        with self._lock:
            if url is None:
                self._all_response_urls_expired = True
            else:
                self._response_urls[url.removeprefix(self.root_url)].is_expired = True

    @property
    def response_url_posts(self) -> list[ResponseUrlPost]:
        return self._response_posts.items()

    async def wait_for_response_url_post(
        self,
        predicate: Callable[[ResponseUrlPost], bool] | None = None,
        *,
        timeout: float = 3.0,  # noqa: ASYNC109
    ) -> ResponseUrlPost:
        return await self._response_posts.wait_for(
            lambda p: predicate is None or predicate(p), timeout=timeout, what="a POST to a response_url"
        )

    async def wait_for_response_url_posts(
        self,
        count: int,
        predicate: Callable[[ResponseUrlPost], bool] | None = None,
        *,
        timeout: float = 3.0,  # noqa: ASYNC109
    ) -> list[ResponseUrlPost]:
        """The first `count` POSTs to response_urls (matching `predicate`), once there are that many."""
        return await self._response_posts.wait_for_count(
            lambda p: predicate is None or predicate(p),
            count,
            timeout=timeout,
            what=f"{count} POST(s) to response_urls",
        )

    # -- Slack's deliveries to the app -------------------------------------------------
    def requests_to(self, url: str) -> SlackRequestSender:
        """A sender of signed HTTP-mode requests to the app listening at `url`."""
        return SlackRequestSender(url, app=self.app, events=self.events)

    # -- HTTP handlers (the fake's loop) -----------------------------------------------
    async def _api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        args = await _read_args(request)
        token = _bearer(request) or _pop_str(args, "token")
        status, headers = 200, {}
        try:
            self._authenticate(method, token)
            if token == self.app.bot_token:
                headers = {"x-oauth-scopes": ",".join(self.bot_scopes)}
            if (failure := self._take(self._failures, method, args)) is not None:
                raise ApiError(failure.error, status=failure.status, headers=failure.headers)
            if (delay := self._take(self._delays, method, args)) is not None:
                await self._pause(delay.seconds)
            if method == "apps.connections.open":
                reply: JSON = {"ok": True, "url": self.socket.issue_url()}
            else:
                reply = self.workspace.call(method, args)
        except ApiError as error:
            reply, status, headers = error.body(), error.status, error.headers
        self._calls.append(
            SlackCall(
                method=method,
                args=args,
                token=token,
                http_method=request.method,
                content_type=request.content_type,
                status=status,
                response=reply,
            )
        )
        return web.json_response(reply, status=status, headers=headers)

    def _authenticate(self, method: str, token: str | None) -> None:
        if method in _NO_TOKEN_METHODS:
            return
        if not token:
            raise ApiError("not_authed")
        wants_app_token = method in _APP_TOKEN_METHODS
        if token in (self.app.bot_token, self.app.app_token):
            if (token == self.app.app_token) != wants_app_token:
                raise ApiError("not_allowed_token_type")
            if token == self.app.bot_token and self._is_bot_token_revoked:
                raise ApiError("token_revoked")
            return
        raise ApiError("invalid_auth")

    async def _pause(self, seconds: float) -> None:
        if self._stopping is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        content = await _upload_content(request)
        if not self.workspace.files.receive(request.match_info["token"], content):
            return web.Response(status=404, text="upload URL not found")
        return web.Response(text=f"OK - {len(content)}", content_type="text/plain")

    async def _download(self, request: web.Request) -> web.StreamResponse:
        hosted = self.workspace.files.by_path_key(request.match_info["key"])
        if hosted is None:
            return web.Response(status=404, text="file not found")
        if _bearer(request) != self.app.bot_token:  # Slack answers the sign-in page, not 401
            return web.Response(text=_LOGIN_PAGE, content_type="text/html")
        return web.Response(body=hosted.content, content_type=hosted.mimetype)

    async def _response_url(self, request: web.Request) -> web.StreamResponse:
        with self._lock:
            target = self._response_urls.get(request.path)
            is_expired = target is None or target.is_expired or self._all_response_urls_expired
        raw = await request.text()
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {"unparsed": raw}
        status = 404 if is_expired else 200
        channel, user = (target.channel, target.user) if target else ("", "")
        post = ResponseUrlPost(url=str(request.url), channel=channel, user=user, body=body, status=status)
        self._response_posts.append(post)
        if is_expired:
            return web.json_response({"ok": False, "error": "expired_url"}, status=404)
        return web.json_response({"ok": True})


async def _read_args(request: web.Request) -> JSON:
    """Slack takes arguments in the query string, a form body, a multipart body or a JSON body."""
    args: JSON = dict(request.query)
    if request.content_type == "application/json":
        with contextlib.suppress(ValueError):
            body = await request.json()
            if isinstance(body, dict):
                args.update(body)
    elif request.content_type == "application/x-www-form-urlencoded":
        args.update(parse_qsl(await request.text(), keep_blank_values=True))
    elif request.content_type.startswith("multipart/"):
        form = await request.post()
        args.update({k: v for k, v in form.items() if isinstance(v, str)})
    return args


async def _upload_content(request: web.Request) -> bytes:
    if request.content_type.startswith("multipart/"):
        form = await request.post()
        for value in form.values():
            if isinstance(value, web.FileField):
                return value.file.read()
    return await request.read()


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        return None
    return header.removeprefix("Bearer ").strip() or None


def _pop_str(args: JSON, name: str) -> str | None:
    value = args.pop(name, None)
    return None if value is None else str(value)


def _describe_call(call: SlackCall) -> str:
    answer = "ok" if call.ok else f"error={call.response.get('error')}"
    shown = {k: (v if len(str(v)) < 60 else f"{str(v)[:57]}...") for k, v in call.args.items()}
    return f"{call.method} {shown} -> {call.status} {answer}"
