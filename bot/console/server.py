"""The console as an aiohttp application, mounted by the ops server at `/console/`.

Every request passes two middlewares: the headers (a strict Content-Security-Policy with no
script at all, no framing, no referrer, no caching) and the session check (pages and actions
need a valid session cookie; every POST also needs the session's CSRF token). Only the login
form and the stylesheet are served without a session.

Changes go through `AdminService` as the bot-wide actor `console:operator`, so their limits and
audit entries are those of the platforms' admin commands.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from importlib import resources

from aiohttp import web

from bot.admin import Actor, AdminService, ResetScope
from bot.agent.loop import AgentLoop
from bot.console.agent_page import ACTIONS, BlockDraft, agent_page
from bot.console.auth import LoginLimiter, SessionKeys
from bot.console.html import Html
from bot.console.layout import BASE, agent_url, notice, url
from bot.console.pages import PLATFORMS, agents_page, audit_page, confirm_page, cost_page, login_page, message_page
from bot.console.queries import ConsoleReads
from bot.errors import (
    CoreBlockLimitError,
    LLMError,
    ModelFacingError,
    NotAllowedError,
    NotFoundError,
    UserFacingError,
    VersionConflictError,
)
from bot.memory.store import AgentRecord
from bot.memory.usage_store import BudgetKind
from bot.runtime import Store

__all__ = ["OPERATOR", "console_app"]

_log = logging.getLogger(__name__)

#: Who the console acts as: the operator, a bot-wide admin.
OPERATOR = Actor(id="console:operator", name="console operator", scope=None, is_admin=True)
COOKIE = "membot_console"
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
_PUBLIC = {f"{BASE}/login", f"{BASE}/static/console.css", f"{BASE}/static/favicon.svg"}
_SERVER = re.compile(r"^[a-z0-9_-]{1,32}:[^\s:]{1,128}$")
_PAGE = 50
_RESETS: dict[str, ResetScope] = {
    "reset-core": "core",
    "reset-recall": "recall",
    "reset-archival": "archival",
    "reset-all": "all",
}
_DONE = {
    "pause": "The agent is paused.",
    "resume": "The agent is resumed.",
    "reset-core": "Core memory is back to its templates.",
    "reset-recall": "Recall is empty.",
    "reset-archival": "Archival memory is empty.",
}

type Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def console_app(
    *,
    token: str,
    session_hours: float,
    store: Store,
    admin: AdminService,
    loop: AgentLoop,
    budget_limits: Mapping[BudgetKind, int],
    wall_clock: Callable[[], float] = time.time,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    limiter: LoginLimiter | None = None,
) -> web.Application:
    """The console's routes, to mount at `BASE` (`OpsServer` does)."""
    console = _Console(
        keys=SessionKeys(token, lifetime_s=session_hours * 3600, clock=wall_clock),
        limiter=limiter or LoginLimiter(),
        reads=ConsoleReads(store=store, loop=loop, clock=clock),
        admin=admin,
        store=store,
        budget_limits=budget_limits,
    )
    app = web.Application(middlewares=[_headers, console.auth, console.errors])
    app.router.add_get("/", console.home)
    app.router.add_get("/login", console.login_form)
    app.router.add_post("/login", console.login)
    app.router.add_post("/logout", console.logout)
    app.router.add_get("/agents", console.agents)
    app.router.add_get("/agents/{agent_id}", console.agent)
    app.router.add_post("/agents/{agent_id}/blocks", console.edit_block)
    app.router.add_get("/agents/{agent_id}/confirm/{action}", console.confirm)
    app.router.add_post("/agents/{agent_id}/do/{action}", console.act)
    app.router.add_get("/cost", console.cost)
    app.router.add_get("/audit", console.audit)
    app.router.add_get("/static/console.css", console.stylesheet)
    app.router.add_get("/static/favicon.svg", console.icon)
    return app


@web.middleware
async def _headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # redirects and aiohttp's own 404/405 get the headers too
        exc.headers.update(_HEADERS)
        raise
    response.headers.update(_HEADERS)
    return response


def _html(body: Html, *, status: int = 200) -> web.Response:
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")


def _redirect(location: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(location=location)


class _Console:
    def __init__(
        self,
        *,
        keys: SessionKeys,
        limiter: LoginLimiter,
        reads: ConsoleReads,
        admin: AdminService,
        store: Store,
        budget_limits: Mapping[BudgetKind, int],
    ) -> None:
        self._keys, self._limiter, self._reads = keys, limiter, reads
        self._admin, self._store = admin, store
        self._budgets = dict(budget_limits)
        static = resources.files("bot.console").joinpath("static")
        self._css = static.joinpath("console.css").read_text(encoding="utf-8")
        self._icon = static.joinpath("favicon.svg").read_text(encoding="utf-8")

    # -- sessions ---------------------------------------------------------------------------
    def _csrf(self, request: web.Request) -> str:
        """The CSRF token of the request's session (`auth` let the request through, so it has one)."""
        csrf = self._csrf_if_any(request)
        if csrf is None:
            raise web.HTTPForbidden()
        return csrf

    def _csrf_if_any(self, request: web.Request) -> str | None:
        session = self._keys.verify(request.cookies.get(COOKIE))
        return None if session is None else session.csrf

    @web.middleware
    async def errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """The admin service's refusals as short pages; anything unexpected logged, never shown."""
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except NotFoundError:
            csrf = self._csrf_if_any(request)
            return _html(message_page("Not found", "That agent or record no longer exists.", csrf=csrf), status=404)
        except NotAllowedError as exc:
            return _html(message_page("Not allowed", str(exc), csrf=self._csrf_if_any(request)), status=403)
        except UserFacingError as exc:
            return _html(message_page("Refused", str(exc), csrf=self._csrf_if_any(request)), status=400)
        except Exception:
            _log.exception("console: %s %s failed", request.method, request.path)
            return _html(
                message_page("Something failed", "That failed on the server; the log has the details.", csrf=None),
                status=500,
            )

    @web.middleware
    async def auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Pages need a session (else: to the login form); a POST also its CSRF token."""
        if request.path in _PUBLIC:
            return await handler(request)
        session = self._keys.verify(request.cookies.get(COOKIE))
        if session is None:
            if request.method in ("GET", "HEAD"):
                raise _redirect(url("/login"))
            return _html(message_page("Not logged in", "Log in to use the console.", csrf=None), status=403)
        if request.method == "POST":
            form = await request.post()
            candidate = form.get("csrf")
            if not self._keys.is_csrf(session, candidate if isinstance(candidate, str) else None):
                _log.warning("console: a POST to %s without a valid CSRF token was refused", request.path)
                return _html(
                    message_page("Refused", "That form has expired; reload the page and try again.", csrf=session.csrf),
                    status=403,
                )
        return await handler(request)

    async def login_form(self, request: web.Request) -> web.StreamResponse:
        if self._keys.verify(request.cookies.get(COOKIE)) is not None:
            raise _redirect(url("/agents"))
        return _html(login_page())

    async def login(self, request: web.Request) -> web.StreamResponse:
        client = request.remote or "unknown"
        wait = self._limiter.retry_after(client)
        if wait:
            _log.warning("console: login from %s refused: too many failed attempts", client)
            response = _html(login_page(error=f"Too many failed attempts: try again in {wait} s."), status=429)
            response.headers["Retry-After"] = str(wait)
            return response
        form = await request.post()
        candidate = form.get("token")
        if not isinstance(candidate, str) or not self._keys.is_token(candidate):
            self._limiter.failed(client)
            _log.warning("console: failed login from %s", client)
            return _html(login_page(error="That is not the console token."), status=401)
        _log.info("console: operator logged in from %s", client)
        response = _redirect(url("/agents"))
        is_https = request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"
        response.set_cookie(
            COOKIE,
            self._keys.issue(),
            max_age=self._keys.lifetime_s,
            path=BASE,
            httponly=True,
            samesite="Strict",
            secure=is_https,
        )
        raise response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        response = _redirect(url("/login"))
        response.del_cookie(COOKIE, path=BASE)
        raise response

    # -- pages ------------------------------------------------------------------------------
    async def home(self, request: web.Request) -> web.StreamResponse:
        raise _redirect(url("/agents"))

    async def stylesheet(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text=self._css, content_type="text/css", charset="utf-8")

    async def icon(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text=self._icon, content_type="image/svg+xml")

    async def agents(self, request: web.Request) -> web.StreamResponse:
        platform = request.query.get("platform", "")
        platform = platform if platform in PLATFORMS else ""
        server = request.query.get("server", "").strip()
        server = server if _SERVER.match(server) else ""
        prefix = f"{server}:" if server else (f"{platform}:" if platform else None)
        status = notice("The agent and all its memory are deleted.") if request.query.get("done") == "deleted" else None
        listing = await self._reads.agents(
            key_prefix=prefix, offset=_number(request, "offset", 0, 10_000_000), limit=_PAGE
        )
        return _html(agents_page(listing, platform=platform, server=server, csrf=self._csrf(request), status=status))

    async def agent(self, request: web.Request) -> web.StreamResponse:
        agent = await self._agent_of(request)
        done = request.query.get("done", "")
        label = request.query.get("label", "")
        status = None
        if done == "saved":
            status = notice(f"Saved {label}.")
        elif done in _DONE:
            status = notice(_DONE[done])
        elif done == "heartbeat":
            status = notice("The heartbeat is queued; its reflection shows here once it has run.")
        return await self._agent_page(request, agent, status=status)

    async def _agent_page(
        self,
        request: web.Request,
        agent: AgentRecord,
        *,
        status: Html | None = None,
        draft: BlockDraft | None = None,
        code: int = 200,
    ) -> web.Response:
        recall = request.query.get("recall", "").strip()[:500]
        archival = request.query.get("archival", "").strip()[:500]
        try:
            view = await self._reads.agent(agent, recall_query=recall, archival_query=archival)
        except LLMError as exc:  # the embeddings endpoint behind a search
            view = await self._reads.agent(agent, recall_query="", archival_query="")
            status = notice(f"The search failed: {exc}", kind="error")
        return _html(agent_page(view, csrf=self._csrf(request), status=status, draft=draft), status=code)

    async def edit_block(self, request: web.Request) -> web.StreamResponse:
        agent = await self._agent_of(request)
        form = await request.post()
        label, value = form.get("label"), form.get("value")
        if not isinstance(label, str) or not isinstance(value, str) or not label:
            return _html(
                message_page("Refused", "The form lacks the block's label or value.", csrf=self._csrf(request)),
                status=400,
            )
        value = value.replace("\r\n", "\n")  # browsers send textarea lines with CRLF
        try:
            await self._admin.edit_block(OPERATOR, agent.id, label, value)
        except (CoreBlockLimitError, ModelFacingError, VersionConflictError) as exc:
            text = (
                str(exc)
                if not isinstance(exc, VersionConflictError)
                else "The block changed at the same moment; try again."
            )
            draft = BlockDraft(label=label, value=value, error=text)
            return await self._agent_page(
                request, agent, draft=draft, code=409 if isinstance(exc, VersionConflictError) else 422
            )
        raise _redirect(agent_url(agent.id, "", {"done": "saved", "label": label}) + f"#block-{label}")

    async def confirm(self, request: web.Request) -> web.StreamResponse:
        agent = await self._agent_of(request)
        action = ACTIONS.get(request.match_info["action"])
        if action is None:
            raise web.HTTPNotFound()
        return _html(confirm_page(agent, action, csrf=self._csrf(request)))

    async def act(self, request: web.Request) -> web.StreamResponse:
        agent = await self._agent_of(request)
        name = request.match_info["action"]
        if name not in ACTIONS:
            raise web.HTTPNotFound()
        match name:
            case "pause":
                await self._admin.pause(OPERATOR, agent.id)
            case "resume":
                await self._admin.resume(OPERATOR, agent.id)
            case "heartbeat":
                await self._admin.heartbeat_now(OPERATOR, agent.id)
            case _:
                scope = _RESETS[name]
                await self._admin.reset(OPERATOR, agent.id, scope)
                if scope == "all":
                    raise _redirect(url("/agents", {"done": "deleted"}))
        raise _redirect(agent_url(agent.id, "", {"done": name}))

    async def cost(self, request: web.Request) -> web.StreamResponse:
        server = request.query.get("server", "").strip()
        view = await self._reads.cost(server=server if _SERVER.match(server) else None)
        return _html(
            cost_page(
                view,
                server_budget=self._budgets.get("server", 0),
                user_budget=self._budgets.get("user", 0),
                csrf=self._csrf(request),
            )
        )

    async def audit(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        server = query.get("server", "").strip()
        server = server if _SERVER.match(server) else ""
        agent_id, action, actor = (query.get(k, "").strip()[:200] for k in ("agent", "action", "actor"))
        limit = _number(request, "limit", 50, 1000)
        limit = limit if limit in (50, 200, 1000) else 50
        view = await self._reads.audit(
            server=server or None, agent_id=agent_id or None, action=action, actor=actor, limit=limit
        )
        page = audit_page(
            view, server=server, agent_id=agent_id, action=action, actor=actor, limit=limit, csrf=self._csrf(request)
        )
        return _html(page)

    async def _agent_of(self, request: web.Request) -> AgentRecord:
        """The agent the path names; a 404 page when there is none (a forged or deleted id)."""
        agent_id = request.match_info["agent_id"]
        agent = await self._store.get_agent(agent_id) if len(agent_id) <= 200 else None
        if agent is None:
            raise web.HTTPNotFound(
                text=message_page("No such agent", "There is no agent with that id.", csrf=self._csrf(request)),
                content_type="text/html",
            )
        return agent


def _number(request: web.Request, name: str, default: int, most: int) -> int:
    try:
        value = int(request.query.get(name, default))
    except ValueError:
        return default
    return min(max(value, 0), most)
