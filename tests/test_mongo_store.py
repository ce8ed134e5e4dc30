"""MongoStore behaviour the contract suite cannot see: indexes, schema, connection trouble, bad data."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from mongoeco.wire.auth import WireAuthUser
from pymongo import AsyncMongoClient
from pymongo.monitoring import CommandFailedEvent, CommandListener, CommandStartedEvent, CommandSucceededEvent

from bot.errors import LeaseLostError, NotFoundError, SchemaVersionError, StoreError
from bot.memory.mongo import MongoStore
from bot.memory.mongo import schema as mongo_schema
from bot.memory.mongo.schema import SCHEMA_VERSION
from bot.memory.policy_store import AuditEntry, Policy
from bot.memory.runtime_store import WRITE_FENCE, Fence, InboxEntry
from bot.memory.store import AgentRecord, AgentUpdate, CoreBlock, NewMessage, NewPassage
from tests.contract.mongo_backend import REAL_MONGODB_URI, WireServer, open_mongo_store, shared_uri

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def agent(agent_id: str = "agent-1", name: str | None = None) -> AgentRecord:
    return AgentRecord(
        id=agent_id,
        name=name or agent_id,
        conversation_key=f"discord:{agent_id}",
        persona_template="sam",
        human_template="human",
        model="m",
        created_at=T0,
        updated_at=T0,
    )


def block(agent_id: str, label: str, value: str) -> CoreBlock:
    return CoreBlock(agent_id=agent_id, label=label, value=value, limit=100, version=1, updated_at=T0)


def msg(content: str, minutes: int = 0, speaker: str | None = "Ann", platform_id: str | None = None) -> NewMessage:
    return NewMessage(
        role="user",
        content=content,
        created_at=T0 + timedelta(minutes=minutes),
        tokens=3,
        speaker_name=speaker,
        platform_message_id=platform_id,
    )


@contextmanager
def fenced(agent_id: str, token: int) -> Iterator[None]:
    reset = WRITE_FENCE.set(Fence(agent_id=agent_id, token=token))
    try:
        yield
    finally:
        WRITE_FENCE.reset(reset)


@asynccontextmanager
async def opened(database: str) -> AsyncIterator[MongoStore]:
    store = MongoStore(shared_uri(), database=database, connect_timeout_s=3)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def raw_db(uri: str, database: str) -> tuple[AsyncMongoClient[dict[str, Any]], Any]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri, serverSelectionTimeoutMS=3000)
    return client, client[database]


@pytest.fixture
async def wire() -> AsyncIterator[WireServer]:
    """A private wire server, for tests that stop it, add users or set fail points."""
    server = WireServer()
    server.start()
    yield server
    server.stop()


# -- every query has an index ------------------------------------------------------------------


class Recorder(CommandListener):
    def __init__(self) -> None:
        self.commands: list[dict[str, Any]] = []

    def started(self, event: CommandStartedEvent) -> None:
        self.commands.append(dict(event.command))

    def succeeded(self, event: CommandSucceededEvent) -> None:
        pass

    def failed(self, event: CommandFailedEvent) -> None:
        pass


def _equalities(query: dict[str, Any]) -> set[str]:
    return {
        k for k, v in query.items() if not k.startswith("$") and (not isinstance(v, dict) or set(v) <= {"$eq", "$in"})
    }


def _is_backed(query: dict[str, Any], sort: dict[str, Any], keys: list[str]) -> bool:
    """An index serves the query when it leads with equality fields, then the sort (or one range field)."""
    equal, i = _equalities(query), 0
    while i < len(keys) and keys[i] in equal:
        i += 1
    rest = keys[i:]
    if sort:  # the sort follows the equalities; without any, it leads with the range field
        return list(sort) == rest[: len(sort)] and (i > 0 or not query or rest[0] in query)
    return i > 0 or (bool(rest) and rest[0] in query)


def _queries(commands: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(collection, filter, sort) of every read or targeted write the store sent."""
    found = []
    for c in commands:
        name = next(iter(c))
        if name == "find":
            if not c.get("filter") and not c.get("sort") and c.get("limit") == 1:
                continue  # "is there any document?": the first one answers
            found.append((c["find"], c.get("filter", {}), c.get("sort", {})))
        elif name == "findAndModify":
            found.append((c["findAndModify"], c.get("query", {}), c.get("sort", {})))
        elif name in ("update", "delete"):
            key = "updates" if name == "update" else "deletes"
            found.extend((c[name], op["q"], {}) for op in c[key])
        elif name == "aggregate" and c["pipeline"] and "$match" in c["pipeline"][0]:
            found.append((c["aggregate"], c["pipeline"][0]["$match"], {}))
        elif name == "count":
            found.append((c["count"], c.get("query", {}), {}))
    return [(coll, q, s) for coll, q, s in found if coll in _COLLECTIONS]


_COLLECTIONS = (
    "meta", "agents", "blocks", "messages", "passages", "inbox", "leases", "heartbeats", "policies", "audit",
)  # fmt: skip


async def _use_the_runtime_half(store: MongoStore) -> None:
    """Every RuntimeStore method, and every memory write under a fence, on agent-1."""
    entry = InboxEntry(id="e1", keys=("d:1",), agent_id="agent-1", payload="{}", received_at=T0)
    await store.inbox_put(entry)
    await store.inbox_put(InboxEntry(id="e2", keys=("d:1",), agent_id="agent-1", payload="{}", received_at=T0))
    await store.inbox_pending()
    await store.inbox_pending(agent_id="agent-1")
    await store.inbox_record_reply("e1", "r1")
    await store.inbox_finish(["e1"], status="done")
    await store.inbox_prune(older_than=T0 + timedelta(days=1))
    minute = timedelta(minutes=1)
    await store.lease_acquire("agent-1", "r1", now=T0, expires_at=T0 + minute)
    lease = await store.lease_acquire("agent-1", "r2", now=T0 + minute, expires_at=T0 + 2 * minute)
    assert lease is not None
    await store.lease_renew(lease, expires_at=T0 + 3 * minute)
    await store.lease_check("agent-1", lease.token)
    with fenced("agent-1", lease.token):
        await store.append_messages("agent-1", [msg("fenced", platform_id="d:1")])
        await store.write_block("agent-1", "persona", "v3", limit=100, expected_version=2)
        await store.write_block("agent-1", "persona", "v4", limit=100, expected_version=3, messages=[msg("m")])
        current = await store.get_agent("agent-1")
        assert current is not None
        await store.update_agent("agent-1", AgentUpdate(summary="f"), expected_version=current.version)
        [pid] = await store.insert_passages("agent-1", [NewPassage(text="fenced fact", created_at=T0)])
        await store.set_passage_embedding(pid, [1.0, 0.0], "e")
        await store.delete_messages_from("agent-1", 100)
    await store.lease_release(lease)
    await store.recorded_platform_ids("agent-1", ["d:1", "d:2"])
    await store.schedule_heartbeat("agent-1", due_at=T0)
    await store.heartbeat_state("agent-1")
    [due] = await store.claim_due_heartbeats("r1", now=T0, claim_until=T0 + minute, limit=5)
    await store.finish_heartbeat(due, fired_at=T0, tokens=1)
    await store.cancel_heartbeat("agent-1")


async def _use_the_policy_half(store: MongoStore) -> None:
    """Every PolicyStore method, with and without a channel and with every audit filter."""
    for channel in (None, "c1"):
        await store.set_policy(Policy(scope="discord:1", channel=channel, updated_at=T0))
        await store.get_policy("discord:1", channel)
    await store.list_policies("discord:1")
    await store.delete_policy("discord:1", "c1")
    await store.delete_policy("discord:1", None)
    entry = AuditEntry(at=T0, scope="discord:1", actor_id="u1", actor_name="Ann", action="reset", agent_id="agent-1")
    await store.append_audit(entry)
    for scope, agent_id in ((None, None), ("discord:1", None), (None, "agent-1"), ("discord:1", "agent-1")):
        await store.list_audit(scope=scope, agent_id=agent_id)


async def test_every_query_the_store_sends_is_backed_by_an_index() -> None:
    recorder = Recorder()
    async with open_mongo_store(client_options={"event_listeners": [recorder]}) as store:
        await store.create_agent(agent(), [block("agent-1", "persona", "I am Sam.")])
        await store.get_agent("agent-1")
        await store.get_agent_by_name("agent-1")
        await store.get_agent_by_conversation("discord:agent-1")
        await store.list_agents()
        created = await store.update_agent("agent-1", AgentUpdate(summary="s"), expected_version=1)
        await store.write_block("agent-1", "persona", "v2", limit=100, expected_version=1, messages=[msg("edited")])
        await store.get_blocks("agent-1")
        await store.append_messages("agent-1", [msg("running in the park", 1), msg("cats", 2)])
        await store.get_messages("agent-1", from_seq=2, limit=10)
        await store.get_messages_before("agent-1", before_seq=3, limit=2)
        await store.search_messages("agent-1", "run park")
        await store.messages_between("agent-1", T0, T0 + timedelta(hours=1))
        ids = await store.insert_passages(
            "agent-1", [NewPassage(text="a fact", created_at=T0, embedding=(1.0, 0.0), embedding_model="e")]
        )
        await store.list_passages("agent-1")
        await store.search_passages_text("agent-1", "fact")
        await store.search_passages_vector("agent-1", [1.0, 0.0], embedding_model="e")
        await store.passages_without_embedding("agent-1", "other", limit=5)
        await store.set_passage_embedding(ids[0], [0.0, 1.0], "e")
        await _use_the_runtime_half(store)
        await _use_the_policy_half(store)
        with fenced("agent-1", 99):
            await store.delete_messages_by_speaker("agent-1", "u-1")
            await store.delete_messages_from("agent-1", 3)
            await store.delete_passages("agent-1")
            await store.delete_blocks("agent-1")
        await store.delete_agent(created.id)
        client, db = await raw_db(shared_uri(), store._database)
        try:
            indexes = {
                name: [list(info["key"]) for info in (await db[name].index_information()).values()]
                for name in _COLLECTIONS
            }
            queries = _queries(recorder.commands)
            assert len(queries) > 90
            assert {coll for coll, _, _ in queries} == set(_COLLECTIONS)
            unbacked = [
                (coll, q, s)
                for coll, q, s in queries
                if not any(_is_backed(q, s, [k for k, _ in keys]) for keys in indexes[coll])
            ]
            assert unbacked == [], "\n".join(map(str, unbacked))
            if REAL_MONGODB_URI:  # mongoeco's explain has no query planner to check
                for coll, q, s in queries:
                    plan = await db.command({"explain": {"find": coll, "filter": q, "sort": s}})
                    assert "COLLSCAN" not in str(plan["queryPlanner"]["winningPlan"]), (coll, q)
        finally:
            await client.close()


async def test_open_creates_the_indexes_of_the_layout() -> None:
    async with open_mongo_store() as store:
        client, db = await raw_db(shared_uri(), store._database)
        try:
            for spec in mongo_schema.INDEXES:
                info = (await db[spec.collection].index_information())[spec.name]
                assert [tuple(k) for k in info["key"]] == list(spec.keys)
                assert bool(info.get("unique")) == spec.is_unique
        finally:
            await client.close()


# -- schema versions ---------------------------------------------------------------------------


async def _snapshot(db: Any) -> dict[str, Any]:
    names = sorted(await db.list_collection_names())
    return {n: (await db[n].find({}).to_list(), sorted(await db[n].index_information())) for n in names}


async def test_a_newer_schema_is_refused_and_nothing_is_written() -> None:
    database = "membot_test_newer_schema"
    client, db = await raw_db(shared_uri(), database)
    try:
        await db.meta.insert_one({"_id": "schema", "version": SCHEMA_VERSION + 1})
        before = await _snapshot(db)
        store = MongoStore(shared_uri(), database=database, connect_timeout_s=3)
        with pytest.raises(SchemaVersionError, match=r"newer than this membot understands"):
            await store.open()
        assert await _snapshot(db) == before
        with pytest.raises(StoreError, match="not open"):
            await store.get_agent("x")
    finally:
        await client.drop_database(database)
        await client.close()


async def test_an_older_layout_is_migrated_forward() -> None:
    """Version 0: documents without search terms or counters (pre-release builds, hand restores)."""
    database = "membot_test_old_schema"
    client, db = await raw_db(shared_uri(), database)
    try:
        doc = mongo_schema.agent_document(agent()) | {"num": 1}
        del doc["counters"]
        await db.agents.insert_one(doc)
        await db.messages.insert_many(
            [
                {
                    "agent_id": "agent-1",
                    "seq": i,
                    "role": "user",
                    "content": text,
                    "created_at_us": mongo_schema.to_us(T0),
                    "tokens": 1,
                }
                for i, text in enumerate(["I went running", "cats are nice", "a run in the rain"], start=1)
            ]
        )
        store = MongoStore(shared_uri(), database=database, connect_timeout_s=3)
        await store.open()
        try:
            assert await store.count_messages("agent-1") == 3
            found, total = await store.search_messages("agent-1", "runs")
            # 1 and 3 say it; 2 is found by its context (version 3 indexes the message before), last.
            assert total == 3
            assert {m.seq for m in found[:2]} == {1, 3} and found[2].seq == 2
            assert found[2].context == "I went running"
            assert [m.seq for m in await store.append_messages("agent-1", [msg("next")])] == [4]
        finally:
            await store.close()
        meta = await db.meta.find_one({"_id": "schema"})
        assert meta is not None
        assert meta["version"] == SCHEMA_VERSION
    finally:
        await client.drop_database(database)
        await client.close()


async def test_a_version_1_database_gains_the_runtime_and_policy_collections_and_fences() -> None:
    """Version 1: before the inbox, leases, heartbeats, policies, audit log, the agents' `fence` and
    the platform-id index."""
    database = "membot_test_schema_1"
    client, db = await raw_db(shared_uri(), database)
    try:
        async with opened(database) as store:
            await store.create_agent(agent(), [block("agent-1", "persona", "p")])
            await store.append_messages("agent-1", [msg("hello", platform_id="d:1"), msg("no id")])
        # Take the database back to what a version 1 membot left.
        for name in ("inbox", "leases", "heartbeats", "policies", "audit"):
            await db.drop_collection(name)
        await db.messages.drop_index("messages_by_platform_id")
        await db.agents.update_many({}, {"$unset": {"fence": ""}})
        await db.meta.update_one({"_id": "schema"}, {"$set": {"version": 1}})

        async with opened(database) as store:
            assert [m.content for m in await store.get_messages("agent-1")] == ["hello", "no id"]
            assert await store.recorded_platform_ids("agent-1", ["d:1", "d:2"]) == {"d:1"}
            entry = InboxEntry(id="e1", keys=("d:2",), agent_id="agent-1", payload="{}", received_at=T0)
            assert await store.inbox_put(entry)
            assert await store.inbox_pending() == [entry]
            await store.schedule_heartbeat("agent-1", due_at=T0)
            assert await store.heartbeat_state("agent-1") is not None
            minute = timedelta(minutes=1)
            await store.lease_acquire("agent-1", "r1", now=T0, expires_at=T0 + minute)
            await store.lease_acquire("agent-1", "r2", now=T0 + minute, expires_at=T0 + 2 * minute)
            with fenced("agent-1", 1), pytest.raises(LeaseLostError):
                await store.append_messages("agent-1", [msg("stale")])
            server = Policy(scope="discord:1", mode="per_user", updated_at=T0)
            await store.set_policy(server)
            assert await store.list_policies("discord:1") == [server]
            made = AuditEntry(at=T0, scope="discord:1", actor_id="u1", actor_name="Ann", action="reset")
            await store.append_audit(made)
            assert await store.list_audit(scope="discord:1") == [made]
        meta = await db.meta.find_one({"_id": "schema"})
        assert meta is not None
        assert meta["version"] == SCHEMA_VERSION == 3
        assert "messages_by_platform_id" in await db.messages.index_information()
        assert {"inbox_by_key", "inbox_by_status", "inbox_by_agent"} <= set(await db.inbox.index_information())
        assert "policies_by_key" in await db.policies.index_information()
        assert {"audit_by_time", "audit_by_scope", "audit_by_agent"} <= set(await db.audit.index_information())
        assert [d.get("fence") for d in await db.agents.find({}).to_list()] == [2]
    finally:
        await client.drop_database(database)
        await client.close()


# -- connection trouble ------------------------------------------------------------------------


@pytest.mark.parametrize("uri", ["http://localhost:27017", "mongodb://localhost:notaport", "mongodb://"])
async def test_a_malformed_uri_is_a_clear_store_error(uri: str) -> None:
    with pytest.raises(StoreError, match="invalid MongoDB URI"):
        await MongoStore(uri).open()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_server_down_at_start_fails_within_the_timeout_naming_the_host() -> None:
    port = _closed_port()
    started = time.monotonic()
    with pytest.raises(StoreError, match=rf"127\.0\.0\.1:{port}.*unreachable"):
        await MongoStore(f"mongodb://127.0.0.1:{port}/?directConnection=true", connect_timeout_s=0.5).open()
    assert time.monotonic() - started < 5


async def test_wait_for_server_retries_until_it_comes_up() -> None:
    server = WireServer(port=_closed_port())
    store = MongoStore(server.uri, database="membot_test_wait", connect_timeout_s=0.3, wait_for_server_s=20)
    loop = asyncio.get_running_loop()
    later = loop.call_later(0.8, server.start)
    try:
        await store.open()
        await store.create_agent(agent(), [])
        assert await store.get_agent("agent-1") is not None
    finally:
        later.cancel()
        await store.close()
        server.stop()


async def test_a_server_lost_mid_turn_fails_cleanly_and_nothing_is_half_written(tmp_path: Path) -> None:
    server = WireServer(engine="sqlite", path=tmp_path / "server.sqlite3", port=_closed_port())
    server.start()
    store = MongoStore(server.uri, database="membot_test_lost", connect_timeout_s=0.5)
    try:
        await store.open()
        await store.create_agent(agent(), [block("agent-1", "persona", "v1")])
        await store.append_messages("agent-1", [msg("one"), msg("two")])
        server.stop()
        started = time.monotonic()
        with pytest.raises(StoreError, match="unreachable"):
            await store.append_messages("agent-1", [msg("lost")])
        with pytest.raises(StoreError, match="unreachable"):
            await store.get_messages("agent-1")
        assert time.monotonic() - started < 10
        server.start()  # same file, same port: the server comes back
        assert [m.content for m in await store.get_messages("agent-1")] == ["one", "two"]
        assert [m.seq for m in await store.append_messages("agent-1", [msg("three")])] == [3]
        assert await store.count_messages("agent-1") == 3
    finally:
        await store.close()
        server.stop()


async def _fail(client: AsyncMongoClient[dict[str, Any]], command: str, namespace: str, code: int = 91) -> None:
    data = {"failCommands": [command], "errorCode": code, "namespace": namespace}
    await client.admin.command({"configureFailPoint": "failCommand", "mode": "alwaysOn", "data": data})


async def _no_fail(client: AsyncMongoClient[dict[str, Any]]) -> None:
    await client.admin.command({"configureFailPoint": "failCommand", "mode": "off"})


async def test_an_append_cut_before_its_commit_is_invisible_then_rolled_back(wire: WireServer) -> None:
    store = MongoStore(wire.uri, database="membot_test_cut")
    client, _ = await raw_db(wire.uri, "membot_test_cut")
    try:
        await store.open()
        await store.create_agent(agent(), [])
        await store.append_messages("agent-1", [msg("kept")])
        # The commit (and the rollback after it) is an update of the agent document: fail both.
        await _fail(client, "update", "membot_test_cut.agents")
        with pytest.raises(StoreError):
            await store.append_messages("agent-1", [msg("torn 1"), msg("torn 2")])
        await _no_fail(client)
        assert [m.content for m in await store.get_messages("agent-1")] == ["kept"]
        assert await store.count_messages("agent-1") == 1
        assert (await store.search_messages("agent-1", "torn"))[1] == 0
        stored = await store.append_messages("agent-1", [msg("next")])
        assert [m.seq for m in stored] == [2]
        assert [m.content for m in await store.get_messages("agent-1")] == ["kept", "next"]
    finally:
        await client.close()
        await store.close()


async def test_a_write_block_cut_after_the_block_is_completed_with_its_messages(
    wire: WireServer, caplog: pytest.LogCaptureFixture
) -> None:
    store = MongoStore(wire.uri, database="membot_test_cut_block")
    client, _ = await raw_db(wire.uri, "membot_test_cut_block")
    try:
        await store.open()
        await store.create_agent(agent(), [block("agent-1", "human", "old")])
        await _fail(client, "update", "membot_test_cut_block.agents")
        with pytest.raises(StoreError):
            await store.write_block("agent-1", "human", "new", limit=100, expected_version=1, messages=[msg("noted")])
        await _no_fail(client)
        caplog.set_level(logging.WARNING)
        # The next write of the agent settles it: the block changed, so its record goes in too.
        await store.append_messages("agent-1", [msg("later")])
        assert [m.content for m in await store.get_messages("agent-1")] == ["noted", "later"]
        assert [(b.value, b.version) for b in await store.get_blocks("agent-1")] == [("new", 2)]
        assert "completing a write_block" in caplog.text
    finally:
        await client.close()
        await store.close()


async def test_transactions_are_used_only_where_the_server_has_them(wire: WireServer) -> None:
    auto = MongoStore(wire.uri, database="membot_test_txn")
    forced = MongoStore(wire.uri, database="membot_test_txn", transactions="always")
    try:
        await auto.open()
        await forced.open()
        assert not auto.uses_transactions  # the wire server says it is standalone
        assert forced.uses_transactions
        await forced.create_agent(agent(), [])
        await forced.write_block("agent-1", "persona", "x", limit=10, expected_version=0, messages=[msg("m")])
        assert [m.content for m in await auto.get_messages("agent-1")] == ["m"]
    finally:
        await auto.close()
        await forced.close()


# -- fencing ------------------------------------------------------------------------------------


async def _taken_over(store: MongoStore) -> None:
    """agent-1 leased by r1 (token 1), then taken over by r2 (token 2)."""
    await store.create_agent(agent(), [block("agent-1", "persona", "p")])
    minute = timedelta(minutes=1)
    assert await store.lease_acquire("agent-1", "r1", now=T0, expires_at=T0 + minute) is not None
    assert await store.lease_acquire("agent-1", "r2", now=T0 + minute, expires_at=T0 + 2 * minute) is not None


async def test_a_stale_writer_leaves_the_holders_cut_append_alone(wire: WireServer) -> None:
    store = MongoStore(wire.uri, database="membot_test_fence_settle")
    client, db = await raw_db(wire.uri, "membot_test_fence_settle")
    try:
        await store.open()
        await _taken_over(store)
        await _fail(client, "update", "membot_test_fence_settle.agents")
        with fenced("agent-1", 2), pytest.raises(StoreError):
            await store.append_messages("agent-1", [msg("cut before its commit")])
        await _no_fail(client)
        cut = (await db.agents.find_one({"_id": "agent-1"}))["counters"]
        assert (cut["messages_allocated"], cut["messages_committed"]) == (1, 0)

        # The stale writer neither settles the holder's append nor writes.
        with fenced("agent-1", 1), pytest.raises(LeaseLostError):
            await store.append_messages("agent-1", [msg("stale")])
        assert (await db.agents.find_one({"_id": "agent-1"}))["counters"] == cut

        with fenced("agent-1", 2):
            assert [m.seq for m in await store.append_messages("agent-1", [msg("holder")])] == [1]
        assert [m.content for m in await store.get_messages("agent-1")] == ["holder"]
    finally:
        await client.close()
        await store.close()


async def test_a_takeover_whose_fence_copy_failed_fences_once_it_claims_again(wire: WireServer) -> None:
    store = MongoStore(wire.uri, database="membot_test_fence_copy")
    client, db = await raw_db(wire.uri, "membot_test_fence_copy")
    minute = timedelta(minutes=1)
    try:
        await store.open()
        await store.create_agent(agent(), [])
        assert await store.lease_acquire("agent-1", "r1", now=T0, expires_at=T0 + minute) is not None
        await _fail(client, "update", "membot_test_fence_copy.agents")
        with pytest.raises(StoreError):  # r2 got the lease document but not the fence: it does not run
            await store.lease_acquire("agent-1", "r2", now=T0 + minute, expires_at=T0 + 2 * minute)
        await _no_fail(client)
        with fenced("agent-1", 1):  # so nobody else writes; r1 is not refused yet
            await store.append_messages("agent-1", [msg("r1, before r2 runs")])

        again = await store.lease_acquire("agent-1", "r2", now=T0 + minute, expires_at=T0 + 2 * minute)
        assert again is not None and again.token == 2
        with fenced("agent-1", 1), pytest.raises(LeaseLostError):
            await store.append_messages("agent-1", [msg("stale")])
        assert (await db.leases.find_one({"_id": "agent-1"}))["fenced"] == 2
    finally:
        await client.close()
        await store.close()


async def test_the_holder_claiming_again_does_not_touch_the_agent_document() -> None:
    recorder = Recorder()
    async with open_mongo_store(client_options={"event_listeners": [recorder]}) as store:
        await store.create_agent(agent(), [])
        minute = timedelta(minutes=1)
        lease = await store.lease_acquire("agent-1", "r1", now=T0, expires_at=T0 + minute)
        assert lease is not None
        await store.lease_release(lease)
        recorder.commands.clear()
        for n in range(3):
            await store.lease_acquire("agent-1", "r1", now=T0 + n * minute, expires_at=T0 + (n + 1) * minute)
        assert [next(iter(c)) for c in recorder.commands] == ["findAndModify"] * 3


async def test_with_transactions_the_fence_check_is_a_write_in_the_transaction() -> None:
    async with open_mongo_store(transactions="always") as store:
        await _taken_over(store)
        [pid] = await store.insert_passages("agent-1", [NewPassage(text="fact", created_at=T0)])
        with fenced("agent-1", 2):
            await store.write_block("agent-1", "persona", "holder", limit=100, expected_version=1)
        with fenced("agent-1", 1):
            with pytest.raises(LeaseLostError):
                await store.write_block("agent-1", "persona", "stale", limit=100, expected_version=2)
            with pytest.raises(LeaseLostError):
                await store.set_passage_embedding(pid, [1.0, 0.0], "e")
            with pytest.raises(LeaseLostError):
                await store.delete_blocks("agent-1")
        assert [(b.value, b.version) for b in await store.get_blocks("agent-1")] == [("holder", 2)]
        client, db = await raw_db(shared_uri(), store._database)
        try:
            assert (await db.agents.find_one({"_id": "agent-1"}))["fence_gate"] == 1
        finally:
            await client.close()


# -- credentials and rights --------------------------------------------------------------------


async def test_wrong_credentials_are_a_clear_error_without_the_password() -> None:
    server = WireServer(users=(WireAuthUser(username="membot", password="right"),))
    server.start()
    uri = f"mongodb://membot:wrong-secret@127.0.0.1:{server.port}/?directConnection=true&authSource=admin&authMechanism=SCRAM-SHA-256"
    try:
        with pytest.raises(StoreError, match="authentication failed") as caught:
            await MongoStore(uri, connect_timeout_s=2).open()
        assert "wrong-secret" not in str(caught.value)
        good = MongoStore(uri.replace("wrong-secret", "right"), database="membot_test_auth", connect_timeout_s=2)
        await good.open()
        await good.close()
    finally:
        server.stop()


async def test_a_user_without_write_rights_gets_a_clear_error(wire: WireServer) -> None:
    client, _ = await raw_db(wire.uri, "membot_test_rights")
    try:
        await _fail(client, "createIndexes", "membot_test_rights.agents", code=13)
        with pytest.raises(StoreError, match="readWrite"):
            await MongoStore(wire.uri, database="membot_test_rights").open()
    finally:
        await _no_fail(client)
        await client.close()


# -- bad data and awkward ids ------------------------------------------------------------------


async def test_hand_corrupted_documents_are_skipped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    async with open_mongo_store() as store:
        await store.create_agent(agent(), [block("agent-1", "persona", "p"), block("agent-1", "human", "h")])
        await store.create_agent(agent("agent-2"), [])
        await store.append_messages("agent-1", [msg("good one", 0), msg("broken", 1), msg("good two", 2)])
        await store.insert_passages("agent-1", [NewPassage(text="fact", created_at=T0)])
        client, db = await raw_db(shared_uri(), store._database)
        try:
            await db.messages.update_one({"agent_id": "agent-1", "seq": 2}, {"$set": {"role": 42}})
            await db.blocks.update_one({"label": "human"}, {"$unset": {"value": ""}})
            await db.agents.update_one({"_id": "agent-2"}, {"$set": {"name": ["not", "a", "name"]}})
            await db.passages.update_one({}, {"$set": {"created_at_us": "yesterday"}})
            await db.agents.update_one({"_id": "agent-1"}, {"$set": {"counters.messages_count": "three"}})
        finally:
            await client.close()
        caplog.set_level(logging.WARNING)
        assert [m.seq for m in await store.get_messages("agent-1")] == [1, 3]
        assert [b.label for b in await store.get_blocks("agent-1")] == ["persona"]
        assert [a.id for a in await store.list_agents()] == ["agent-1"]
        assert await store.get_agent("agent-2") is None
        assert await store.list_passages("agent-1") == []
        assert await store.count_messages("agent-1") == 3  # counters rebuilt from the documents
        assert [m.seq for m in (await store.search_messages("agent-1", "good broken"))[0]] == [3, 1]
        for text in ("malformed messages", "malformed blocks", "malformed agents", "malformed passages", "counters"):
            assert text in caplog.text


async def test_hand_corrupted_policy_and_audit_documents_are_skipped_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with open_mongo_store() as store:
        for channel in (None, "a", "b"):
            await store.set_policy(Policy(scope="s", channel=channel, updated_at=T0))
        for action in ("kept", "broken"):
            await store.append_audit(AuditEntry(at=T0, scope="s", actor_id="u1", actor_name="Ann", action=action))
        client, db = await raw_db(shared_uri(), store._database)
        try:
            await db.policies.update_one({"channel": "a"}, {"$set": {"mode": "per_moon"}})
            await db.policies.update_one({"channel": "b"}, {"$unset": {"updated_at_us": ""}})
            await db.audit.update_one({"action": "broken"}, {"$set": {"at_us": "last week"}})
        finally:
            await client.close()
        caplog.set_level(logging.WARNING)
        assert [p.channel for p in await store.list_policies("s")] == [None]
        assert await store.get_policy("s", "a") is None
        assert [e.action for e in await store.list_audit()] == ["kept"]
        assert "malformed policies" in caplog.text
        assert "bad fields: mode" in caplog.text
        assert "malformed audit" in caplog.text


async def test_set_policy_on_a_key_another_replica_just_created_replaces_it(wire: WireServer) -> None:
    """Two first upserts of one key at once: the loser's insert clashes on the unique index (here a
    fail point answers its upsert with one duplicate key error) and it updates the winner's instead."""
    database = "membot_test_policy_race"
    store = MongoStore(wire.uri, database=database)
    client, _ = await raw_db(wire.uri, database)
    try:
        await store.open()
        await store.set_policy(Policy(scope="s", channel="c", updated_at=T0))  # the winner's
        data = {"failCommands": ["update"], "errorCode": 11000, "namespace": f"{database}.policies"}
        await client.admin.command({"configureFailPoint": "failCommand", "mode": {"times": 1}, "data": data})
        ours = Policy(scope="s", channel="c", mode="per_user", persona="sam", updated_at=T0 + timedelta(seconds=1))
        await store.set_policy(ours)
        assert await store.list_policies("s") == [ours]
    finally:
        await _no_fail(client)
        await store.close()
        await client.close()


async def test_ids_with_dollar_and_dot_are_plain_values() -> None:
    odd = "$where.{}.agent"
    async with open_mongo_store() as store:
        await store.create_agent(agent(odd, name="a.b$c"), [block(odd, "per.so$na", "x")])
        assert (await store.get_agent(odd)) == agent(odd, name="a.b$c")
        assert (await store.get_agent_by_name("a.b$c")) is not None
        await store.append_messages(odd, [msg("dollar $and dot.s", speaker="$set")])
        assert (await store.search_messages(odd, "dollar"))[1] == 1
        await store.write_block(odd, "per.so$na", "y", limit=10, expected_version=1)
        assert [b.value for b in await store.get_blocks(odd)] == ["y"]
        assert await store.get_messages("$where") == []
        await store.delete_agent(odd)
        assert await store.get_agent(odd) is None
        with pytest.raises(NotFoundError):
            await store.append_messages(odd, [msg("gone")])


async def test_vector_search_falls_back_to_numpy_on_a_server_without_search(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with open_mongo_store() as store:
        assert store.vector_search_mode == ("fallback" if not REAL_MONGODB_URI else store.vector_search_mode)
        await store.create_agent(agent(), [])
        await store.insert_passages(
            "agent-1",
            [
                NewPassage(text="east", created_at=T0, embedding=(1.0, 0.0), embedding_model="e"),
                NewPassage(text="north", created_at=T0, embedding=(0.0, 1.0), embedding_model="e"),
                NewPassage(text="other model", created_at=T0, embedding=(1.0, 0.0), embedding_model="f"),
            ],
        )
        found, total = await store.search_passages_vector("agent-1", [0.9, 0.1], embedding_model="e")
        assert total == 2
        assert [p.text for p in found] == ["east", "north"]
        assert found[0].score == pytest.approx(0.9 / (0.82**0.5), abs=1e-6)
    if not REAL_MONGODB_URI:
        assert "numpy fallback" in caplog.text
