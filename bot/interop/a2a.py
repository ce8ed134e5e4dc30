"""The A2A server: membot agents other agents can talk to (extra `membot[a2a]`).

    GET  /a2a/{agent}/.well-known/agent-card.json   the agent's card (public)
    POST /a2a/{agent}/                             JSON-RPC: SendMessage, SendStreamingMessage, GetTask, ...

Only the agents named in `MEMBOT_A2A__AGENTS` are exposed, one card each. Every call but the
cards needs `Authorization: Bearer TOKEN` with `MEMBOT_A2A__TOKEN` or a named token of
`MEMBOT_A2A__CALLERS` when any is set. One must be whenever the server can be reached from
anything but this machine: the settings refuse a host that is not loopback and a public URL that
is not, and without a token a request from another address, or relayed by a proxy
(`Forwarded`, `X-Forwarded-For`, `X-Real-IP`), is refused.
The A2A `contextId` is the conversation; the speaker comes from the message's metadata or is
the caller (a named token's name, else "A2A caller"); a request's messages go through
the shared runtime like any platform's, so an A2A turn never overlaps a Discord or Slack turn
of the same agent (`membot run discord` serves A2A beside Discord when agents are exposed).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import socket
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from importlib.metadata import version

import uvicorn
from a2a.server.context import ServerCallContext
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    HTTPAuthSecurityScheme,
    SecurityRequirement,
    SecurityScheme,
    StringList,
    Task,
)
from a2a.utils.constants import PROTOCOL_VERSION_1_0, TransportProtocol
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, SimpleUser
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot.agent.directory import AgentDirectory
from bot.config import A2ASettings
from bot.config.platforms import is_loopback_host
from bot.errors import ConfigError
from bot.interop.a2a_executor import CheckingRequestHandler, MembotExecutor
from bot.interop.a2a_replies import PLATFORM, PendingReplies
from bot.runtime import Runtime

__all__ = ["CARD_PATH", "A2AServer", "RecentTaskStore", "agent_card", "build_a2a_app"]

_log = logging.getLogger(__name__)

CARD_PATH = "/.well-known/agent-card.json"
_SECURITY_SCHEME = "bearer"
#: Headers a reverse proxy adds: their presence means the caller is not on this machine.
_PROXY_HEADERS = frozenset({"forwarded", "x-forwarded-for", "x-forwarded-host", "x-real-ip"})
# JSON-RPC's own "invalid request" code, for refusals made before the SDK sees the request.
_INVALID_REQUEST = -32600
# A2A tasks kept per agent for GetTask: what was said lives in recall, so only recent ones matter.
_TASKS_KEPT = 1000
# How long `close` waits for uvicorn to finish the requests in flight and close its sockets.
_CLOSE_WAIT_S = 10.0


def base_url(settings: A2ASettings) -> str:
    return settings.public_url or f"http://{settings.host}:{settings.port}"


def agent_card(name: str, *, url: str, has_token: bool) -> AgentCard:
    """The card of one exposed agent, served at `{url}.well-known/agent-card.json`."""
    card = AgentCard(
        name=name,
        description=(
            f"membot agent {name}: a MemGPT-style agent that remembers every message it is sent "
            "(recall), keeps core memory and archival notes, and answers in the conversation (contextId)."
        ),
        version=version("membot"),
        supported_interfaces=[
            AgentInterface(
                url=url, protocol_binding=TransportProtocol.JSONRPC.value, protocol_version=PROTOCOL_VERSION_1_0
            )
        ],
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[
            AgentSkill(
                id="conversation",
                name="Conversation with memory",
                description=(
                    "Talk with the agent; it records every message with its speaker (metadata speaker_name; "
                    "a part naming its own speaker is labelled with it) and can search everything said before."
                ),
                tags=["memory", "chat", "memgpt"],
            )
        ],
    )
    if has_token:
        card.security_schemes[_SECURITY_SCHEME].CopyFrom(
            SecurityScheme(http_auth_security_scheme=HTTPAuthSecurityScheme(scheme="Bearer"))
        )
        card.security_requirements.append(SecurityRequirement(schemes={_SECURITY_SCHEME: StringList()}))
    return card


async def build_a2a_app(
    *, runtime: Runtime, directory: AgentDirectory, settings: A2ASettings, replies: PendingReplies
) -> Starlette:
    """The ASGI app serving every exposed agent; `ConfigError` if one of them does not exist."""
    routes: list[BaseRoute] = []
    for name in settings.agents:
        agent = await directory.by_name(name)
        if agent is None:
            raise ConfigError(
                f"MEMBOT_A2A__AGENTS names {name!r}, but no agent has that name (membot agents list shows them)"
            )
        url = f"{base_url(settings)}/a2a/{name}/"
        card = agent_card(name, url=url, has_token=settings.is_authenticated)
        executor = MembotExecutor(
            agent_id=agent.id,
            agent_name=name,
            runtime=runtime,
            replies=replies,
            max_chars=settings.max_message_chars,
            max_parts=settings.max_message_parts,
            turn_timeout_s=settings.turn_timeout_s,
        )
        handler = CheckingRequestHandler(
            max_chars=settings.max_message_chars,
            max_parts=settings.max_message_parts,
            agent_executor=executor,
            task_store=RecentTaskStore(limit=_TASKS_KEPT),
            agent_card=card,
        )
        agent_routes = [
            *create_jsonrpc_routes(handler, rpc_url="/"),
            *create_agent_card_routes(card, card_url=CARD_PATH),
        ]
        routes.append(Mount(f"/a2a/{name}", app=Starlette(routes=agent_routes)))
    exposed = frozenset(settings.agents)

    async def not_exposed(request: Request) -> Response:
        name = request.path_params["name"].strip("/")
        if name in exposed:
            return _error(404, f"the endpoint of agent {name!r} is /a2a/{name}/ (with the trailing slash)")
        return _error(404, f"no agent named {name!r} is exposed here")

    routes.append(Route("/a2a/{name:path}", not_exposed, methods=["GET", "POST"]))
    tokens: dict[str, str | None] = {secret.get_secret_value(): name for name, secret in settings.callers.items()}
    if settings.token is not None:
        tokens[settings.token.get_secret_value()] = None
    app = Starlette(routes=routes)
    app.add_middleware(_Guard, tokens=tokens, max_body_bytes=max(4 << 20, 8 * settings.max_message_chars))
    return app


class RecentTaskStore(InMemoryTaskStore):
    """The SDK's in-memory task store, keeping only the newest `limit` tasks so a long-running
    server does not grow without bound (every A2A request makes a task)."""

    def __init__(self, *, limit: int) -> None:
        super().__init__()
        self._limit = limit
        self._order: OrderedDict[str, ServerCallContext] = OrderedDict()

    async def save(self, task: Task, context: ServerCallContext) -> None:
        await super().save(task, context)
        self._order[task.id] = context
        self._order.move_to_end(task.id)
        while len(self._order) > self._limit:
            oldest, owner_context = self._order.popitem(last=False)
            await super().delete(oldest, owner_context)

    async def delete(self, task_id: str, context: ServerCallContext) -> None:
        self._order.pop(task_id, None)
        await super().delete(task_id, context)


class _Guard:
    """Bearer auth (cards are public) and a body size cap, before the SDK reads a byte.

    `tokens` maps each accepted token to the caller it names (None: the anonymous "A2A caller");
    a named caller reaches the executor as the request's authenticated user."""

    def __init__(self, app: ASGIApp, *, tokens: dict[str, str | None], max_body_bytes: int) -> None:
        self._app = app
        self._tokens = [(token.encode(), caller) for token, caller in tokens.items()]
        self._max_body = max_body_bytes
        self._is_remote_warned = False

    def _caller(self, credential: bytes) -> tuple[bool, str | None]:
        """(the token is known, the caller it names); every token is compared, in constant time each."""
        found: tuple[bool, str | None] = (False, None)
        for token, caller in self._tokens:
            if hmac.compare_digest(credential, token):
                found = (True, caller)
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v for k, v in scope["headers"]}
        is_card = scope["method"] == "GET" and scope["path"].endswith(CARD_PATH)
        if not self._tokens and not is_card and not _is_local(scope, headers):
            if not self._is_remote_warned:
                self._is_remote_warned = True
                _log.warning(
                    "A2A: refused a request from beyond this machine (another address or through a proxy); "
                    "without MEMBOT_A2A__TOKEN only local callers are answered"
                )
            await _error(
                401, "this A2A server answers only local callers until the operator sets MEMBOT_A2A__TOKEN", bearer=True
            )(scope, receive, send)
            return
        if self._tokens and not is_card:
            given = headers.get("authorization", b"")
            scheme, _, credential = given.partition(b" ")
            is_known, caller = self._caller(credential.strip())
            if scheme.lower() != b"bearer" or not is_known:
                reason = "missing bearer token" if not given else "wrong bearer token"
                await _error(401, f"{reason}: send Authorization: Bearer <your A2A token>", bearer=True)(
                    scope, receive, send
                )
                return
            if caller is not None:
                scope = {**scope, "user": SimpleUser(caller), "auth": AuthCredentials(["a2a"])}
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self._max_body:
            await _error(413, f"the request body is over {self._max_body} bytes")(scope, receive, send)
            return
        await self._app(scope, self._capped(receive), send)

    def _capped(self, receive: Receive) -> Receive:
        seen = 0

        async def capped() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self._max_body:
                raise HTTPException(413, f"the request body is over {self._max_body} bytes")
            return message

        return capped


def _is_local(scope: Scope, headers: dict[str, bytes]) -> bool:
    """Whether the request comes from this machine, directly (not relayed by a proxy)."""
    client = scope.get("client")
    host = client[0] if client else ""
    return is_loopback_host(host) and not (_PROXY_HEADERS & headers.keys())


def _error(status: int, text: str, *, bearer: bool = False) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Bearer realm="membot"'} if bearer else None
    body = {"jsonrpc": "2.0", "id": None, "error": {"code": _INVALID_REQUEST, "message": text}}
    return JSONResponse(body, status_code=status, headers=headers)


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handlers: `run_components` owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class A2AServer:
    """The A2A server as a `membot run` component, sharing the runtime with the platforms.

    Built before the runtime starts, so A2A entries resumed after a restart find their sink."""

    name = "a2a"

    def __init__(self, *, runtime: Runtime, directory: AgentDirectory, settings: A2ASettings) -> None:
        self._runtime = runtime
        self._directory = directory
        self._settings = settings
        self.replies = PendingReplies()
        runtime.register_sink(PLATFORM, self.replies.sink)
        runtime.add_turn_listener(self.replies.on_turn)
        self._server: uvicorn.Server | None = None
        self._is_closed = False
        #: Set while uvicorn is not serving (before `run`, and once it returned).
        self._stopped = asyncio.Event()
        self._stopped.set()

    @property
    def bound_ports(self) -> Sequence[int]:
        """The ports listened on (port 0 in settings picks a free one)."""
        if self._server is None:
            return ()
        return [s.getsockname()[1] for server in self._server.servers for s in server.sockets]

    async def run(self) -> None:
        app = await build_a2a_app(
            runtime=self._runtime, directory=self._directory, settings=self._settings, replies=self.replies
        )
        config = uvicorn.Config(
            app, host=self._settings.host, port=self._settings.port, log_config=None, lifespan="off", access_log=False
        )
        self._server = _QuietServer(config)
        if self._is_closed:
            return
        listening = self._listen()
        _log.info("A2A: serving %s at %s/a2a/NAME/", ", ".join(self._settings.agents), base_url(self._settings))
        if self._settings.public_url is None and self._settings.host in ("0.0.0.0", "::"):
            _log.warning(
                "A2A: the agent cards name %s; set MEMBOT_A2A__PUBLIC_URL to the URL callers use",
                base_url(self._settings),
            )
        self._stopped.clear()
        try:
            await self._server.serve(sockets=[listening])
        finally:
            self._stopped.set()
            listening.close()

    def _listen(self) -> socket.socket:
        """The listening socket, bound here: uvicorn would log a bind error and exit the process."""
        host, port = self._settings.host, self._settings.port
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            return socket.create_server((host, port), family=family)
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {host}:{port} for A2A: {exc.strerror or exc}; set MEMBOT_A2A__PORT "
                "(or MEMBOT_A2A__HOST)"
            ) from None

    async def close(self) -> None:
        """Stop accepting, release waiting callers, and wait (briefly) for uvicorn to close its
        sockets, so the runner does not cancel it half-way."""
        self._is_closed = True
        self.replies.fail_all("the server is shutting down")
        if self._server is not None:
            self._server.should_exit = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), _CLOSE_WAIT_S)

    def is_ready(self) -> bool:
        return self._server is not None and self._server.started and not self._is_closed
