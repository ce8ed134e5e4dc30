"""The A2A app in process (httpx.ASGITransport), driven by the a2a-sdk client and by AG2's A2A
client; membot's turns go through a real runtime and answer through the scripted LLM server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from a2a.client import Client, ClientConfig, create_client
from a2a.server.context import ServerCallContext
from a2a.types import Message, Part, Role, SendMessageRequest, StreamResponse, Task, TaskState
from ag2 import Agent
from ag2.a2a import A2AConfig

from bot.app import open_app
from bot.events import InboundMessage, ReplySink
from bot.interop.a2a import A2AServer, RecentTaskStore, build_a2a_app
from bot.interop.a2a_replies import PLATFORM, PendingReplies, reply_route
from bot.memory.store import AgentUpdate
from bot.runtime import FinishedTurn, Runtime
from tests.fakes.llm_server import Computed, Delayed, FakeLLMServer, http_error
from tests.interop.conftest import Membot, reply, search, settings_for

BASE = "http://membot.test"
TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class A2AWorld:
    membot: Membot
    runtime: Runtime
    app: Any

    def http(self, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url=BASE, headers=AUTH if headers is None else headers
        )

    async def client(self, http: httpx.AsyncClient, *, streaming: bool = False) -> Client:
        return await create_client(
            f"{BASE}/a2a/sam", client_config=ClientConfig(httpx_client=http, streaming=streaming)
        )


@contextlib.asynccontextmanager
async def a2a_world(llm_server: FakeLLMServer, tmp_path: Path, a2a: dict[str, Any]) -> AsyncIterator[A2AWorld]:
    """membot with agent "sam" exposed over A2A by `a2a` settings, its app served in process."""
    settings = settings_for(llm_server, tmp_path, a2a={"agents": ["sam"], **a2a})
    async with open_app(settings) as app:
        membot = Membot(app=app, server=llm_server)
        await membot.create("sam")
        runtime = Runtime(store=app.store, loop=app.loop, sinks={})
        server = A2AServer(runtime=runtime, directory=app.directory, settings=settings.a2a)
        await runtime.start()
        asgi = await build_a2a_app(
            runtime=runtime, directory=app.directory, settings=settings.a2a, replies=server.replies
        )
        try:
            yield A2AWorld(membot=membot, runtime=runtime, app=asgi)
        finally:
            await runtime.stop(deadline_s=5)


@pytest.fixture
async def world(llm_server: FakeLLMServer, tmp_path: Path) -> AsyncIterator[A2AWorld]:
    a2a = {
        "token": TOKEN,
        "callers": {"planner": "planner-token", "critic": "critic-token"},
        "public_url": BASE,
        "max_message_chars": 500,
    }
    async with a2a_world(llm_server, tmp_path, a2a) as built:
        yield built


def message(context: str, *parts: tuple[str | None, str]) -> SendMessageRequest:
    """A user message of one text part per (speaker, text); speaker None: the caller speaks."""
    return SendMessageRequest(
        message=Message(
            message_id=uuid.uuid4().hex,
            context_id=context,
            role=Role.ROLE_USER,
            parts=[Part(text=text, metadata={"speaker_name": who} if who else None) for who, text in parts],
        )
    )


async def send(client: Client, request: SendMessageRequest) -> list[StreamResponse]:
    return [response async for response in client.send_message(request)]


def text_of(message: Message) -> str:
    return "".join(p.text for p in message.parts)


async def test_one_request_is_one_message_its_parts_labelled_by_speaker(world: A2AWorld) -> None:
    world.membot.server.enqueue(reply("Lisbon and Alfama, noted."), reply("You're welcome."), reply("Two lines."))
    async with world.http() as http:
        client = await world.client(http)
        first = await send(
            client, message("trip", ("ada", "Let's meet in Lisbon on May 3rd."), ("bob", "I'll book Alfama."))
        )
        second = await send(client, message("trip", (None, "Thanks!")))
        third = await send(client, message("trip", ("ada", "One."), ("ada", "Two.")))

    assert [r.WhichOneof("payload") for r in first] == ["message"]
    assert first[0].message.role == Role.ROLE_AGENT
    assert first[0].message.context_id == "trip"
    assert text_of(first[0].message) == "Lisbon and Alfama, noted."
    assert text_of(second[0].message) == "You're welcome."
    assert text_of(third[0].message) == "Two lines."
    assert await world.membot.said_to("sam") == [
        ("A2A caller", "ada: Let's meet in Lisbon on May 3rd.\n\nbob: I'll book Alfama."),
        ("A2A caller", "Thanks!"),
        ("ada", "One.\n\nTwo."),
    ]
    assert len(world.membot.server.chat_requests) == 3, "each request cost one turn of one step"


async def test_a_thousand_parts_are_refused_and_nothing_is_recorded(world: A2AWorld) -> None:
    parts = [{"text": f"part {i}", "metadata": {"speaker_name": f"s{i}"}} for i in range(1000)]
    body = rpc("SendMessage", {"message": {"messageId": "m1", "role": "ROLE_USER", "parts": parts}})
    async with world.http({**AUTH, **VERSION}) as http:
        response = await http.post("/a2a/sam/", json=body)

    error = response.json()["error"]
    assert "1000 parts; this server takes at most 100" in error["message"]
    assert await world.membot.said_to("sam") == []
    assert world.membot.server.chat_requests == []


async def test_streaming_reports_work_then_completes_with_the_reply(world: A2AWorld) -> None:
    world.membot.server.enqueue(reply("Streaming hello."))
    async with world.http() as http:
        client = await world.client(http, streaming=True)
        responses = await send(client, message("stream", ("ada", "hi there")))

    kinds = [r.WhichOneof("payload") for r in responses]
    assert kinds[0] == "task"
    states = [r.status_update.status.state for r in responses if r.WhichOneof("payload") == "status_update"]
    assert states == [TaskState.TASK_STATE_WORKING, TaskState.TASK_STATE_COMPLETED]
    assert text_of(responses[-1].status_update.status.message) == "Streaming hello."
    assert await world.membot.said_to("sam") == [("ada", "hi there")]


async def test_a_fact_said_in_one_context_is_found_from_another(world: A2AWorld) -> None:
    world.membot.server.enqueue(reply("Noted."), search("code word"), reply("It was PELICAN."))
    async with world.http() as http:
        client = await world.client(http)
        await send(client, message("kickoff", ("writer", "The launch code word is PELICAN.")))
        answer = await send(client, message("later", ("ops", "What was the code word?")))

    assert text_of(answer[0].message) == "It was PELICAN."
    assert any("The launch code word is PELICAN." in r for r in world.membot.tool_results(-1))


async def test_ag2_agents_talk_to_membot_over_a2a_each_as_its_caller(world: A2AWorld) -> None:
    world.membot.server.enqueue(reply("Lisbon, noted."), reply("August is hot, true."), reply("Booked."))

    def as_caller(token: str) -> A2AConfig:
        return A2AConfig(
            card_url=f"{BASE}/a2a/sam", httpx_client_factory=lambda: world.http({"Authorization": f"Bearer {token}"})
        )

    planner = Agent("planner", config=as_caller("planner-token"))
    critic = Agent("critic", config=as_caller("critic-token"))

    proposal = await planner.ask("We meet in Lisbon.")
    objection = await critic.ask("Lisbon is too hot in August.")
    follow_up = await proposal.ask("Then book it for May.")

    assert [proposal.body, objection.body, follow_up.body] == ["Lisbon, noted.", "August is hot, true.", "Booked."]
    assert await world.membot.said_to("sam") == [
        ("planner", "We meet in Lisbon."),
        ("critic", "Lisbon is too hot in August."),
        ("planner", "Then book it for May."),
    ]
    assert len(world.membot.server.chat_requests) == 3, "each reply cost one turn of one step"


def rpc(method: str, params: object) -> dict[str, object]:
    return {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}


def send_params(text: str) -> dict[str, object]:
    return {"message": {"messageId": uuid.uuid4().hex, "role": "ROLE_USER", "parts": [{"text": text}]}}


VERSION = {"A2A-Version": "1.0"}


@pytest.mark.parametrize(
    ("path", "headers", "body", "status", "expected"),
    [
        ("/a2a/nobody/", {**AUTH, **VERSION}, rpc("SendMessage", send_params("hi")), 404, "no agent named 'nobody'"),
        ("/a2a/sam/", VERSION, rpc("SendMessage", send_params("hi")), 401, "missing bearer token"),
        (
            "/a2a/sam/",
            {"Authorization": "Bearer nope", **VERSION},
            rpc("SendMessage", send_params("hi")),
            401,
            "wrong bearer token",
        ),
        ("/a2a/sam/", {**AUTH, **VERSION}, rpc("SendMessage", send_params("x" * 501)), 200, "at most 500"),
        ("/a2a/sam/", {**AUTH, **VERSION}, "{not json", 200, None),
        ("/a2a/sam/", {**AUTH, **VERSION}, rpc("SendMessage", {"message": {"role": "ROLE_USER"}}), 200, None),
        (
            "/a2a/sam/",
            {**AUTH, **VERSION},
            rpc("SendMessage", {"message": {"messageId": "m1", "role": "ROLE_USER", "parts": [{"raw": "AAAA"}]}}),
            200,
            "no text part",
        ),
        ("/a2a/sam/", {**AUTH, **VERSION}, rpc("SendMessage", [1, 2]), 200, None),
    ],
)
async def test_bad_requests_get_a_protocol_error_and_record_nothing(
    world: A2AWorld, path: str, headers: dict[str, str], body: object, status: int, expected: str | None
) -> None:
    async with world.http(headers) as http:
        if isinstance(body, str):
            response = await http.post(path, content=body, headers={"Content-Type": "application/json"})
        else:
            response = await http.post(path, json=body)

    assert response.status_code == status
    error = response.json()["error"]
    assert isinstance(error["code"], int) and error["message"]
    if expected is not None:
        assert expected in error["message"]
    assert await world.membot.said_to("sam") == []
    assert await world.membot.app.store.inbox_pending(limit=10) == []
    assert world.membot.server.chat_requests == []


@pytest.fixture
async def open_world(llm_server: FakeLLMServer, tmp_path: Path) -> AsyncIterator[A2AWorld]:
    """A server without a token: allowed on loopback, for local callers only."""
    async with a2a_world(llm_server, tmp_path, {}) as built:
        yield built


@pytest.mark.parametrize(
    ("client", "headers"),
    [
        (("203.0.113.7", 40000), {}),
        (("127.0.0.1", 40000), {"X-Forwarded-For": "203.0.113.7"}),
        (("127.0.0.1", 40000), {"Forwarded": "for=203.0.113.7;proto=https"}),
        (("127.0.0.1", 40000), {"X-Real-IP": "203.0.113.7"}),
    ],
)
async def test_without_a_token_only_local_callers_are_answered(
    open_world: A2AWorld, client: tuple[str, int], headers: dict[str, str]
) -> None:
    transport = httpx.ASGITransport(app=open_world.app, client=client)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
        refused = await http.post(
            "/a2a/sam/", json=rpc("SendMessage", send_params("hi")), headers={**VERSION, **headers}
        )
        card = await http.get("/a2a/sam/.well-known/agent-card.json", headers=headers)

    assert refused.status_code == 401
    assert "MEMBOT_A2A__TOKEN" in refused.json()["error"]["message"]
    assert card.status_code == 200, "cards stay public"
    assert await open_world.membot.said_to("sam") == []


async def test_without_a_token_a_local_caller_is_answered(open_world: A2AWorld) -> None:
    open_world.membot.server.enqueue(reply("hello, neighbour"))
    async with open_world.http({}) as http:
        client = await open_world.client(http)
        answer = await send(client, message("local", (None, "hi")))
    assert text_of(answer[0].message) == "hello, neighbour"


async def test_cards_are_public_and_name_the_bearer_scheme(world: A2AWorld) -> None:
    async with world.http({}) as http:
        card = (await http.get("/a2a/sam/.well-known/agent-card.json")).json()
        missing = await http.get("/a2a/nobody/.well-known/agent-card.json")

    assert card["name"] == "sam"
    assert card["supportedInterfaces"][0]["url"] == f"{BASE}/a2a/sam/"
    assert card["capabilities"]["streaming"] is True
    assert "bearer" in card["securitySchemes"]
    assert missing.status_code == 404


class RecordingPlatform:
    """A chat platform on the same runtime: what its users were sent."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def sink(self, message: InboundMessage) -> ReplySink:
        platform = self

        class Sink:
            async def send(self, text: str) -> str | None:
                platform.sent.append(text)
                return f"chat-{len(platform.sent)}"

            async def typing(self) -> None:
                pass

        return Sink()


async def test_an_a2a_turn_never_overlaps_a_platform_turn_of_the_same_agent(world: A2AWorld) -> None:
    platform = RecordingPlatform()
    world.runtime.register_sink("chat", platform.sink)
    started = asyncio.Event()
    world.membot.server.enqueue(
        Computed(lambda _request: (started.set(), Delayed(seconds=0.3, then=reply("to the chat")))[1]),
        reply("to the A2A caller"),
    )
    chat_message = InboundMessage(
        platform="chat",
        conversation_key="chat:room",
        speaker_id="u1",
        speaker_name="carol",
        text="Hello from the chat room.",
        sent_at=datetime.now(UTC),
        platform_message_id="chat-1",
    )
    agent_id = await world.membot.agent_id("sam")
    assert await world.runtime.submit(agent_id, chat_message, keys=["chat:1"])
    await asyncio.wait_for(started.wait(), 10)
    async with world.http() as http:
        answer = await send(
            await world.client(http), message("trip", ("ada", "Hello over A2A."), ("bob", "Me too, over A2A."))
        )

    assert platform.sent == ["to the chat"]
    assert text_of(answer[0].message) == "to the A2A caller"
    assert len(world.membot.server.chat_requests) == 2, "both parts of the A2A message were answered in one turn"
    second_prompt = json.dumps(world.membot.server.chat_requests[1].body["messages"])
    assert "to the chat" in second_prompt, "the A2A turn started after the chat turn had answered"
    assert "Me too, over A2A." in second_prompt
    assert await world.membot.said_to("sam") == [
        ("carol", "Hello from the chat room."),
        ("A2A caller", "ada: Hello over A2A.\n\nbob: Me too, over A2A."),
    ]


async def test_when_the_llm_fails_the_caller_gets_the_apology_and_the_message_is_kept(world: A2AWorld) -> None:
    world.membot.server.enqueue(http_error(500))
    async with world.http() as http:
        answer = await send(await world.client(http), message("trip", ("ada", "Are you there?")))

    assert "can't reach my language model" in text_of(answer[0].message)
    assert await world.membot.said_to("sam") == [("ada", "Are you there?")]


async def test_a_paused_agent_answers_with_a_clear_error(world: A2AWorld) -> None:
    agent = await world.membot.app.directory.require(await world.membot.agent_id("sam"))
    await world.membot.app.store.update_agent(agent.id, AgentUpdate(is_paused=True), expected_version=agent.version)
    async with world.http() as http:
        response = await http.post("/a2a/sam/", json=rpc("SendMessage", send_params("hello?")), headers=VERSION)

    assert "paused" in response.json()["error"]["message"]
    assert world.membot.server.chat_requests == []


def inbound(request_id: str, message_id: str, context: str) -> InboundMessage:
    return InboundMessage(
        platform=PLATFORM,
        conversation_key=f"a2a:sam:{context}",
        speaker_id="a2a:x",
        speaker_name="x",
        text="hi",
        sent_at=datetime.now(UTC),
        platform_message_id=message_id,
        reply_route=reply_route(request_id),
    )


async def test_requests_merged_into_one_turn_all_get_their_conversations_reply() -> None:
    replies = PendingReplies()
    early = replies.open("r1", conversation_key="a2a:sam:trip", platform_ids=["m1"])
    late = replies.open("r2", conversation_key="a2a:sam:trip", platform_ids=["m2"])
    elsewhere = replies.open("r3", conversation_key="a2a:sam:other", platform_ids=["m3"])
    turn = [inbound("r1", "m1", "trip"), inbound("r3", "m3", "other"), inbound("r2", "m2", "trip")]

    await replies.sink(turn[-1]).send("Hello both!")
    replies.on_turn(FinishedTurn(agent_id="a", messages=tuple(turn)))

    assert early.done.is_set() and late.done.is_set() and elsewhere.done.is_set()
    assert early.texts == late.texts == ["Hello both!"]
    assert elsewhere.texts == [], "another conversation's reply is not shared"


async def test_a_body_over_the_cap_is_refused_before_it_is_read(world: A2AWorld) -> None:
    huge = json.dumps(rpc("SendMessage", send_params("x" * (5 << 20))))
    async with world.http() as http:
        response = await http.post("/a2a/sam/", content=huge, headers={**VERSION, "Content-Type": "application/json"})

    assert response.status_code == 413
    assert "request body is over" in response.json()["error"]["message"]
    assert await world.membot.said_to("sam") == []


async def test_the_task_store_keeps_only_the_newest_tasks() -> None:
    store = RecentTaskStore(limit=2)
    context = ServerCallContext()
    for task_id in ("t1", "t2", "t3"):
        await store.save(Task(id=task_id, context_id="c"), context)

    assert await store.get("t1", context) is None
    assert [t.id for t in [await store.get("t2", context), await store.get("t3", context)] if t] == ["t2", "t3"]
