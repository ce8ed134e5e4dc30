"""Privacy on both stores (SQLite, and MongoDB through mongoeco and the real pymongo driver):
`membot agents export USER` and `membot agents forget USER` through the real CLI, and recall
retention (old messages summarised by the scripted LLM, then deleted) with its periodic sweep."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import openai
import pytest

from bot.agent.directory import AgentDirectory
from bot.agent.llm import OpenAIChatModel
from bot.agent.loop import AgentLoop
from bot.agent.options import shipped_options
from bot.agent.retention import RecallRetention, RetentionSweep
from bot.agent.tokens import TokenCounter
from bot.cli import main
from bot.memory.runtime_store import InboxEntry
from bot.memory.sqlite import SQLiteStore
from bot.memory.store import AgentUpdate, NewMessage, NewPassage, StoredToolCall
from bot.runtime import Runtime, RuntimeOptions, Store
from bot.scheduler import HeartbeatScheduler, SchedulerOptions
from tests.fakes.llm_fixtures import SleepRecorder
from tests.fakes.llm_server import FakeLLMServer, TextReply, ToolCallReply, tool_call

MODEL = "gpt-4o-mini"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
CANARY_ID = "90001"  # the user to forget (a Discord user id)
OTHER_ID = "90002"
CANARY = "okapi-marmalade-canary"  # a word only the canary user ever wrote or was described with


# -- the two stores, opened the way the CLI opens them -----------------------------------------------


@dataclass
class Backend:
    kind: str
    env: dict[str, str]
    path: Path | None = None
    uri: str = ""
    database: str = ""

    @asynccontextmanager
    async def opened(self) -> AsyncIterator[Store]:
        store: Store
        if self.path is not None:
            store = SQLiteStore(self.path)
        else:
            from bot.memory.mongo import MongoStore

            store = MongoStore(self.uri, database=self.database)
        await store.open()
        try:
            yield store
        finally:
            await store.close()


@pytest.fixture(params=["sqlite", "mongodb"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Backend]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MEMBOT_DATA_DIR", str(tmp_path / "data"))
    if request.param == "sqlite":
        path = tmp_path / "data" / "membot.sqlite3"
        yield Backend(kind="sqlite", env={}, path=path)
        return
    from tests.contract.mongo_backend import shared_uri

    uri, database = shared_uri(), f"privacy_{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("MONGODB_URI", uri)
    monkeypatch.setenv("MEMBOT_STORE__MONGODB_DATABASE", database)
    yield Backend(kind="mongodb", env={}, uri=uri, database=database)
    asyncio.run(drop_database(uri, database))


async def drop_database(uri: str, database: str) -> None:
    from pymongo import AsyncMongoClient

    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(uri, serverSelectionTimeoutMS=5000)
    try:
        await client.drop_database(database)
    finally:
        await client.close()


def said(text: str, speaker_id: str | None, name: str | None, *, at: datetime = NOW) -> NewMessage:
    role = "user" if speaker_id else "assistant"
    return NewMessage(
        role=role, content=text, created_at=at, tokens=len(text.split()), speaker_id=speaker_id, speaker_name=name
    )


async def seed(store: Store) -> dict[str, str]:
    """The canary user's DM agent and per-user agent (all three tiers), their messages in a shared
    channel agent beside another user's, and the other user's own DM agent."""
    directory = AgentDirectory(store, core_block_limit=2000)
    ids: dict[str, str] = {}
    for name, key, human in (
        ("dm-canary", f"discord:dm:{CANARY_ID}", f"Name: Zed. Secret word: {CANARY}."),
        ("per-user-canary", f"discord:777:user:{CANARY_ID}", f"Zed likes {CANARY}."),
        ("shared", "discord:777:channel:555", "A channel of the Oak server."),
        ("dm-other", f"discord:dm:{OTHER_ID}", "Name: Ola."),
    ):
        agent = await directory.create(
            name=name, persona="I am Sam.", human=human, persona_template="sam", human_template="basic", model=MODEL,
            conversation_key=key,
        )  # fmt: skip
        ids[name] = agent.id
    for name in ("dm-canary", "per-user-canary"):
        await store.append_messages(
            ids[name],
            [said(f"remember {CANARY} for me", CANARY_ID, "Zed"), said("I will keep it safe.", None, "Sam")],
        )
        await store.insert_passages(ids[name], [NewPassage(text=f"Zed's secret word is {CANARY}.", created_at=NOW)])
    await store.append_messages(
        ids["shared"],
        [
            said("good morning everyone", OTHER_ID, "Ola"),
            said(f"my word is {CANARY}", CANARY_ID, "Zed"),
            said("Morning, Ola and Zed!", None, "Sam"),
            said(f"also {CANARY} twice", CANARY_ID, "Zed"),
        ],
    )
    await store.append_messages(ids["dm-other"], [said("hello sam", OTHER_ID, "Ola"), said("Hi Ola!", None, "Sam")])
    await store.insert_passages(ids["dm-other"], [NewPassage(text="Ola likes tea.", created_at=NOW)])
    return ids


async def traces(store: Store, text: str, user_id: str) -> list[str]:
    """Everything in any tier of any agent that holds `text` or was written by `user_id`."""
    found: list[str] = []
    for agent in await store.list_agents(limit=1000):
        if (agent.conversation_key or "").endswith(f":{user_id}"):
            found.append(f"agent {agent.name}")
        found += [f"{agent.name} core {b.label}" for b in await store.get_blocks(agent.id) if text in b.value]
        for m in await store.get_messages(agent.id):
            if text in m.content or m.speaker_id == user_id:
                found.append(f"{agent.name} recall {m.seq}")
        if (await store.search_messages(agent.id, text))[1]:
            found.append(f"{agent.name} recall search")
        found += [f"{agent.name} archival" for p in await store.list_passages(agent.id) if text in p.text]
        if (await store.search_passages_text(agent.id, text))[1]:
            found.append(f"{agent.name} archival search")
    return found


def test_forget_removes_every_trace_of_a_user_from_all_three_tiers(
    backend: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    async def prepare() -> dict[str, str]:
        async with backend.opened() as store:
            ids = await seed(store)
            assert len(await traces(store, CANARY, CANARY_ID)) > 8
            return ids

    ids = asyncio.run(prepare())

    assert main(["agents", "forget", CANARY_ID]) == 2  # refuses without -y
    assert "add -y to confirm" in capsys.readouterr().err
    assert main(["agents", "forget", CANARY_ID, "-y"]) == 0
    out = capsys.readouterr().out
    assert "2 agent(s) deleted, 2 message(s) deleted from 1 shared agent(s)" in out

    async def check() -> None:
        async with backend.opened() as store:
            assert await traces(store, CANARY, CANARY_ID) == []
            assert await store.get_agent(ids["dm-canary"]) is None
            assert await store.get_agent(ids["per-user-canary"]) is None
            assert await store.count_passages(ids["dm-canary"]) == 0
            shared = [(m.speaker_name, m.content) for m in await store.get_messages(ids["shared"])]
            assert shared == [("Ola", "good morning everyone"), ("Sam", "Morning, Ola and Zed!")]
            assert await store.count_messages(ids["dm-other"]) == 2
            assert await store.count_passages(ids["dm-other"]) == 1
            (entry,) = await store.list_audit()
            assert (entry.action, entry.scope) == ("forget_user", None)
            assert entry.actor_id.startswith("cli:")
            assert f"user={CANARY_ID}" in entry.detail and "agents_deleted=2" in entry.detail

    asyncio.run(check())


def test_export_a_user_or_an_agent_as_json(
    backend: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async def prepare() -> None:
        async with backend.opened() as store:
            await seed(store)

    asyncio.run(prepare())
    out = tmp_path / "zed.json"

    assert main(["agents", "export", CANARY_ID, "--out", str(out)]) == 0  # no agent has that name: a user
    assert f"Wrote {out}" in capsys.readouterr().out

    exported = json.loads(out.read_text(encoding="utf-8"))
    assert exported["format"] == "membot-user-export" and exported["user_id"] == CANARY_ID
    assert sorted(a["agent"]["name"] for a in exported["agents"]) == ["dm-canary", "per-user-canary"]
    (shared,) = exported["shared_messages"]
    assert [m["content"] for m in shared["messages"]] == [f"my word is {CANARY}", f"also {CANARY} twice"]

    assert main(["agents", "export", "dm-other"]) == 0
    agent = json.loads(capsys.readouterr().out)
    assert agent["format"] == "membot-agent-export"
    assert [m["content"] for m in agent["messages"]] == ["hello sam", "Hi Ola!"]

    assert main(["agents", "export", "nobody-at-all"]) == 2
    assert "no agent and no user 'nobody-at-all'" in capsys.readouterr().err

    async def audited() -> list[str]:
        async with backend.opened() as store:
            return [e.action for e in await store.list_audit()]

    assert sorted(asyncio.run(audited())) == ["dump", "export_user", "export_user"]


# -- retention -----------------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "mongodb"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        sqlite = SQLiteStore(tmp_path / "membot.sqlite3")
        await sqlite.open()
        try:
            yield sqlite
        finally:
            await sqlite.close()
        return
    from tests.contract.mongo_backend import open_mongo_store

    async with open_mongo_store() as mongo:
        yield mongo


@dataclass
class Bot:
    store: Store
    loop: AgentLoop
    agent_id: str
    sent: list[str] = field(default_factory=list)

    async def send(self, text: str) -> str | None:
        self.sent.append(text)
        return None

    async def typing(self) -> None:
        pass


@pytest.fixture
async def bot(store: Store, openai_client: openai.AsyncOpenAI, sleeps: SleepRecorder) -> Bot:
    loop = AgentLoop(
        store=store,
        model=OpenAIChatModel(client=openai_client, model=MODEL, max_retries=0, sleep=sleeps),
        counter=TokenCounter(model=MODEL),
        embedder=None,
        options=shipped_options(context_window=16_000, max_output_tokens=1_000),
        clock=lambda: NOW,
    )
    agent = await AgentDirectory(store, core_block_limit=2000).create(
        name="sam", persona="I am Sam.", human="Ada.", persona_template="sam", human_template="basic", model=MODEL
    )
    return Bot(store=store, loop=loop, agent_id=agent.id)


def days_ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


async def history(bot: Bot) -> None:
    """Seqs 1-2 summarised long ago; 3-6 old but still in the context (5 calls a function at the
    cut-off, 6 is its result, just inside the period); 7-8 recent."""
    store = bot.store
    await store.append_messages(
        bot.agent_id,
        [
            said("ancient greeting", "u-ada", "Ada", at=days_ago(90)),
            said("ancient answer", None, "Sam", at=days_ago(90)),
            said("my cat is called Pixel", "u-ada", "Ada", at=days_ago(45)),
            said("Pixel is a lovely name.", None, "Sam", at=days_ago(45)),
            NewMessage(
                role="assistant", content="", created_at=days_ago(30.01), tokens=5,
                tool_calls=(StoredToolCall(id="c1", name="archival_memory_insert", arguments='{"content": "x"}'),),
            ),
            NewMessage(
                role="tool", content='{"status": "OK"}', created_at=days_ago(29.99), tokens=5,
                tool_call_id="c1", tool_name="archival_memory_insert",
            ),
            said("what is new?", "u-ada", "Ada", at=days_ago(2)),
            said("Not much!", None, "Sam", at=days_ago(2)),
        ],
    )  # fmt: skip
    agent = await store.get_agent(bot.agent_id)
    assert agent is not None
    await store.update_agent(
        bot.agent_id,
        AgentUpdate(summary="Ada said hello long ago.", context_start_seq=3),
        expected_version=agent.version,
    )


async def test_retention_summarises_old_context_then_deletes_old_messages_and_keeps_recent_ones(
    bot: Bot, llm_server: FakeLLMServer
) -> None:
    await history(bot)
    llm_server.enqueue(TextReply(text="Ada said hello long ago. Her cat is called Pixel."))
    retention = RecallRetention(
        store=bot.store, compactor=bot.loop.compactor, keep_for=timedelta(days=30), clock=lambda: NOW
    )

    report = await retention.apply(bot.agent_id)

    assert (report.summarised, report.deleted) == (2, 4)  # 3-4 folded now; 1-4 deleted; 5-6 stay together
    (request,) = llm_server.chat_requests
    prompt = request.body["messages"][-1]["content"]
    assert "Previous summary:\nAda said hello long ago." in prompt
    assert "my cat is called Pixel" in prompt and "Pixel is a lovely name." in prompt
    assert "ancient" not in prompt and "what is new?" not in prompt and "archival_memory_insert" not in prompt
    agent = await bot.store.get_agent(bot.agent_id)
    assert agent is not None
    assert (agent.summary, agent.context_start_seq) == ("Ada said hello long ago. Her cat is called Pixel.", 5)
    kept = await bot.store.get_messages(bot.agent_id)
    assert [(m.seq, m.role) for m in kept] == [(5, "assistant"), (6, "tool"), (7, "user"), (8, "assistant")]
    assert (await bot.store.search_messages(bot.agent_id, "Pixel"))[1] == 0

    # A second run finds nothing more to do and asks the LLM nothing.
    again = await retention.apply(bot.agent_id)
    assert (again.summarised, again.deleted) == (0, 0)


async def test_after_everything_expired_the_next_message_is_in_the_context(bot: Bot, llm_server: FakeLLMServer) -> None:
    await history(bot)
    llm_server.enqueue(TextReply(text="Ada has a cat called Pixel."))
    retention = RecallRetention(
        store=bot.store, compactor=bot.loop.compactor, keep_for=timedelta(days=1), clock=lambda: NOW
    )
    report = await retention.apply(bot.agent_id)
    assert (report.summarised, report.deleted) == (6, 8)
    assert await bot.store.count_messages(bot.agent_id) == 0

    llm_server.enqueue(ToolCallReply(calls=(tool_call("send_message", {"message": "Still here."}),)))
    from bot.events import InboundMessage

    await bot.loop.run_turn(
        bot.agent_id,
        [InboundMessage(platform="test", conversation_key="c", speaker_id="u-ada", speaker_name="Ada", text="are you there?", sent_at=NOW)],
        reply=bot,
    )  # fmt: skip

    assert bot.sent == ["Still here."]
    turn = llm_server.chat_requests[-1].body["messages"]
    assert "Ada has a cat called Pixel." in turn[0]["content"]
    assert any("are you there?" in str(m["content"]) for m in turn[1:])
    assert min(m.seq for m in await bot.store.get_messages(bot.agent_id)) == 9


async def test_the_sweep_prunes_answered_inbox_entries_and_skips_busy_agents(
    bot: Bot, store: Store, llm_server: FakeLLMServer
) -> None:
    await history(bot)
    busy = await AgentDirectory(store, core_block_limit=2000).create(
        name="busy", persona="I am Busy.", human="", persona_template="sam", human_template="basic", model=MODEL
    )
    await store.append_messages(busy.id, [said("an old one", "u-bob", "Bob", at=days_ago(60))])
    assert await store.lease_acquire(busy.id, "replica-b", now=NOW, expires_at=NOW + timedelta(hours=1))
    for name, received, status in (("old", days_ago(3), "done"), ("new", NOW, "done"), ("open", days_ago(3), None)):
        entry = InboxEntry(id=name, keys=(f"k-{name}",), agent_id=bot.agent_id, payload="{}", received_at=received)
        assert await store.inbox_put(entry)
        if status is not None:
            await store.inbox_finish([name], status="done")
    llm_server.enqueue(TextReply(text="Ada's cat is Pixel."))
    changed: list[str] = []
    sweep = RetentionSweep(
        store=store,
        owner="replica-a",
        retention=RecallRetention(store=store, compactor=bot.loop.compactor, keep_for=timedelta(days=30), clock=lambda: NOW),
        inbox_keep=timedelta(hours=24),
        on_changed=changed.append,
        clock=lambda: NOW,
    )  # fmt: skip
    runtime = Runtime(store=store, loop=bot.loop, sinks={}, options=RuntimeOptions(owner="replica-a"))
    scheduler = HeartbeatScheduler(store=store, runtime=runtime, options=SchedulerOptions(), sweep=sweep.run)

    await scheduler.sweep()

    assert [e.id for e in await store.inbox_pending(limit=10)] == ["open"]
    assert (
        await store.inbox_put(
            InboxEntry(id="again", keys=("k-new",), agent_id=bot.agent_id, payload="{}", received_at=NOW)
        )
        is False
    )
    assert (
        await store.inbox_put(
            InboxEntry(id="again", keys=("k-old",), agent_id=bot.agent_id, payload="{}", received_at=NOW)
        )
        is True
    )
    assert await store.count_messages(bot.agent_id) == 4
    assert await store.count_messages(busy.id) == 1  # its lease is another replica's: left for the next sweep
    assert changed == [bot.agent_id]
    # The sweep's own lease is gone: the runtime can take the agent at once.
    assert await store.lease_acquire(bot.agent_id, "replica-a", now=NOW, expires_at=NOW + timedelta(minutes=1))


async def test_a_failed_summary_deletes_nothing(bot: Bot, llm_server: FakeLLMServer, store: Store) -> None:
    await history(bot)
    llm_server.enqueue(TextReply(text=""))  # an empty summary is refused
    sweep = RetentionSweep(
        store=store,
        owner="replica-a",
        retention=RecallRetention(store=store, compactor=bot.loop.compactor, keep_for=timedelta(days=30), clock=lambda: NOW),
        inbox_keep=timedelta(hours=24),
        clock=lambda: NOW,
    )  # fmt: skip

    report = await sweep.run()

    assert (report.agents_failed, report.agents) == (1, ())
    assert await store.count_messages(bot.agent_id) == 8
    agent = await store.get_agent(bot.agent_id)
    assert agent is not None and agent.context_start_seq == 3


def test_deleting_an_agent_from_the_shell_goes_through_the_audited_admin_service(
    backend: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    async def prepare() -> dict[str, str]:
        async with backend.opened() as store:
            ids = await seed(store)
            await store.schedule_heartbeat(ids["dm-other"], due_at=NOW)
            return ids

    ids = asyncio.run(prepare())

    assert main(["agents", "delete", "dm-other"]) == 2  # refuses without -y
    assert main(["agents", "delete", "dm-other", "-y"]) == 0
    assert "Deleted agent dm-other. Recorded in the audit log." in capsys.readouterr().out

    async def check() -> None:
        async with backend.opened() as store:
            assert await store.get_agent(ids["dm-other"]) is None
            assert await store.heartbeat_state(ids["dm-other"]) is None
            (entry,) = await store.list_audit()
            assert (entry.action, entry.agent_id, entry.scope) == ("reset_all", ids["dm-other"], None)
            assert entry.actor_id.startswith("cli:")

    asyncio.run(check())
