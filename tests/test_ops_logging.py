"""Structured logs: real turns through the runtime, the agent loop, the real openai SDK and the
scripted LLM server, logged at DEBUG. A canary message and the API key must never show up in
the log lines unless content logging is on (and the key not even then); every line of a turn
carries the agent, server and event it belongs to."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.agent.directory import AgentDirectory
from bot.agent.llm import OpenAIChatModel, make_openai_client
from bot.agent.loop import AgentLoop
from bot.agent.options import shipped_options
from bot.agent.tokens import TokenCounter
from bot.cli import main
from bot.config import load_settings
from bot.events import InboundMessage, ReplySink
from bot.memory.sqlite import SQLiteStore
from bot.ops.logging import Redactor, configured_logging, log_content, log_context, settings_secrets
from bot.runtime import Runtime, RuntimeOptions
from tests.fakes.llm_fixtures import SleepRecorder
from tests.fakes.llm_server import FakeLLMServer, RawReply, ToolCallReply, http_error, tool_call

MODEL = "gpt-4o-mini"
API_KEY = "sk-proj-CANARYKEY-7f3a9c1e5b"
CANARY = "zebra-quartz-canary-4711"
REPLY_CANARY = "heron-basalt-reply-0815"
SERVER = "discord:424242"


@dataclass
class Replies:
    sent: list[str] = field(default_factory=list)

    def sink(self, message: InboundMessage) -> ReplySink:
        replies = self

        class _Sink:
            async def send(self, text: str) -> str | None:
                replies.sent.append(text)
                return f"reply-{len(replies.sent)}"

            async def typing(self) -> None:
                pass

        return _Sink()


@dataclass
class Bot:
    runtime: Runtime
    agent_id: str
    replies: Replies
    server: FakeLLMServer

    async def say(self, text: str, *, event: str) -> None:
        message = InboundMessage(
            platform="test",
            conversation_key=f"{SERVER}:channel:1",
            speaker_id="u-ada",
            speaker_name="Ada",
            text=text,
            sent_at=datetime.now(UTC),
            platform_message_id=event,
            reply_route="c1",
            scope=SERVER,
        )
        assert await self.runtime.submit(self.agent_id, message, keys=[f"discord:msg:{event}"])
        async with asyncio.timeout(10):
            await self.runtime.wait_idle()


@pytest.fixture
async def bot(tmp_path: Path, llm_server: FakeLLMServer, sleeps: SleepRecorder) -> AsyncIterator[Bot]:
    store = SQLiteStore(tmp_path / "membot.sqlite3")
    await store.open()
    client = make_openai_client(llm_server.base_url, API_KEY, 5.0)
    try:
        loop = AgentLoop(
            store=store,
            model=OpenAIChatModel(client=client, model=MODEL, max_retries=1, sleep=sleeps),
            counter=TokenCounter(model=MODEL),
            embedder=None,
            options=shipped_options(context_window=16_000, max_output_tokens=1_000),
        )
        agent = await AgentDirectory(store, core_block_limit=2000).create(
            name="sam", persona="I am Sam.", human="", persona_template="sam", human_template="basic", model=MODEL
        )
        replies = Replies()
        runtime = Runtime(store=store, loop=loop, sinks={"test": replies.sink}, options=RuntimeOptions(owner="r1"))
        await runtime.start()
        yield Bot(runtime=runtime, agent_id=agent.id, replies=replies, server=llm_server)
        await runtime.stop(deadline_s=5)
    finally:
        await client.close()
        await store.close()


def answer(text: str) -> ToolCallReply:
    return ToolCallReply(calls=(tool_call("send_message", {"message": text}),))


def key_refused() -> RawReply:
    """A 401 as OpenAI words it: the error message quotes the key it was sent."""
    message = f"Incorrect API key provided: {API_KEY}. You can find your API key at https://platform.openai.com."
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}}
    return RawReply(status=401, body=body)


async def run_turns(bot: Bot) -> None:
    """A good turn, a turn the endpoint refuses (key quoted back), one whose retries run out."""
    bot.server.enqueue(answer(f"I will remember {REPLY_CANARY}."))
    await bot.say(f"My locker code is {CANARY}, keep it secret.", event="1001")
    bot.server.enqueue(key_refused())
    await bot.say(f"Did you keep {CANARY}?", event="1002")
    bot.server.enqueue(http_error(500), http_error(500))
    await bot.say(f"Say {CANARY} back.", event="1003")
    assert bot.replies.sent[0] == f"I will remember {REPLY_CANARY}."
    assert len(bot.replies.sent) == 3  # two apologies for the failed turns


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


async def test_turns_and_llm_failures_log_neither_message_text_nor_the_api_key(bot: Bot) -> None:
    out = io.StringIO()
    with configured_logging(level="DEBUG", log_format="json", is_debug=True, secrets=[API_KEY], stream=out):
        await run_turns(bot)

    text = out.getvalue()
    lines = json_lines(text)
    assert len(lines) > 5  # DEBUG from our code and the libraries came through
    assert CANARY not in text and REPLY_CANARY not in text
    assert API_KEY not in text and "CANARYKEY" not in text
    failures = [line for line in lines if "failed" in line["message"] and line["logger"] == "bot.agent.loop"]
    assert len(failures) == 2
    assert "Incorrect API key provided: ***" in failures[0]["message"]
    for failure, event in zip(failures, ("1002", "1003"), strict=True):
        assert failure["level"] == "WARNING"
        assert (failure["agent_id"], failure["server"], failure["event_id"]) == (
            bot.agent_id,
            SERVER,
            f"discord:msg:{event}",
        )
    assert all("content" not in line for line in lines)


async def test_content_logging_shows_message_text_but_still_hides_the_api_key(bot: Bot) -> None:
    out = io.StringIO()
    with configured_logging(
        level="DEBUG", log_format="json", is_debug=True, is_content_logged=True, secrets=[API_KEY], stream=out
    ):
        await run_turns(bot)

    text = out.getvalue()
    lines = json_lines(text)
    inbound = [line for line in lines if line["logger"] == "bot.runtime" and "new message" in line["message"]]
    assert [CANARY in line["content"] for line in inbound] == [True, True, True]
    assert inbound[0]["event_id"] == "discord:msg:1001"
    delivered = [line["content"] for line in lines if line["message"].startswith("reply delivered")]
    assert f"I will remember {REPLY_CANARY}." in delivered
    assert API_KEY not in text and "CANARYKEY" not in text


async def test_payload_loggers_of_libraries_are_held_at_info_unless_content_is_on() -> None:
    out = io.StringIO()
    with configured_logging(level="DEBUG", log_format="json", is_debug=True, stream=out):
        logging.getLogger("openai._base_client").debug("Request options: %s", CANARY)
        logging.getLogger("discord.gateway").debug("WebSocket Event: %s", CANARY)
        logging.getLogger("bot.somewhere").debug("our own debug line")
    assert CANARY not in out.getvalue()
    assert "our own debug line" in out.getvalue()

    out = io.StringIO()
    with configured_logging(level="INFO", log_format="json", is_debug=True, is_content_logged=True, stream=out):
        logging.getLogger("openai._base_client").debug("Request options: %s", CANARY)
    assert CANARY in out.getvalue()


async def test_leaving_the_block_restores_handlers_and_levels() -> None:
    root = logging.getLogger()
    handlers, level, openai_level = list(root.handlers), root.level, logging.getLogger("openai").level
    with configured_logging(level="WARNING", stream=io.StringIO()) as handler:
        assert handler in root.handlers
        assert root.level == logging.WARNING
    assert (list(root.handlers), root.level, logging.getLogger("openai").level) == (handlers, level, openai_level)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


async def test_auto_format_is_json_off_a_terminal_and_text_on_one() -> None:
    piped, terminal = io.StringIO(), _Terminal()
    for stream in (piped, terminal):
        with configured_logging(level="INFO", stream=stream), log_context(agent_id="a-1", server=SERVER):
            logging.getLogger("bot.test").info("hello %s", "there")
    line = json.loads(piped.getvalue())
    assert (line["message"], line["agent_id"], line["server"], line["level"]) == ("hello there", "a-1", SERVER, "INFO")
    assert "event_id" not in line
    shown = terminal.getvalue()
    assert "INFO bot.test: hello there [agent=a-1 server=discord:424242]" in shown
    with pytest.raises(json.JSONDecodeError):
        json.loads(shown)


async def test_text_lines_show_content_only_when_asked() -> None:
    for is_content_logged in (False, True):
        out = _Terminal()
        with configured_logging(level="INFO", is_content_logged=is_content_logged, stream=out):
            logging.getLogger("bot.test").info("a message arrived", extra=log_content(CANARY))
        assert (CANARY in out.getvalue()) is is_content_logged
        assert "a message arrived" in out.getvalue()


async def test_tracebacks_are_redacted_too() -> None:
    out = io.StringIO()
    with configured_logging(level="INFO", log_format="json", secrets=[API_KEY], stream=out):
        try:
            raise RuntimeError(f"the server said: bad key {API_KEY}")
        except RuntimeError:
            logging.getLogger("bot.test").exception("call failed")
    (line,) = json_lines(out.getvalue())
    assert "RuntimeError: the server said: bad key ***" in line["error"]
    assert API_KEY not in out.getvalue()


async def test_every_secret_setting_and_any_uri_password_are_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.setenv("MONGODB_URI", "mongodb://membot:p%40ss-w0rd-9@db.internal:27017/membot")
    monkeypatch.setenv("DISCORD_TOKEN", "MTE4NDk.discord-bot-token.canary")
    settings = load_settings(env_file=None)
    redact = Redactor(settings_secrets(settings))

    said = (
        f"key {API_KEY}; token MTE4NDk.discord-bot-token.canary; password p@ss-w0rd-9 and p%40ss-w0rd-9; "
        "uri mongodb://membot:p%40ss-w0rd-9@db.internal:27017/membot; other https://bob:hunter22@example.org/x"
    )
    shown = redact(said)

    for secret in (API_KEY, "discord-bot-token", "p@ss-w0rd-9", "p%40ss-w0rd-9", "hunter22"):
        assert secret not in shown
    assert "https://bob:***@example.org/x" in shown
    assert "db.internal:27017" not in shown or "membot:***@db.internal" in shown


async def test_short_secrets_do_not_blank_ordinary_words() -> None:
    redact = Redactor(["x", "ollama"])
    assert redact("pulling ollama model x") == "pulling *** model x"
    assert Redactor(["abc"])("abc abc") == "abc abc"


def test_the_cli_logs_json_lines_off_a_terminal(
    tmp_path: Path, llm_server: FakeLLMServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_BASE_URL", llm_server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.setenv("MEMBOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MEMBOT_LOG_LEVEL", "DEBUG")
    llm_server.enqueue(ToolCallReply(calls=(tool_call("ping", {"ok": True}),)))

    assert main(["doctor"]) == 0

    lines = json_lines(capsys.readouterr().err)  # pytest's captured stderr is not a terminal: JSON
    assert any(line["logger"] == "bot.agent.llm" and "1 tool call(s)" in line["message"] for line in lines)
    assert all(line["level"] in ("DEBUG", "INFO", "WARNING") for line in lines)


async def test_library_info_lines_stay_out_at_the_default_warning_level() -> None:
    """Holding payload loggers at INFO must not let their INFO lines past a WARNING setting
    (the SDK's per-request lines once filled `membot chat`'s terminal)."""
    out = io.StringIO()
    with configured_logging(level="WARNING", log_format="json", stream=out):
        for name in ("httpx", "httpx2", "openai", "discord", "slack_bolt"):
            logging.getLogger(name).info("HTTP Request: POST /v1/chat/completions")
        logging.getLogger("bot.runtime").warning("a warning that belongs")
    assert [line["logger"] for line in json_lines(out.getvalue())] == ["bot.runtime"]
