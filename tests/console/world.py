"""A store with agents worth looking at, and the ops server with the console mounted on it.

Used by the HTTP tests, the browser test (and its screenshots for docs/console.md) and
bench/bench_console.py. Everything is real: the store, the agent loop, the admin service, the
ops server on a loopback port; only the clocks are fixed so pages are reproducible.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry

from bot.admin import AdminService
from bot.agent.directory import AgentDirectory
from bot.agent.loop import AgentLoop
from bot.agent.model import ChatModel
from bot.agent.options import shipped_options
from bot.agent.templates import Templates, load_template
from bot.agent.tokens import TokenCounter
from bot.console import console_app
from bot.console.auth import LoginLimiter
from bot.memory.policy_store import AuditEntry
from bot.memory.store import AgentRecord, AgentUpdate, NewMessage, NewPassage, StoredToolCall
from bot.memory.usage_store import UsageRecord
from bot.ops.http import OpsServer
from bot.ops.readiness import LLMReadiness, Readiness
from bot.runtime import Store

TOKEN = "correct-horse-battery-staple-42"
NOW = datetime(2026, 5, 20, 12, 0, tzinfo=UTC)
MODEL = "gpt-4o-mini"


class Clock:
    """The wall clock of sessions and the monotonic clock of the login limiter, moved by hand."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    store: Store
    loop: AgentLoop
    directory: AgentDirectory
    admin: AdminService
    wall: Clock = field(default_factory=lambda: Clock(NOW.timestamp()))
    monotonic: Clock = field(default_factory=lambda: Clock(1_000.0))
    agents: dict[str, AgentRecord] = field(default_factory=dict)

    def app(self) -> Any:
        return console_app(
            token=TOKEN,
            session_hours=12,
            store=self.store,
            admin=self.admin,
            loop=self.loop,
            budget_limits={"server": 40_000, "user": 10_000},
            wall_clock=self.wall,
            clock=lambda: NOW,
            limiter=LoginLimiter(per_client=5, overall=60, window_s=60, clock=self.monotonic),
        )

    async def agent(self, key: str | None, *, name: str | None = None) -> AgentRecord:
        record = await self.directory.create(
            name=name or key or "unbound",
            persona=load_template("persona", "sam", user_dir=None),
            human=load_template("human", "basic", user_dir=None),
            persona_template="sam",
            human_template="basic",
            model=MODEL,
            conversation_key=key,
        )
        self.agents[record.name] = record
        return record


def make_world(store: Store, model: ChatModel, *, context_window: int = 16_000) -> World:
    loop = AgentLoop(
        store=store,
        model=model,
        counter=TokenCounter(model=MODEL),
        embedder=None,
        options=shipped_options(context_window=context_window, max_output_tokens=1_000),
        clock=lambda: NOW,
    )
    directory = AgentDirectory(store, core_block_limit=2_000, clock=lambda: NOW)
    admin = AdminService(
        store=store,
        directory=directory,
        loop=loop,
        templates=Templates(root=None),
        clock=lambda: NOW,
    )
    return World(store=store, loop=loop, directory=directory, admin=admin)


def message(role: str, text: str, *, at: datetime, speaker: str | None = None, **extra: Any) -> NewMessage:
    return NewMessage(
        role=role,  # type: ignore[arg-type]
        content=text,
        created_at=at,
        tokens=max(1, len(text) // 4),
        speaker_id=speaker.lower() if speaker else None,
        speaker_name=speaker,
        **extra,
    )


async def seed(world: World) -> None:
    """Five agents on two platforms: conversations, a summary, passages, a reflection, usage, audit."""
    store = world.store
    general = await world.agent("discord:G1:channel:C1")
    await world.agent("discord:G1:user:U7")
    team = await world.agent("slack:T1:channel:C9")
    await world.agent("discord:dm:U8")
    await world.agent(None, name="terminal-sam")
    start = NOW - timedelta(hours=3)
    talk = [
        message("user", "Hi! I'm Ada, I look after the greenhouse on weekends.", at=start, speaker="Ada"),
        message(
            "assistant",
            "",
            at=start,
            tool_calls=(StoredToolCall(id="c1", name="send_message", arguments='{"message": "Hello Ada!"}'),),
        ),
        message("tool", '{"status": "OK", "message": "sent"}', at=start, tool_call_id="c1", tool_name="send_message"),
        message(
            "user", "The tomatoes need watering every two days in May.", at=start + timedelta(minutes=2), speaker="Ada"
        ),
        message("user", "Grace here: I will take the Sunday shift.", at=start + timedelta(minutes=5), speaker="Grace"),
    ]
    await store.append_messages(general.id, talk)
    await store.update_agent(
        general.id,
        AgentUpdate(
            summary="Ada and Grace run the greenhouse; they swap weekend shifts.",
            last_user_message_at=start + timedelta(minutes=5),
        ),
        expected_version=general.version,
    )
    await store.insert_passages(
        general.id, [NewPassage(text="Tomatoes: water every two days in May, daily in July.", created_at=start)]
    )
    # A reflection after the conversation went quiet: it noted Grace in core memory.
    reflected = start + timedelta(hours=1)
    await store.append_messages(
        general.id,
        [
            message(
                "system", "reflection: quiet time. Review the conversation since your last reflection.", at=reflected
            ),
            message(
                "assistant",
                "Grace joins on Sundays.",
                at=reflected,
                tool_calls=(
                    StoredToolCall(
                        id="r1",
                        name="core_memory_append",
                        arguments='{"label": "human", "content": "Grace: Sunday shift"}',
                    ),
                ),
            ),
            message(
                "tool",
                '{"status": "OK", "message": "appended"}',
                at=reflected,
                tool_call_id="r1",
                tool_name="core_memory_append",
            ),
        ],
    )
    await world.loop.core.append(general.id, "human", "Grace: Sunday shift")
    await store.schedule_heartbeat(general.id, due_at=reflected - timedelta(seconds=30), scope="discord:G1")
    claimed = await store.claim_due_heartbeats(
        "replica-1", now=reflected, claim_until=reflected + timedelta(minutes=10), limit=5
    )
    for due in claimed:
        await store.finish_heartbeat(due, fired_at=reflected + timedelta(seconds=20), tokens=1_830)
    await store.schedule_heartbeat(general.id, due_at=NOW + timedelta(hours=5), scope="discord:G1")
    await store.update_agent(team.id, AgentUpdate(is_paused=True), expected_version=team.version)
    await _usage(world)
    await store.append_audit(
        AuditEntry(
            at=NOW - timedelta(days=1),
            scope="discord:G1",
            actor_id="A1",
            actor_name="Ada",
            action="edit_block",
            agent_id=general.id,
            detail="label=human chars=40",
        )
    )


async def _usage(world: World) -> None:
    """30 days of tokens: G1 busy (over its budget twice), T1 quieter, DMs a little."""
    agents = world.agents
    plan = [
        ("discord:G1", "C1", agents["discord:G1:channel:C1"].id, 9_000),
        ("discord:G1", None, agents["discord:G1:user:U7"].id, 4_000),
        ("slack:T1", "C9", agents["slack:T1:channel:C9"].id, 6_000),
        (None, None, agents["discord:dm:U8"].id, 1_500),
    ]
    today = NOW.date()
    for back in range(30):
        day: date = today - timedelta(days=back)
        for scope, channel, agent_id, base in plan:
            wave = 1 + ((back * 7 + len(agent_id)) % 10) / 10
            spike = 4 if scope == "discord:G1" and back in (3, 11) else 1
            tokens = int(base * wave * spike)
            await world.store.record_usage(
                UsageRecord(
                    day=day,
                    scope=scope,
                    channel=channel,
                    agent_id=agent_id,
                    user_id="discord:u1",
                    model=MODEL,
                    prompt_tokens=tokens * 9 // 10,
                    completion_tokens=tokens // 10,
                    calls=max(1, tokens // 2_000),
                )
            )


@asynccontextmanager
async def serving(world: World) -> AsyncIterator[str]:
    """The ops server with the console, on a free loopback port; yields its base URL."""

    async def never_probed() -> None:
        return None

    readiness = Readiness(
        store=world.store,
        components=(),
        llm=LLMReadiness(window_s=0, last_success=lambda: None, note_success=lambda: None, probe=never_probed),
        timeout_s=2,
    )
    server = OpsServer(host="127.0.0.1", port=0, readiness=readiness, registry=CollectorRegistry(), console=world.app())
    task = asyncio.create_task(server.run())
    try:
        async with asyncio.timeout(10):
            await server.wait_serving()
        yield f"http://127.0.0.1:{server.bound_port}"
    finally:
        await server.close()
        await asyncio.wait_for(task, 10)


@dataclass
class Reply:
    status: int
    text: str
    headers: Any

    @property
    def location(self) -> str | None:
        location = self.headers.get("Location")
        return str(location) if location is not None else None

    def csrf(self) -> str:
        found = re.search(r'name="csrf" value="([^"]+)"', self.text)
        assert found, "the page has no CSRF field"
        return found.group(1)


@dataclass
class Client:
    """A browser's view of the console: cookies kept, redirects not followed."""

    base: str
    session: aiohttp.ClientSession

    async def get(self, path: str, **kwargs: Any) -> Reply:
        async with self.session.get(self.base + path, allow_redirects=False, **kwargs) as response:
            return Reply(response.status, await response.text(), response.headers)

    async def post(self, path: str, data: dict[str, str], **kwargs: Any) -> Reply:
        async with self.session.post(self.base + path, data=data, allow_redirects=False, **kwargs) as response:
            return Reply(response.status, await response.text(), response.headers)

    async def login(self, token: str = TOKEN) -> Reply:
        return await self.post("/console/login", {"token": token})

    def cookie(self) -> str | None:
        for cookie in self.session.cookie_jar:
            if cookie.key == "membot_console":
                return cookie.value
        return None


@asynccontextmanager
async def client(base: str) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield Client(base=base, session=session)
