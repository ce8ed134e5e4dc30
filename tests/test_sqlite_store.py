"""SQLite-only behaviour of `SQLiteStore`: the file on disk, migrations, hand-edited rows, ranking windows."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.errors import SchemaVersionError, StoreError
from bot.memory.policy_store import AuditEntry, Policy
from bot.memory.runtime_store import InboxEntry
from bot.memory.sqlite import SQLiteStore
from bot.memory.sqlite import schema as sqlite_schema
from bot.memory.sqlite.schema import SCHEMA_VERSION, match_expression
from bot.memory.store import AgentRecord, CoreBlock, NewMessage, NewPassage, StoredToolCall

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@asynccontextmanager
async def opened(path: Path, **options: int) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(path, **options)  # type: ignore[arg-type]
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def add_agent(store: SQLiteStore, agent_id: str = "agent-1") -> None:
    record = AgentRecord(
        id=agent_id,
        name=agent_id,
        conversation_key=None,
        persona_template="sam",
        human_template="basic",
        model="m",
        created_at=T0,
        updated_at=T0,
    )
    block = CoreBlock(agent_id=agent_id, label="persona", value="I am Sam.", limit=100, version=1, updated_at=T0)
    await store.create_agent(record, [block])


def msg(content: str, *, seconds: int = 0, **kwargs: object) -> NewMessage:
    return NewMessage(role="user", content=content, created_at=T0 + timedelta(seconds=seconds), tokens=1, **kwargs)  # type: ignore[arg-type]


def execute(path: Path, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Edit the file by hand, as an operator with the sqlite3 shell would."""
    with closing(sqlite3.connect(path)) as conn, conn:
        return conn.execute(sql, params).fetchall()


def files_in(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


# -- the file --------------------------------------------------------------------------------------------


async def test_open_creates_parents_and_a_wal_database(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "membot.sqlite3"
    async with opened(path) as store:
        await add_agent(store)
    assert execute(path, "PRAGMA journal_mode") == [("wal",)]
    assert execute(path, "SELECT value FROM meta WHERE key = 'schema_version'") == [(str(SCHEMA_VERSION),)]


async def test_reopen_persists_everything(tmp_path: Path) -> None:
    path = tmp_path / "membot.sqlite3"
    async with opened(path) as store:
        await add_agent(store)
        await store.append_messages("agent-1", [msg("the lake is frozen")])
        await store.insert_passages(
            "agent-1", [NewPassage(text="fact", created_at=T0, embedding=(1.0, 2.0), embedding_model="e")]
        )
    async with opened(path) as store:
        assert (await store.get_agent("agent-1")) is not None
        assert [b.value for b in await store.get_blocks("agent-1")] == ["I am Sam."]
        assert [m.seq for m in (await store.search_messages("agent-1", "frozen"))[0]] == [1]
        assert (await store.search_passages_vector("agent-1", [1.0, 2.0], embedding_model="e"))[1] == 1
        assert [m.seq for m in await store.append_messages("agent-1", [msg("next")])] == [2]


async def test_policies_and_the_audit_log_persist_across_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "membot.sqlite3"
    server, channel = Policy(scope="s", updated_at=T0), Policy(scope="s", channel="c", persona="p", updated_at=T0)
    entry = AuditEntry(at=T0, scope="s", actor_id="u1", actor_name="Ann", action="reset", agent_id="agent-1")
    async with opened(path) as store:
        await store.set_policy(channel)
        await store.set_policy(server)
        await store.append_audit(entry)
    async with opened(path) as store:
        assert await store.list_policies("s") == [server, channel]
        assert await store.list_audit() == [entry]
        await store.set_policy(server)  # still one server policy: the partial unique index came back with the file
        assert await store.list_policies("s") == [server, channel]


async def test_close_is_idempotent_and_a_closed_store_refuses_work(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "membot.sqlite3")
    await store.open()
    await store.close()
    await store.close()
    with pytest.raises(StoreError, match="not open"):
        await store.get_agent("agent-1")


async def test_a_newer_schema_is_refused_and_the_file_is_untouched(tmp_path: Path) -> None:
    path = tmp_path / "membot.sqlite3"
    async with opened(path) as store:
        await add_agent(store)
    execute(path, "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    before = files_in(tmp_path)

    with pytest.raises(SchemaVersionError) as error:
        await SQLiteStore(path).open()

    message = str(error.value)
    assert f"version {SCHEMA_VERSION + 1} found" in message and f"understands {SCHEMA_VERSION}" in message
    assert "upgrade membot" in message and "\n" not in message
    assert files_in(tmp_path) == before


async def test_an_older_schema_is_migrated_forward(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "membot.sqlite3"
    async with opened(path) as store:
        await add_agent(store)
        await store.append_messages("agent-1", [msg("kept across the upgrade")])
    monkeypatch.setattr(sqlite_schema, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    monkeypatch.setitem(sqlite_schema.MIGRATIONS, SCHEMA_VERSION, ("ALTER TABLE agents ADD COLUMN nickname TEXT",))

    async with opened(path) as store:
        assert [m.content for m in await store.get_messages("agent-1")] == ["kept across the upgrade"]
    assert execute(path, "SELECT value FROM meta WHERE key = 'schema_version'") == [(str(SCHEMA_VERSION + 1),)]
    assert execute(path, "SELECT id, nickname FROM agents") == [("agent-1", None)]


async def test_a_version_1_file_gains_the_runtime_and_policy_tables_and_the_platform_id_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "membot.sqlite3"
    with monkeypatch.context() as patch:
        patch.setattr(sqlite_schema, "SCHEMA_VERSION", 1)
        async with opened(path) as store:
            await add_agent(store)
    # Messages as version 1 wrote them (today's appends need columns of later versions).
    for seq, (text, platform_id) in enumerate([("hello", "d:1"), ("no id", None)], start=1):
        execute(
            path,
            "INSERT INTO messages (id, agent_num, seq, role, content, created_at, tokens, platform_message_id) "
            "VALUES (?, 1, ?, 'user', ?, ?, 1, ?)",
            (sqlite_schema.message_rowid(1, seq, "user"), seq, text, sqlite_schema.to_us(T0), platform_id),
        )
    assert execute(path, "SELECT value FROM meta WHERE key = 'schema_version'") == [("1",)]
    found = "SELECT name FROM sqlite_master WHERE name IN ('inbox', 'messages_platform_id', 'policies', 'audit')"
    assert execute(path, found) == []

    async with opened(path) as store:
        assert [m.content for m in await store.get_messages("agent-1")] == ["hello", "no id"]
        assert await store.recorded_platform_ids("agent-1", ["d:1", "d:2"]) == {"d:1"}
        entry = InboxEntry(id="e1", keys=("d:2",), agent_id="agent-1", payload="{}", received_at=T0)
        assert await store.inbox_put(entry)
        assert await store.inbox_pending() == [entry]
        assert (await store.lease_acquire("agent-1", "r1", now=T0, expires_at=T0 + timedelta(minutes=1))) is not None
        await store.schedule_heartbeat("agent-1", due_at=T0)
        assert (await store.heartbeat_state("agent-1")) is not None
        server = Policy(scope="discord:1", mode="per_user", proactive_channel="d:9", updated_at=T0)
        await store.set_policy(server)
        assert await store.list_policies("discord:1") == [server]
        entry_made = AuditEntry(at=T0, scope="discord:1", actor_id="u1", actor_name="Ann", action="reset")
        await store.append_audit(entry_made)
        assert await store.list_audit(scope="discord:1") == [entry_made]
    assert execute(path, "SELECT value FROM meta WHERE key = 'schema_version'") == [(str(SCHEMA_VERSION),)]
    assert execute(path, "SELECT name FROM sqlite_master WHERE name = 'policies_server'") == [("policies_server",)]
    plan = execute(
        path,
        "EXPLAIN QUERY PLAN SELECT platform_message_id FROM messages WHERE agent_num = 1 AND platform_message_id = 'd:1'",
    )
    assert any("messages_platform_id" in str(step[-1]) for step in plan)


async def test_a_schema_without_a_migration_path_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "membot.sqlite3"
    async with opened(path):
        pass
    monkeypatch.setattr(sqlite_schema, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(StoreError, match="no migration"):
        await SQLiteStore(path).open()
    assert execute(path, "SELECT value FROM meta WHERE key = 'schema_version'") == [(str(SCHEMA_VERSION),)]


async def test_an_empty_sqlite_file_is_initialised(tmp_path: Path) -> None:
    path = tmp_path / "membot.sqlite3"
    path.touch()
    async with opened(path) as store:
        await add_agent(store)
        assert len(await store.list_agents()) == 1


@pytest.mark.parametrize(
    "content", [b"this is a text file, not a database\n" * 200, b"SQLite format 3\x00" + b"\xff" * 4000]
)
async def test_a_file_that_is_not_a_database_is_refused_untouched(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    with pytest.raises(StoreError, match="not a SQLite database"):
        await SQLiteStore(path).open()
    assert files_in(tmp_path) == {"notes.txt": content}


async def test_another_programs_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    execute(path, "CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    before = files_in(tmp_path)
    with pytest.raises(StoreError, match="not a membot store"):
        await SQLiteStore(path).open()
    assert files_in(tmp_path) == before


async def test_two_stores_on_one_file_wait_for_each_other(tmp_path: Path) -> None:
    path = tmp_path / "membot.sqlite3"
    async with opened(path) as first, opened(path) as second:
        await add_agent(first)
        await asyncio.gather(
            *(
                s.append_messages("agent-1", [msg(f"{i}-{j}") for j in range(50)])
                for i, s in enumerate([first, second] * 5)
            )
        )
        assert [m.seq for m in await first.get_messages("agent-1")] == list(range(1, 501))


async def test_full_text_indexes_stay_in_sync_with_their_rows(tmp_path: Path) -> None:
    path = tmp_path / "membot.sqlite3"
    async with opened(path) as store:
        for agent_id in ("agent-1", "agent-2"):
            await add_agent(store, agent_id)
            await store.append_messages(agent_id, [msg(f"lake number {i}", speaker_name="Ann") for i in range(20)])
            await store.insert_passages(agent_id, [NewPassage(text=f"lake fact {i}", created_at=T0) for i in range(5)])
        await store.delete_messages_from("agent-1", 10)
        await store.delete_passages("agent-1")
        await store.delete_agent("agent-2")
    execute(path, "UPDATE messages SET content = 'edited by hand' WHERE seq = 1")
    for table in ("messages_fts", "passages_fts"):
        execute(path, f"INSERT INTO {table} ({table}) VALUES ('integrity-check')")  # raises when out of sync
    async with opened(path) as store:
        assert (await store.search_messages("agent-1", "lake"))[1] == 8
        assert (await store.search_messages("agent-1", "edited"))[1] == 1
        assert (await store.search_passages_text("agent-1", "lake"))[1] == 0


# -- hand-edited rows ----------------------------------------------------------------------------------


async def test_malformed_rows_are_repaired_or_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "membot.sqlite3"
    call = StoredToolCall(id="c1", name="send_message", arguments="{}")
    async with opened(path) as store:
        await add_agent(store)
        await add_agent(store, "agent-2")
        await store.append_messages(
            "agent-1", [msg(f"lake message {i}", seconds=i, tool_calls=(call,)) for i in range(1, 7)]
        )
        await store.insert_passages("agent-1", [NewPassage(text=f"lake fact {i}", created_at=T0) for i in range(2)])
    execute(path, "UPDATE messages SET tool_calls = '{not json' WHERE seq = 1")
    execute(
        path,
        'UPDATE messages SET tool_calls = \'[{"id": 1}, {"id": "c2", "name": "n", "arguments": "{}"}]\' WHERE seq = 2',
    )
    execute(path, "UPDATE messages SET role = 'wizard' WHERE seq = 3")
    execute(path, "UPDATE messages SET created_at = 'yesterday' WHERE seq = 4")
    execute(path, "UPDATE messages SET content = X'6869', speaker_name = X'416E6E' WHERE seq = 5")
    execute(path, "UPDATE agents SET created_at = 'long ago' WHERE id = 'agent-2'")
    execute(path, "UPDATE core_blocks SET \"limit\" = 'plenty'")
    execute(path, "UPDATE passages SET created_at = 'someday' WHERE text = 'lake fact 0'")

    caplog.set_level(logging.WARNING, logger="bot.memory")
    async with opened(path) as store:
        messages = {m.seq: m for m in await store.get_messages("agent-1")}
        assert sorted(messages) == [1, 2, 5, 6]
        assert messages[1].tool_calls == ()
        assert messages[2].tool_calls == (StoredToolCall(id="c2", name="n", arguments="{}"),)
        assert (messages[5].content, messages[5].speaker_name) == ("hi", "Ann")
        assert messages[6].tool_calls == (call,)
        page, total = await store.search_messages("agent-1", "lake message", limit=10)
        assert ([m.seq for m in page], total) == ([6, 2, 1], 5)  # 3 left its role's range, 4 is unreadable
        assert len((await store.messages_between("agent-1", T0, T0 + timedelta(days=1), limit=10))[0]) == 4
        assert [a.id for a in await store.list_agents()] == ["agent-1"]
        assert await store.get_agent("agent-2") is None
        assert await store.get_blocks("agent-1") == []
        assert [p.text for p in await store.list_passages("agent-1")] == ["lake fact 1"]
        assert [p.text for p in (await store.search_passages_text("agent-1", "lake"))[0]] == ["lake fact 1"]

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("tool_calls" in w for w in warnings)
    assert any("malformed tool call" in w for w in warnings)
    assert any("unknown role" in w for w in warnings)
    assert any("content is bytes" in w for w in warnings)
    assert sum("skipping an unreadable row" in w for w in warnings) >= 5
    assert not any("lake message" in w for w in warnings)  # logs carry ids, never message text


async def test_vectors_of_the_wrong_size_are_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with opened(tmp_path / "membot.sqlite3") as store:
        await add_agent(store)
        await store.insert_passages(
            "agent-1", [NewPassage(text="three", created_at=T0, embedding=(1.0, 0.0, 0.0), embedding_model="e")]
        )
        await store.insert_passages(
            "agent-1", [NewPassage(text="two", created_at=T0, embedding=(1.0, 0.0), embedding_model="e")]
        )
        page, total = await store.search_passages_vector("agent-1", [1.0, 0.0, 0.0], embedding_model="e")
    assert ([p.text for p in page], total) == (["three"], 1)
    assert any("wrong size" in r.getMessage() for r in caplog.records)


async def test_malformed_policy_and_audit_rows_are_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "membot.sqlite3"
    async with opened(path) as store:
        for channel in (None, "a", "b"):
            await store.set_policy(Policy(scope="s", channel=channel, updated_at=T0))
        for action in ("kept", "broken"):
            await store.append_audit(AuditEntry(at=T0, scope="s", actor_id="u1", actor_name="Ann", action=action))
    execute(path, "UPDATE policies SET updated_at = 'recently' WHERE channel = 'a'")
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("PRAGMA ignore_check_constraints = ON")  # an operator who turned the check off
        conn.execute("UPDATE policies SET mode = 'per_moon' WHERE channel = 'b'")
    execute(path, "UPDATE audit SET at = 'last week' WHERE action = 'broken'")

    caplog.set_level(logging.WARNING, logger="bot.memory")
    async with opened(path) as store:
        assert [p.channel for p in await store.list_policies("s")] == [None]
        assert await store.get_policy("s", "b") is None
        assert [e.action for e in await store.list_audit()] == ["kept"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("skipping an unreadable row" in w for w in warnings) == 4
    assert any("unknown routing mode" in w for w in warnings)


async def test_policy_and_audit_reads_seek_an_index_and_never_sort(tmp_path: Path) -> None:
    async with opened(tmp_path / "membot.sqlite3") as store:
        statements: list[str] = []
        await store._run("autocommit", lambda conn: conn.set_trace_callback(statements.append))
        await store.set_policy(Policy(scope="s", updated_at=T0))
        await store.set_policy(Policy(scope="s", channel="c", updated_at=T0))
        await store.get_policy("s", None)
        await store.get_policy("s", "c")
        await store.list_policies("s")
        await store.delete_policy("s", "c")
        await store.delete_policy("s", None)
        await store.append_audit(AuditEntry(at=T0, scope="s", actor_id="u", actor_name="U", action="a", agent_id="x"))
        for scope, agent_id in ((None, None), ("s", None), (None, "x"), ("s", "x")):
            await store.list_audit(scope=scope, agent_id=agent_id)
        await store._run("autocommit", lambda conn: conn.set_trace_callback(None))

    reads = [s for s in statements if s.startswith(("SELECT", "DELETE")) and ("policies" in s or "audit" in s)]
    assert len(reads) == 9
    for sql in reads:
        plan = " | ".join(str(step[-1]) for step in execute(tmp_path / "membot.sqlite3", f"EXPLAIN QUERY PLAN {sql}"))
        assert "USING INDEX" in plan or "USING COVERING INDEX" in plan, (sql, plan)
        assert "TEMP B-TREE" not in plan, (sql, plan)


# -- search ----------------------------------------------------------------------------------------------


async def test_rank_windows_keep_totals_exact_and_every_match_reachable(tmp_path: Path) -> None:
    texts = [("lake " * (1 + i % 3)).strip() + " filler" * (3 - i % 3) for i in range(14)]
    async with (
        opened(tmp_path / "exact.sqlite3") as exact,
        opened(tmp_path / "windowed.sqlite3", rank_window=4) as windowed,
    ):
        for store in (exact, windowed):
            await add_agent(store)
            await store.append_messages("agent-1", [msg(t, seconds=i) for i, t in enumerate(texts)])
            await store.append_messages(
                "agent-1", [NewMessage(role="assistant", content="lake", created_at=T0, tokens=1)] * 3
            )
        best = [m.seq for m in (await exact.search_messages("agent-1", "lake", limit=100))[0]]
        pages = [await windowed.search_messages("agent-1", "lake", offset=o, limit=3) for o in range(0, 18, 3)]

    assert len(best) == 17
    assert {total for _, total in pages} == {17}
    seen = [m.seq for page, _ in pages for m in page]
    assert sorted(seen) == sorted(best)
    assert seen != best  # the windows did change the order
    # Each window holds the next 4 newest matches, best first.
    for start in range(0, 17, 4):
        window = set(range(17 - start, max(0, 13 - start), -1))
        assert seen[start : start + 4] == [s for s in best if s in window]


def test_match_expression_quotes_words_and_drops_syntax() -> None:
    assert match_expression('NEAR(lake* AND "run" -cold)') == '"NEAR" OR "lake" OR "run" OR "cold"'
    assert match_expression("The lake, the LAKE and the Lake!") == '"lake"'
    assert match_expression("café naïve") == '"café" OR "naïve"'
    assert match_expression("") is None
    assert match_expression("?!* \"' -- ()") is None
    assert match_expression("the and of") is None
    assert match_expression(" ".join(f"w{i}" for i in range(100))) == " OR ".join(f'"w{i}"' for i in range(32))
