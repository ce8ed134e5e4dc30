"""`membot usage`: the table and the CSV, from usage stored in the SQLite file of the data dir."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from bot.agent.directory import AgentDirectory
from bot.cli import main
from bot.memory.sqlite import SQLiteStore
from bot.memory.usage_store import UsageRecord

DAY1 = date(2026, 5, 1)
DAY2 = date(2026, 5, 2)


def record(day: date, **fields: object) -> UsageRecord:
    values: dict[str, object] = {
        "scope": "discord:100",
        "channel": "200",
        "agent_id": "gone-agent",
        "user_id": "discord:7",
        "model": "gpt-4o-mini",
        "prompt_tokens": 1000,
        "completion_tokens": 50,
        "calls": 2,
    } | fields
    return UsageRecord(day=day, **values)  # type: ignore[arg-type]


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MEMBOT_DATA_DIR", str(tmp_path))

    async def fill() -> None:
        store = SQLiteStore(tmp_path / "membot.sqlite3")
        await store.open()
        try:
            agent = await AgentDirectory(store, core_block_limit=2000).create(
                name="discord:100:channel:200",
                persona="p",
                human="h",
                persona_template="sam",
                human_template="basic",
                model="gpt-4o-mini",
            )
            await store.record_usage(record(DAY1, agent_id=agent.id))
            await store.record_usage(record(DAY1, agent_id=agent.id, user_id="discord:8", prompt_tokens=500))
            await store.record_usage(record(DAY2, agent_id=agent.id))
            await store.record_usage(record(DAY2, scope=None, channel=None, user_id="discord:7", prompt_tokens=3))
        finally:
            await store.close()

    asyncio.run(fill())
    return tmp_path


def test_usage_csv_sums_per_day_server_channel_and_agent(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["usage", "--since", "2026-05-01", "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["day"], r["server"], r["channel"], r["agent"]) for r in rows] == [
        ("2026-05-01", "discord:100", "200", "discord:100:channel:200"),
        ("2026-05-02", "(dm)", "-", "gone-agent"),
        ("2026-05-02", "discord:100", "200", "discord:100:channel:200"),
    ]
    assert [(r["calls"], r["prompt_tokens"], r["completion_tokens"], r["total_tokens"]) for r in rows] == [
        ("4", "1500", "100", "1600"),
        ("2", "3", "50", "53"),
        ("2", "1000", "50", "1050"),
    ]


def test_usage_by_user_for_one_server(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["usage", "--since", "2026-05-01", "--by", "user", "--server", "discord:100", "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["user"], r["total_tokens"]) for r in rows] == [("discord:7", "2100"), ("discord:8", "550")]


def test_usage_table_has_a_row_per_group_and_a_total(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["usage", "--since", "2026-05-01", "--by", "day"]) == 0
    out = capsys.readouterr().out
    assert "LLM token usage, 2026-05-01 to" in out
    lines = [line for line in out.splitlines() if "2026-05-0" in line and "usage" not in line]
    assert len(lines) == 2
    assert "1,600" in lines[0]
    assert "1,103" in lines[1]
    total = next(line for line in out.splitlines() if "total" in line and "prompt" not in line)
    assert "2,703" in total


def test_days_counts_back_from_today(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MEMBOT_DATA_DIR", str(tmp_path))
    today = datetime.now(UTC).date()

    async def fill() -> None:
        store = SQLiteStore(tmp_path / "membot.sqlite3")
        await store.open()
        try:
            await store.record_usage(record(today, prompt_tokens=10, completion_tokens=1))
            await store.record_usage(record(date(2020, 1, 1), prompt_tokens=99, completion_tokens=0))
        finally:
            await store.close()

    asyncio.run(fill())
    assert main(["usage", "--days", "3", "--csv", "--by", "server"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    # Today's row (and never the one from 2020); a run that straddles midnight still sees it within 3 days.
    assert [(r["server"], r["total_tokens"]) for r in rows] == [("discord:100", "11")]


def test_no_usage_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MEMBOT_DATA_DIR", str(tmp_path))
    assert main(["usage"]) == 0
    assert "No LLM usage recorded" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["usage", "--by", "day,colour"], "--by takes a comma-separated list of: day, server"),
        (["usage", "--days", "0"], "--days must be at least 1"),
    ],
)
def test_bad_options_are_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    monkeypatch.setenv("MEMBOT_DATA_DIR", str(tmp_path))
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_a_bad_date_is_refused_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["usage", "--since", "May 1st"])
    assert "expected a date as YYYY-MM-DD" in capsys.readouterr().err


def test_usage_reads_a_mongodb_store(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from pymongo import AsyncMongoClient

    from bot.memory.mongo import MongoStore
    from tests.contract.mongo_backend import shared_uri

    uri, database = shared_uri(), f"membot_test_{uuid.uuid4().hex[:12]}"

    async def fill() -> None:
        store = MongoStore(uri, database=database, connect_timeout_s=5)
        await store.open()
        try:
            await store.record_usage(record(DAY1, prompt_tokens=70, completion_tokens=7))
        finally:
            await store.close()

    async def drop() -> None:
        client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(uri, serverSelectionTimeoutMS=5000)
        try:
            await client.drop_database(database)
        finally:
            await client.close()

    asyncio.run(fill())
    monkeypatch.setenv("MONGODB_URI", uri)
    monkeypatch.setenv("MEMBOT_STORE__MONGODB_DATABASE", database)
    try:
        assert main(["usage", "--since", "2026-05-01", "--by", "server,model", "--csv"]) == 0
    finally:
        asyncio.run(drop())
    assert list(csv.DictReader(io.StringIO(capsys.readouterr().out))) == [
        {
            "server": "discord:100",
            "model": "gpt-4o-mini",
            "calls": "2",
            "prompt_tokens": "70",
            "completion_tokens": "7",
            "total_tokens": "77",
        }
    ]
