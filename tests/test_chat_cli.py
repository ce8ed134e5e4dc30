"""`membot chat` end to end: the real CLI, the embedded store and the scripted LLM server."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from bot.cli import main
from tests.fakes.llm_server import FakeLLMServer, TextReply, ToolCallReply, tool_call


def reply(text: str) -> ToolCallReply:
    return ToolCallReply(calls=(tool_call("send_message", {"message": text}),))


def call(name: str, **arguments: object) -> ToolCallReply:
    return ToolCallReply(calls=(tool_call(name, {**arguments, "request_heartbeat": True}),))


@pytest.fixture
def chat_env(tmp_path: Path, llm_server: FakeLLMServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {
        "OPENAI_BASE_URL": llm_server.base_url,
        "OPENAI_API_KEY": "test-key",
        "MEMBOT_DATA_DIR": str(tmp_path / "data"),
        "MEMBOT_LLM__MAX_RETRIES": "0",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    return env


def run_chat(args: list[str], lines: str, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(sys, "stdin", io.StringIO(lines))
    return main(["chat", "-y", *args])


def run_subprocess(args: list[str], lines: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **env, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        input=lines,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.slow
def test_memory_survives_a_process_restart(chat_env: dict[str, str], llm_server: FakeLLMServer) -> None:
    llm_server.enqueue(
        call("core_memory_append", label="human", content="Name: Ada. Has a dog called Biscuit."), reply("Hi Ada!")
    )
    first = run_subprocess(["chat", "--first", "-y"], "Hi! I'm Ada and my dog is Biscuit.\n/exit\n", chat_env)
    assert first.returncode == 0, first.stderr
    assert "Hi Ada!" in first.stdout

    llm_server.enqueue(call("conversation_search", query="dog"), reply("Your dog is Biscuit."))
    second = run_subprocess(["chat", "--first", "-y"], "What is my dog's name?\n", chat_env)
    assert second.returncode == 0, second.stderr
    assert "Resuming agent membot" in second.stdout
    assert "Your dog is Biscuit." in second.stdout
    requests = llm_server.chat_requests
    assert "Has a dog called Biscuit." in requests[2].body["messages"][0]["content"]
    search_result = json.loads(requests[3].body["messages"][-1]["content"])
    assert "Hi! I'm Ada and my dog is Biscuit." in search_result["message"]


def test_the_agent_greets_first_unless_told_otherwise(
    chat_env: dict[str, str],
    llm_server: FakeLLMServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    llm_server.enqueue(reply("Hello, I'm Sam."))
    assert run_chat([], "", monkeypatch) == 0
    assert "Hello, I'm Sam." in capsys.readouterr().out
    assert "login" in llm_server.chat_requests[0].body["messages"][-1]["content"]


def test_terminal_commands(
    chat_env: dict[str, str],
    llm_server: FakeLLMServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    notes = tmp_path / "notes.md"
    notes.write_text("# Garden\n\nThe tomatoes go in the south bed.\n\nWater the basil daily.\n", encoding="utf-8")
    binary = tmp_path / "photo.txt"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    llm_server.enqueue(
        reply("first answer"),
        reply("second answer"),
        reply("second answer, retried"),
        TextReply(text="nothing to do on this heartbeat"),
        call("archival_memory_insert", content="Ada keeps a garden."),
        TextReply(text="saved"),
    )
    script = "\n".join(
        [
            "",
            "   ",
            "/help",
            "hello there",
            "tell me a joke",
            "/retry",
            "/dump 4",
            "/memory",
            "/heartbeat",
            "/memorywarning",
            f"/attach {notes}",
            f"/attach {binary}",
            "/attach /no/such/file.txt",
            "/pop 2",
            "/pop zero",
            "/frobnicate",
            "/save",
            "/exit",
            "never read",
        ]
    )
    assert run_chat(["--first"], script + "\n", monkeypatch) == 0
    out = capsys.readouterr().out
    assert "/memorywarning" in out  # /help
    assert "first answer" in out
    assert "second answer, retried" in out
    assert "] user: tell me a joke" in out  # /dump
    assert '→ send_message({"message": "second answer, retried"})' in out
    assert "persona" in out and "recall:" in out  # /memory
    assert "Attached notes.md: 1 passages in archival memory." in out
    assert "photo.txt looks like a binary file" in out
    assert "/attach failed: /no/such/file.txt: no such file" in out
    assert "Deleted 2 messages." in out
    assert "'zero' is not a number" in out
    assert "Unknown command /frobnicate" in out
    assert "Saved a checkpoint to" in out
    checkpoint = next((tmp_path / "data" / "checkpoints").glob("membot-*.json"))
    data = json.loads(checkpoint.read_text(encoding="utf-8"))
    assert data["agent"]["name"] == "membot"
    assert {p["text"] for p in data["passages"]} >= {"Ada keeps a garden."}
    assert len(llm_server.chat_requests) == 6, "blank lines cost no LLM call"
    # /retry replaced the old answer: only one copy of the user message remains.
    users = [m for m in data["messages"] if m["role"] == "user"]
    assert [u["content"] for u in users] == ["hello there", "tell me a joke"]
    memory_warning = llm_server.chat_requests[4].body["messages"][-1]["content"]
    assert "memory_warning" in memory_warning


def test_a_garbled_config_file_is_one_clear_line(
    chat_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[llm]\nmodel = "gpt\n', encoding="utf-8")
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert main(["--config", str(config), "chat", "-y"]) == 2
    err = capsys.readouterr().err
    assert "is not valid TOML" in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_a_store_from_a_newer_membot_is_refused_untouched(
    chat_env: dict[str, str],
    llm_server: FakeLLMServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run_chat(["--first"], "", monkeypatch) == 0
    path = Path(chat_env["MEMBOT_DATA_DIR"]) / "membot.sqlite3"
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    before = path.read_bytes()
    assert run_chat(["--first"], "hello\n", monkeypatch) == 2
    err = capsys.readouterr().err
    assert "99" in err
    assert "Traceback" not in err
    assert path.read_bytes() == before


def test_llm_endpoint_down_at_start(
    chat_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{port}/v1")
    assert run_chat([], "hello\n", monkeypatch) == 2
    err = capsys.readouterr().err
    assert f"cannot reach the LLM endpoint http://127.0.0.1:{port}/v1" in err
    assert "Traceback" not in err


def test_help_lists_the_commands() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "--help"], capture_output=True, text=True, timeout=30, check=True
    )
    for command in ("chat", "agents", "templates"):
        assert command in result.stdout


def test_a_store_failure_mid_turn_keeps_the_chat_open(
    chat_env: dict[str, str],
    llm_server: FakeLLMServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tests.fakes.llm_server import Computed

    path = Path(chat_env["MEMBOT_DATA_DIR"]) / "membot.sqlite3"

    def break_the_store(body: object) -> ToolCallReply:
        # Another program damages the database while the model is thinking.
        with closing(sqlite3.connect(path)) as db, db:
            db.execute("DROP TABLE passages")
        return ToolCallReply(calls=(tool_call("archival_memory_insert", {"content": "a fact"}),))

    llm_server.enqueue(Computed(break_the_store))
    assert run_chat(["--first"], "remember a fact\n/help\n/exit\n", monkeypatch) == 0
    out = capsys.readouterr().out
    assert "(the memory store failed: SQLite store at" in out
    assert "/memorywarning" in out, "the chat went on after the failure"
