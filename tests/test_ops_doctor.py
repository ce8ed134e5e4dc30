"""`membot doctor` end to end: the real CLI against the scripted LLM server (through the openai SDK),
the Discord and Slack emulators (over HTTP, at the configured API base URLs), SQLite and MongoDB
(mongoeco through pymongo). Each check prints ok, warn or fail with a fix; a fail exits 1."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
import yaml

from bot.cli import main
from bot.memory.sqlite import SQLiteStore
from bot.memory.sqlite.schema import SCHEMA_VERSION
from bot.ops.doctor_platforms import SLACK_BOT_SCOPES
from tests.fakes.discord_server import DiscordFake, Intent
from tests.fakes.llm_server import FakeLLMServer, RawReply, TextReply, ToolCallReply, http_error, tool_call
from tests.fakes.slack_api import BOT_SCOPES, FakeSlack

API_KEY = "sk-doctor-test-key-0123456789"


def ping() -> ToolCallReply:
    return ToolCallReply(calls=(tool_call("ping", {"ok": True}),))


@pytest.fixture
def env(tmp_path: Path, llm_server: FakeLLMServer, monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """An embedded store that exists, the scripted LLM endpoint, no platform yet."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_BASE_URL", llm_server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.setenv("MEMBOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MEMBOT_LLM__TIMEOUT_S", "5")

    async def create_store() -> None:
        store = SQLiteStore(tmp_path / "data" / "membot.sqlite3")
        await store.open()
        await store.close()

    asyncio.run(create_store())
    return monkeypatch


def doctor(capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, tuple[str, str]]]:
    """Run `membot doctor`; returns the exit code and, per check name, (status, rest of its lines)."""
    code = main(["doctor"])
    out = capsys.readouterr().out
    found: dict[str, tuple[str, str]] = {}
    current = ""
    for line in out.splitlines():
        status, _, rest = line.partition("  ")
        if status.strip() in ("ok", "warn", "fail"):
            name, _, detail = rest.strip().partition("  ")
            current = name.strip()
            found[current] = (status.strip(), detail.strip())
        elif line.strip().startswith("fix:") and current:
            found[current] = (found[current][0], found[current][1] + " | " + line.strip())
    assert " checks: " in out.rstrip().splitlines()[-1], out
    return code, found


@pytest.fixture
def slack(slack_fake: FakeSlack, env: pytest.MonkeyPatch) -> FakeSlack:
    env.setenv("SLACK_BOT_TOKEN", slack_fake.app.bot_token)
    env.setenv("SLACK_APP_TOKEN", slack_fake.app.app_token)
    env.setenv("MEMBOT_SLACK__API_BASE_URL", slack_fake.base_url)
    return slack_fake


@pytest.fixture
def discord(discord_fake: DiscordFake, env: pytest.MonkeyPatch) -> DiscordFake:
    env.setenv("DISCORD_TOKEN", discord_fake.token)
    env.setenv("MEMBOT_DISCORD__API_BASE_URL", discord_fake.urls.api_base_url)
    return discord_fake


def test_everything_configured_and_reachable_passes(
    env: pytest.MonkeyPatch,
    llm_server: FakeLLMServer,
    discord: DiscordFake,
    slack: FakeSlack,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env.setenv("MEMBOT_EMBEDDINGS__MODEL", "text-embedding-3-small")
    llm_server.enqueue(ping())

    code, checks = doctor(capsys)

    assert code == 0
    assert {name: status for name, (status, _) in checks.items()} == {
        "configuration": "ok",
        "retention": "ok",
        "Slack mode": "ok",
        "store": "ok",
        "LLM endpoint": "ok",
        "context window": "ok",
        "LLM completion": "ok",
        "embeddings": "ok",
        "Discord token": "ok",
        "Discord intents": "ok",
        "Slack bot token": "ok",
        "Slack scopes": "ok",
        "Slack app token": "ok",
    }
    assert f"schema version {SCHEMA_VERSION}, 0 agents" in checks["store"][1]
    assert "64 dimensions" in checks["embeddings"][1]
    assert checks["context window"][1] == "128000 tokens (the model's published window)"
    assert "membot" in checks["Discord token"][1]
    assert "Membot Test Workspace" in checks["Slack bot token"][1]
    (completion,) = llm_server.chat_requests
    assert [t["function"]["name"] for t in completion.body["tools"]] == ["ping"]
    assert completion.headers["Authorization"] == f"Bearer {API_KEY}"
    assert [call.method for call in slack.calls] == ["auth.test", "apps.connections.open"]


def test_nothing_listening_at_the_llm_endpoint_fails_with_a_fix(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{port}/v1")

    code, checks = doctor(capsys)

    assert code == 1
    status, text = checks["LLM endpoint"]
    assert status == "fail"
    assert "no answer from the endpoint" in text and "fix: start the server, or set OPENAI_BASE_URL" in text
    assert "LLM completion" not in checks  # not tried against an endpoint that is not there
    assert checks["platforms"][0] == "warn"


def test_a_model_the_endpoint_does_not_list_and_a_reply_without_a_function_call_warn(
    env: pytest.MonkeyPatch, llm_server: FakeLLMServer, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("MEMBOT_LLM__MODEL", "llama-3-nowhere")
    llm_server.enqueue(TextReply(text="pong"))

    code, checks = doctor(capsys)

    assert code == 0
    assert checks["LLM endpoint"][0] == "warn"
    assert (
        "'llama-3-nowhere' is not among its models (gpt-4o-mini, text-embedding-3-small)" in checks["LLM endpoint"][1]
    )
    assert checks["LLM completion"][0] == "warn"
    assert "did not call the offered function" in checks["LLM completion"][1]


def test_a_refused_completion_and_failing_embeddings_fail(
    env: pytest.MonkeyPatch, llm_server: FakeLLMServer, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("MEMBOT_EMBEDDINGS__MODEL", "text-embedding-3-small")
    llm_server.enqueue(http_error(400))
    llm_server.fail_embeddings(500)

    code, checks = doctor(capsys)

    assert code == 1
    assert checks["LLM completion"][0] == "fail"
    assert "HTTP 400" in checks["LLM completion"][1] and "fix:" in checks["LLM completion"][1]
    assert checks["embeddings"][0] == "fail"
    assert "MEMBOT_EMBEDDINGS__MODEL" in checks["embeddings"][1]
    assert API_KEY not in capsys.readouterr().err


def test_a_store_written_by_a_newer_membot_fails_and_a_missing_one_warns(
    env: pytest.MonkeyPatch, tmp_path: Path, llm_server: FakeLLMServer, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "data" / "membot.sqlite3"
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    before = path.read_bytes()
    llm_server.enqueue(ping(), ping())

    code, checks = doctor(capsys)
    assert code == 1
    assert checks["store"][0] == "fail"
    assert f"this membot understands version {SCHEMA_VERSION} | fix: upgrade membot" in checks["store"][1]
    assert path.read_bytes() == before  # read, never written

    env.setenv("MEMBOT_STORE__SQLITE_PATH", str(tmp_path / "elsewhere" / "new.sqlite3"))
    code, checks = doctor(capsys)
    assert code == 0
    assert checks["store"][0] == "warn" and "created on first use" in checks["store"][1]
    assert not (tmp_path / "elsewhere").exists()


def test_mongodb_is_reached_and_its_schema_reported(
    env: pytest.MonkeyPatch, llm_server: FakeLLMServer, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.memory.mongo.schema import SCHEMA_VERSION as MONGO_SCHEMA
    from tests.contract.mongo_backend import shared_uri
    from tests.test_privacy import drop_database

    database = f"doctor_{uuid.uuid4().hex[:8]}"
    env.setenv("MONGODB_URI", shared_uri())
    env.setenv("MEMBOT_STORE__MONGODB_DATABASE", database)
    llm_server.enqueue(ping())

    try:
        code, checks = doctor(capsys)
    finally:
        asyncio.run(drop_database(shared_uri(), database))

    assert code == 0
    assert checks["store"] == ("ok", checks["store"][1])
    assert f"schema version {MONGO_SCHEMA}; 0 agents" in checks["store"][1]


def test_a_wrong_discord_token_fails(
    env: pytest.MonkeyPatch, llm_server: FakeLLMServer, discord: DiscordFake, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("DISCORD_TOKEN", "not-the-token")
    llm_server.enqueue(ping())

    code, checks = doctor(capsys)

    assert code == 1
    assert checks["Discord token"][0] == "fail"
    assert "refused the bot token (HTTP 401) | fix: reset the token" in checks["Discord token"][1]
    assert "not-the-token" not in capsys.readouterr().out


@pytest.fixture
def discord_without_content_intent(env: pytest.MonkeyPatch) -> Iterator[DiscordFake]:
    fake = DiscordFake(privileged_intents=Intent.GUILD_MEMBERS)
    fake.start()
    env.setenv("DISCORD_TOKEN", fake.token)
    env.setenv("MEMBOT_DISCORD__API_BASE_URL", fake.urls.api_base_url)
    try:
        yield fake
    finally:
        fake.stop()


def test_a_disabled_message_content_intent_fails_unless_not_asked_for(
    env: pytest.MonkeyPatch,
    llm_server: FakeLLMServer,
    discord_without_content_intent: DiscordFake,
    capsys: pytest.CaptureFixture[str],
) -> None:
    llm_server.enqueue(ping(), ping())

    code, checks = doctor(capsys)
    assert code == 1
    assert checks["Discord token"][0] == "ok"
    assert checks["Discord intents"][0] == "fail"
    assert "enable Message Content Intent" in checks["Discord intents"][1]

    env.setenv("MEMBOT_DISCORD__MESSAGE_CONTENT_INTENT", "false")
    code, checks = doctor(capsys)
    assert code == 0
    assert checks["Discord intents"][0] == "ok" and "only mentions and DMs" in checks["Discord intents"][1]


def test_missing_slack_scopes_warn_or_fail_by_what_they_break(
    env: pytest.MonkeyPatch, llm_server: FakeLLMServer, slack: FakeSlack, capsys: pytest.CaptureFixture[str]
) -> None:
    llm_server.enqueue(ping(), ping())
    slack.bot_scopes = tuple(s for s in slack.bot_scopes if s not in ("users:read", "commands"))

    code, checks = doctor(capsys)
    assert code == 0
    assert checks["Slack scopes"][0] == "warn"
    assert "users:read (speakers' names, and who is a workspace admin)" in checks["Slack scopes"][1]
    assert "commands (the /membot admin command)" in checks["Slack scopes"][1]

    slack.bot_scopes = tuple(s for s in slack.bot_scopes if s != "chat:write")
    code, checks = doctor(capsys)
    assert code == 1
    assert checks["Slack scopes"][0] == "fail"
    assert "missing required scopes: chat:write (posting replies)" in checks["Slack scopes"][1]


def test_revoked_slack_bot_token_and_a_wrong_app_token_fail(
    env: pytest.MonkeyPatch, llm_server: FakeLLMServer, slack: FakeSlack, capsys: pytest.CaptureFixture[str]
) -> None:
    llm_server.enqueue(ping())
    slack.revoke_bot_token()
    env.setenv("SLACK_APP_TOKEN", "xapp-1-A0FAKE001-9999-notthetoken")

    code, checks = doctor(capsys)

    assert code == 1
    assert checks["Slack bot token"][0] == "fail"
    assert "token_revoked" in checks["Slack bot token"][1] and "fix: reinstall the app" in checks["Slack bot token"][1]
    assert "Slack scopes" not in checks
    assert checks["Slack app token"][0] == "fail"
    assert "invalid_auth" in checks["Slack app token"][1]


def test_a_slack_bot_token_without_a_mode_fails_before_any_call(
    env: pytest.MonkeyPatch, llm_server: FakeLLMServer, slack: FakeSlack, capsys: pytest.CaptureFixture[str]
) -> None:
    env.delenv("SLACK_APP_TOKEN")
    llm_server.enqueue(ping())

    code, checks = doctor(capsys)

    assert code == 1
    assert checks["Slack mode"][0] == "fail"
    assert "SLACK_APP_TOKEN" in checks["Slack mode"][1] and "SLACK_SIGNING_SECRET" in checks["Slack mode"][1]
    assert checks["Slack bot token"][0] == "ok"


def test_doctor_expects_exactly_the_scopes_the_slack_manifest_asks_for() -> None:
    manifest = yaml.safe_load((Path(__file__).resolve().parent.parent / "deploy" / "slack-manifest.yaml").read_text())
    assert sorted(s.name for s in SLACK_BOT_SCOPES) == sorted(manifest["oauth_config"]["scopes"]["bot"])
    assert sorted(BOT_SCOPES) == sorted(manifest["oauth_config"]["scopes"]["bot"])  # the fake grants a full install


def test_an_error_quoting_the_api_key_is_printed_and_logged_without_it(
    env: pytest.MonkeyPatch, llm_server: FakeLLMServer, capsys: pytest.CaptureFixture[str]
) -> None:
    message = f"Incorrect API key provided: {API_KEY}."
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}}
    llm_server.enqueue(RawReply(status=401, body=body))
    env.setenv("MEMBOT_LOG_LEVEL", "DEBUG")
    env.setenv("MEMBOT_LOG_FORMAT", "json")

    code = main(["doctor"])

    captured = capsys.readouterr()
    assert code == 1
    assert "Incorrect API key provided: ***." in captured.out
    assert API_KEY not in captured.out and API_KEY not in captured.err


def test_a_window_the_endpoint_does_not_report_is_a_warning_with_a_fix(
    env: pytest.MonkeyPatch, llm_server: FakeLLMServer, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("MEMBOT_LLM__MODEL", "llama3.1:8b")
    llm_server.models = ("llama3.1:8b",)
    llm_server.enqueue(TextReply(text="pong"))
    _code, checks = doctor(capsys)
    status, text = checks["context window"]
    assert status == "warn"
    assert "128000 tokens (membot's default): the endpoint does not say what it runs llama3.1:8b with" in text
    assert "fix: set MEMBOT_LLM__CONTEXT_WINDOW" in text

    llm_server.model_details["llama3.1:8b"] = {"context_length": 8192}
    llm_server.enqueue(TextReply(text="pong"))
    _code, checks = doctor(capsys)
    assert checks["context window"] == ("ok", "8192 tokens (as the endpoint reports)")
