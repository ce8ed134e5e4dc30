"""Socket Mode, served by the fake: `apps.connections.open` hands out a one-use loopback
`ws://` URL (Slack's is `wss://wss-primary.slack.com/link/?ticket=...&app_id=...`), the
socket greets with `hello`, and tests push envelopes down it and await the app's acks.

slack_sdk's Socket Mode clients take that URL from the `apps.connections.open` answer of
their `web_client`, so an `AsyncWebClient(base_url=fake.base_url)` is all it takes to aim
them here. The server side runs on the fake's loop; the `send_*` and `wait_*` coroutines
may be awaited from any loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import secrets
import threading
from dataclasses import dataclass

from aiohttp import WSCloseCode, WSMsgType, web

from tests.fakes.slack_recording import Recorder
from tests.fakes.slack_wire import JSON, AppIdentity, SocketEnvelopeType, dumps, socket_envelope

__all__ = ["SocketAck", "SocketConnection", "SocketModeServer"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SocketConnection:
    number: int
    ticket: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SocketAck:
    """What the app sent back for one envelope: its id and the optional response `payload`."""

    envelope_id: str
    payload: JSON | None
    frame: JSON


class SocketModeServer:
    """The Socket Mode side of the fake. `bind` is called by `FakeSlack` once it listens."""

    def __init__(self, *, app: AppIdentity) -> None:
        self.app = app
        self.connections: Recorder[SocketConnection] = Recorder()
        self.acks: Recorder[SocketAck] = Recorder()
        self.frames: Recorder[JSON] = Recorder()  # every text frame the app sent, acks included
        self._lock = threading.Lock()
        self._tickets: set[str] = set()
        self._sockets: dict[int, web.WebSocketResponse] = {}
        self._numbers = itertools.count(1)
        self._envelope_ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._root_ws = ""

    def bind(self, loop: asyncio.AbstractEventLoop, root_ws_url: str) -> None:
        self._loop, self._root_ws = loop, root_ws_url

    # -- server side (the fake's loop) -------------------------------------------------
    def issue_url(self) -> str:
        """A fresh one-use URL, as `apps.connections.open` returns."""
        ticket = secrets.token_hex(16)
        with self._lock:
            self._tickets.add(ticket)
        return f"{self._root_ws}/link/?ticket={ticket}&app_id={self.app.app_id}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        with self._lock:
            valid = ticket in self._tickets
            self._tickets.discard(ticket)
        if not valid:
            return web.Response(status=401, text="invalid or used ticket")
        socket = web.WebSocketResponse(autoping=True)
        await socket.prepare(request)
        number = next(self._numbers)
        with self._lock:
            self._sockets[number] = socket
        hello = {
            "type": "hello",
            "num_connections": len(self._sockets),
            "debug_info": {"host": "applink-fake", "build_number": 1, "approximate_connection_time": 18060},
            "connection_info": {"app_id": self.app.app_id},
        }
        try:
            await socket.send_str(dumps(hello))
            self.connections.append(SocketConnection(number=number, ticket=ticket))
            async for message in socket:
                if message.type == WSMsgType.TEXT:
                    self._record(message.data)
        finally:
            with self._lock:
                self._sockets.pop(number, None)
        return socket

    def _record(self, text: str) -> None:
        with contextlib.suppress(ValueError):
            frame = json.loads(text)
            if isinstance(frame, dict):
                self.frames.append(frame)
                if "envelope_id" in frame:
                    self.acks.append(
                        SocketAck(envelope_id=str(frame["envelope_id"]), payload=frame.get("payload"), frame=frame)
                    )

    async def close_all(self) -> None:
        with self._lock:
            sockets = list(self._sockets.values())
        for socket in sockets:
            await socket.close(code=WSCloseCode.GOING_AWAY, message=b"fake slack stopping")

    # -- test side (any loop) ----------------------------------------------------------
    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._sockets)

    async def _on_server_loop(self, frame: JSON | None, *, close_after: bool = False) -> None:
        with self._lock:
            socket = self._sockets[max(self._sockets)] if self._sockets else None
        if socket is None or self._loop is None:
            raise AssertionError("no Socket Mode connection is open (await wait_for_connection() first)")

        async def send() -> None:
            if frame is not None:
                await socket.send_str(dumps(frame))
            if close_after:
                await socket.close(code=WSCloseCode.GOING_AWAY)

        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(send(), self._loop))

    def new_envelope_id(self) -> str:
        return f"00000000-0000-4000-8000-{next(self._envelope_ids):012d}"

    async def send_envelope(
        self, kind: SocketEnvelopeType, payload: JSON, *, retry_attempt: int = 0, retry_reason: str = ""
    ) -> str:
        """Push one envelope down the newest connection; returns its `envelope_id`."""
        envelope_id = self.new_envelope_id()
        envelope = socket_envelope(
            kind, payload, envelope_id=envelope_id, retry_attempt=retry_attempt, retry_reason=retry_reason
        )
        await self._on_server_loop(envelope)
        return envelope_id

    async def send_events_api(self, body: JSON, *, retry_attempt: int = 0, retry_reason: str = "") -> str:
        """An `event_callback` body (see `fake.events.envelope`) as an `events_api` envelope."""
        return await self.send_envelope("events_api", body, retry_attempt=retry_attempt, retry_reason=retry_reason)

    async def send_slash_command(self, form: dict[str, str]) -> str:
        """Slash command fields (see `fake.events.slash_command`) as a `slash_commands` envelope."""
        return await self.send_envelope("slash_commands", dict(form))

    async def send_interactive(self, payload: JSON) -> str:
        """A `block_actions`/`message_action`/... payload as an `interactive` envelope."""
        return await self.send_envelope("interactive", payload)

    async def request_reconnect(self, reason: str = "refresh_requested") -> None:
        """Send `disconnect` as Slack does every few hours: the client opens a new connection
        (a new `apps.connections.open`) and closes this one itself."""
        frame = {"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-fake"}}
        await self._on_server_loop(frame)

    async def drop_connection(self) -> None:
        """Close the newest connection from the server side, as a network failure would."""
        await self._on_server_loop(None, close_after=True)

    async def wait_for_connection(self, number: int = 1, *, timeout: float = 3.0) -> SocketConnection:  # noqa: ASYNC109
        """The `number`-th connection (1 = the first), once it has been greeted with `hello`."""
        found = await self.connections.wait_for(
            lambda c: c.number == number, timeout=timeout, what=f"Socket Mode connection #{number}"
        )
        return found

    async def wait_for_ack(self, envelope_id: str, *, timeout: float = 3.0) -> SocketAck:  # noqa: ASYNC109
        return await self.acks.wait_for(
            lambda a: a.envelope_id == envelope_id, timeout=timeout, what=f"an ack of envelope {envelope_id}"
        )
