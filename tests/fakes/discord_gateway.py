"""The fake Discord gateway: websocket sessions speaking Discord's JSON protocol (v10).

A connection gets HELLO (op 10) and answers heartbeats (op 1 -> op 11 HEARTBEAT_ACK).
IDENTIFY (op 2) checks the token (else close 4004), the shard (4010) and the privileged
intents the application may use (4014), then opens a session: READY (user, the shard's
guilds as unavailable, session_id, resume_gateway_url, shard, application) followed by a
GUILD_CREATE per guild. Every dispatch carries the session's next sequence number and is
kept, so RESUME (op 6) on a new connection replays what the client missed, then RESUMED;
an unknown or closed (1000/1001) session gets INVALID_SESSION (op 9, false) instead.
REQUEST_GUILD_MEMBERS (op 8) is answered with one GUILD_MEMBERS_CHUNK.

Events go to the shard that owns them, (guild_id >> 22) % shard_count, DMs to shard 0,
and only with the intents that carry them; MESSAGE_CREATE/UPDATE lose their content
without MESSAGE_CONTENT (see `World.gateway_message`) and GUILD_CREATE lists only the
bot's own member without GUILD_MEMBERS.

Transport compression: with `compress=zlib-stream` (what discord.py 2.7 asks for unless
zstandard is importable) frames are one zlib stream, each message ending in a Z_SYNC_FLUSH;
any other value (zstd-stream) is answered with plain text frames, which discord.py also
reads. Only `encoding=json`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import zlib
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes.discord_wire import (
    JSON,
    PRIVILEGED_INTENTS,
    CloseCode,
    Intent,
    MessageFlag,
    Op,
    shard_for,
)
from tests.fakes.discord_world import World

__all__ = ["Gateway", "GatewayConnection", "GatewaySession", "SessionInfo"]


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayConnection:
    """One websocket a client opened: its query (v, encoding, compress) as sent."""

    query: dict[str, str]


@dataclass(slots=True, kw_only=True, eq=False)
class GatewaySession:
    """An identified session: its shard, intents and every dispatch sent (for RESUME)."""

    id: str
    shard_id: int
    shard_count: int
    intents: int
    identify: JSON
    seq: int = 0
    sent: list[JSON] = field(default_factory=list)
    connection: _Connection | None = None
    is_resumable: bool = True
    resumes: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def is_connected(self) -> bool:
        return self.connection is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionInfo:
    """A snapshot of a gateway session, for tests."""

    id: str
    shard_id: int
    shard_count: int
    intents: int
    identify: JSON
    is_connected: bool
    resumes: int
    seq: int


class _Connection:
    def __init__(self, ws: web.WebSocketResponse, *, compress: str | None) -> None:
        self.ws = ws
        self.session: GatewaySession | None = None
        self.heartbeats = 0
        self.closed_by_server = False
        self._zlib = zlib.compressobj() if compress == "zlib-stream" else None
        self._lock = asyncio.Lock()

    async def send(self, frame: JSON) -> None:
        text = json.dumps(frame, separators=(",", ":"))
        async with self._lock:
            if self._zlib is None:
                await self.ws.send_str(text)
            else:
                await self.ws.send_bytes(self._zlib.compress(text.encode()) + self._zlib.flush(zlib.Z_SYNC_FLUSH))

    async def close(self, code: int, reason: str) -> None:
        self.closed_by_server = True
        await self.ws.close(code=code, message=reason.encode())


def _intent_for(event: str, guild_id: int | None) -> int:
    if event.startswith("MESSAGE_") or event == "TYPING_START":
        return Intent.GUILD_MESSAGES if guild_id is not None else Intent.DIRECT_MESSAGES
    if event.startswith("GUILD_MEMBER"):
        return Intent.GUILD_MEMBERS
    if event.startswith(("GUILD_", "CHANNEL_", "THREAD_")):
        return Intent.GUILDS
    return 0


class Gateway:
    """The websocket endpoint and its sessions. Runs on the fake's event loop only."""

    def __init__(
        self,
        world: World,
        *,
        token: str,
        heartbeat_interval_ms: int,
        privileged_intents: int,
    ) -> None:
        self._world = world
        self._token = token
        self._heartbeat_interval_ms = heartbeat_interval_ms
        self._privileged_intents = privileged_intents
        self.resume_url = ""  # set by the server once it knows its port
        self.connections: list[GatewayConnection] = []
        self.sessions: dict[str, GatewaySession] = {}
        self._open: set[_Connection] = set()

    # -- the websocket -------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=16 * 1024 * 1024)
        await ws.prepare(request)
        query = dict(request.query)
        self.connections.append(GatewayConnection(query=query))
        connection = _Connection(ws, compress=query.get("compress"))
        self._open.add(connection)
        try:
            if query.get("v", "10") not in ("9", "10"):
                await connection.close(CloseCode.INVALID_API_VERSION, "Invalid API version")
            elif query.get("encoding", "json") != "json":
                await connection.close(CloseCode.DECODE_ERROR, "Error while decoding payload.")
            else:
                await connection.send(
                    {"op": Op.HELLO, "d": {"heartbeat_interval": self._heartbeat_interval_ms}, "s": None, "t": None}
                )
                async for message in ws:
                    if message.type is WSMsgType.TEXT:
                        await self._receive(connection, message.data)
                    elif message.type is WSMsgType.BINARY:
                        await connection.close(CloseCode.DECODE_ERROR, "Error while decoding payload.")
        finally:
            self._open.discard(connection)
            self._detach(connection)
        return ws

    def _detach(self, connection: _Connection) -> None:
        session = connection.session
        if session is None or session.connection is not connection:
            return
        session.connection = None
        if not connection.closed_by_server and connection.ws.close_code in (1000, 1001):
            session.is_resumable = False  # a clean close from the client ends the session

    async def _receive(self, connection: _Connection, text: str) -> None:
        try:
            frame: Any = json.loads(text)
            op, data = frame["op"], frame.get("d")
            if op != Op.HEARTBEAT and not isinstance(data, dict):
                raise TypeError("d must be an object")
        except (ValueError, KeyError, TypeError):
            await connection.close(CloseCode.DECODE_ERROR, "Error while decoding payload.")
            return
        match op:
            case Op.HEARTBEAT:
                connection.heartbeats += 1
                await connection.send({"op": Op.HEARTBEAT_ACK, "d": None, "s": None, "t": None})
            case Op.IDENTIFY:
                await self._identify(connection, data)
            case Op.RESUME:
                await self._resume(connection, data)
            case Op.PRESENCE_UPDATE | Op.VOICE_STATE_UPDATE if connection.session is None:
                await connection.close(CloseCode.NOT_AUTHENTICATED, "Not authenticated.")
            case Op.PRESENCE_UPDATE | Op.VOICE_STATE_UPDATE:
                pass
            case Op.REQUEST_GUILD_MEMBERS:
                await self._members_chunk(connection, data)
            case _:
                await connection.close(CloseCode.UNKNOWN_OPCODE, "Unknown opcode.")

    async def _identify(self, connection: _Connection, data: JSON) -> None:
        if connection.session is not None:
            await connection.close(CloseCode.ALREADY_AUTHENTICATED, "Already authenticated.")
            return
        if data.get("token") != self._token:
            await connection.close(CloseCode.AUTHENTICATION_FAILED, "Authentication failed.")
            return
        shard_id, shard_count = data.get("shard") or (0, 1)
        if not 0 <= shard_id < shard_count:
            await connection.close(CloseCode.INVALID_SHARD, "Invalid shard.")
            return
        intents = data.get("intents")
        if not isinstance(intents, int) or intents < 0:
            await connection.close(CloseCode.INVALID_INTENTS, "Invalid intent(s).")
            return
        if intents & PRIVILEGED_INTENTS & ~self._privileged_intents:
            await connection.close(CloseCode.DISALLOWED_INTENTS, "Disallowed intent(s).")
            return
        session = GatewaySession(
            id=secrets.token_hex(16),
            shard_id=shard_id,
            shard_count=shard_count,
            intents=intents,
            identify=data | {"token": "<redacted>"},
            connection=connection,
        )
        connection.session = session
        self.sessions[session.id] = session
        world = self._world
        with world.lock:
            guilds = world.guilds_on_shard(shard_id, shard_count)
            ready: JSON = {
                "v": 10,
                "user": world.bot.payload() | {"verified": True, "mfa_enabled": False, "email": None},
                "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
                "session_id": session.id,
                "session_type": "normal",
                "resume_gateway_url": self.resume_url,
                "shard": [shard_id, shard_count],
                "application": {"id": str(world.application_id), "flags": world.application_flags},
                "private_channels": [],
                "relationships": [],
                "presences": [],
                "user_settings": {},
                "guild_join_requests": [],
                "geo_ordered_rtc_regions": [],
                "_trace": ["fake-discord-gateway"],
            }
            creates = [self._render("GUILD_CREATE", world.guild_payload(g, for_gateway=True), intents) for g in guilds]
        await self._send(session, "READY", ready)
        for guild in creates:
            await self._send(session, "GUILD_CREATE", guild)

    async def _resume(self, connection: _Connection, data: JSON) -> None:
        session = self.sessions.get(str(data.get("session_id")))
        if data.get("token") != self._token:
            await connection.close(CloseCode.AUTHENTICATION_FAILED, "Authentication failed.")
            return
        if session is None or not session.is_resumable:
            await connection.send({"op": Op.INVALID_SESSION, "d": False, "s": None, "t": None})
            return
        seq = data.get("seq") or 0
        if seq > session.seq:
            await connection.close(CloseCode.INVALID_SEQ, "Invalid seq.")
            return
        old = session.connection
        async with session.lock:
            session.connection, connection.session = connection, session
            session.resumes += 1
            for frame in session.sent:
                if frame["s"] > seq:
                    await connection.send(frame)
        if old is not None and old is not connection:
            await old.close(CloseCode.UNKNOWN_ERROR, "Session resumed elsewhere.")
        await self._send(session, "RESUMED", {"_trace": ["fake-discord-gateway"]})

    async def _members_chunk(self, connection: _Connection, data: JSON) -> None:
        session = connection.session
        if session is None:
            await connection.close(CloseCode.NOT_AUTHENTICATED, "Not authenticated.")
            return
        with self._world.lock:
            guild = self._world.guilds.get(int(data.get("guild_id") or 0))
            members = [] if guild is None else list(guild.members.values())
            query, ids = (data.get("query") or "").lower(), {int(i) for i in data.get("user_ids") or []}
            if ids:
                members = [m for m in members if m.user.id in ids]
            else:
                members = [m for m in members if m.user.username.lower().startswith(query)]
            limit = int(data.get("limit") or 0)
            chunk: JSON = {
                "guild_id": str(data.get("guild_id")),
                "members": [m.payload() for m in (members[:limit] if limit else members)],
                "chunk_index": 0,
                "chunk_count": 1,
                "not_found": [],
            }
        if "nonce" in data:
            chunk["nonce"] = data["nonce"]
        await self._send(session, "GUILD_MEMBERS_CHUNK", chunk)

    async def _send(self, session: GatewaySession, event: str, data: JSON) -> None:
        async with session.lock:
            session.seq += 1
            frame = {"op": Op.DISPATCH, "t": event, "s": session.seq, "d": data}
            session.sent.append(frame)
            if session.connection is not None:
                with contextlib.suppress(ConnectionError):
                    await session.connection.send(frame)

    # -- what the rest of the fake calls ---------------------------------------------------
    async def dispatch(self, event: str, data: JSON, *, guild_id: int | None) -> int:
        """Send an event to every live (or resumable) session of the owning shard that has its intent.

        MESSAGE_CREATE/UPDATE are rendered per session (content by intents). Returns how many
        sessions got it, counting disconnected ones that will get it on RESUME.
        """
        needed = _intent_for(event, guild_id)
        delivered = 0
        for session in list(self.sessions.values()):
            if not session.is_resumable or shard_for(guild_id, session.shard_count) != session.shard_id:
                continue
            if needed and not session.intents & needed:
                continue
            await self._send(session, event, self._render(event, data, session.intents))
            delivered += 1
        return delivered

    async def echo(self, event: str, message: JSON) -> None:
        """MESSAGE_CREATE/UPDATE/DELETE for a message the bot made or changed over REST (not ephemeral ones)."""
        if message["flags"] & MessageFlag.EPHEMERAL:
            return
        with self._world.lock:
            guild_id = self._world.channels[int(message["channel_id"])].guild_id
        data = message
        if event == "MESSAGE_DELETE":
            data = {"id": message["id"], "channel_id": message["channel_id"]}
            if guild_id is not None:
                data["guild_id"] = str(guild_id)
        await self.dispatch(event, data, guild_id=guild_id)

    def _render(self, event: str, data: JSON, intents: int) -> JSON:
        """What a session with `intents` sees of an event: message content, GUILD_CREATE's member list."""
        if event in ("MESSAGE_CREATE", "MESSAGE_UPDATE"):
            return self._world.gateway_message(data, intents=intents)
        if event == "GUILD_CREATE" and not intents & Intent.GUILD_MEMBERS:
            bot_id = str(self._world.bot.id)
            return data | {"members": [m for m in data["members"] if m["user"]["id"] == bot_id]}
        return data

    def snapshot(self) -> list[SessionInfo]:
        return [
            SessionInfo(
                id=s.id,
                shard_id=s.shard_id,
                shard_count=s.shard_count,
                intents=s.intents,
                identify=s.identify,
                is_connected=s.is_connected,
                resumes=s.resumes,
                seq=s.seq,
            )
            for s in list(self.sessions.values())
        ]

    def live_sessions(self, shard_id: int | None = None) -> list[GatewaySession]:
        return [
            s
            for s in self.sessions.values()
            if s.is_connected and s.is_resumable and (shard_id is None or s.shard_id == shard_id)
        ]

    async def reconnect(self, shard_id: int) -> None:
        """Op 7 RECONNECT: the client closes and resumes."""
        for session in self.live_sessions(shard_id):
            assert session.connection is not None
            await session.connection.send({"op": Op.RECONNECT, "d": None, "s": None, "t": None})

    async def invalidate(self, shard_id: int, *, resumable: bool) -> None:
        """Op 9 INVALID_SESSION: resumable=False makes the client IDENTIFY anew."""
        for session in self.live_sessions(shard_id):
            assert session.connection is not None
            session.is_resumable = resumable
            await session.connection.send({"op": Op.INVALID_SESSION, "d": resumable, "s": None, "t": None})

    async def drop(self, shard_id: int, *, code: int) -> None:
        """Close the shard's socket from the server side (the session stays resumable)."""
        for session in self.live_sessions(shard_id):
            assert session.connection is not None
            await session.connection.close(code, "Dropped by the fake.")

    async def close_all(self) -> None:
        for connection in list(self._open):
            with contextlib.suppress(ConnectionError):
                await connection.close(1001, "Going away.")
