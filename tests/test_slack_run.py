"""`membot run slack`: settings under Bolt's usual names, the mode they pick, clear refusals,
and the whole composition root serving Socket Mode until SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import openai
import pytest

from bot.cli import PLATFORMS, main
from bot.commands import run
from bot.config import load_settings
from bot.errors import ConfigError
from tests.fakes.llm_fixtures import SleepRecorder
from tests.fakes.llm_server import FakeLLMServer
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_bot import SlackBot, reply


def test_bolts_variables_configure_http_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1-2-abc")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "s3cret")
    monkeypatch.setenv("PORT", "8123")
    monkeypatch.setenv("MEMBOT_SLACK__ADMIN_USERS", '["U0ADMIN01"]')

    slack = load_settings(env_file=None).slack

    assert slack.bot_token is not None and slack.bot_token.get_secret_value() == "xoxb-1-2-abc"
    assert (slack.mode, slack.port, slack.path, slack.admin_users) == ("http", 8123, "/slack/events", ("U0ADMIN01",))
    assert slack.api_base_url == "https://slack.com/api"


def test_an_app_token_picks_socket_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1-2-abc")
    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-1-A1-3-def")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "s3cret")
    monkeypatch.setenv("MEMBOT_SLACK__API_BASE_URL", "https://slack-gov.com/api/")

    slack = load_settings(env_file=None).slack

    assert slack.mode == "socket"
    assert slack.api_base_url == "https://slack-gov.com/api"


def test_swapped_tokens_are_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xapp-1-A1-3-def")

    with pytest.raises(ConfigError) as raised:
        load_settings(env_file=None)

    assert str(raised.value) == "SLACK_BOT_TOKEN (from the environment): must be a bot token (xoxb-...) (got ***)"


def test_run_slack_without_a_token_or_a_mode_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "slack"]) == 2
    assert "no Slack bot token: set SLACK_BOT_TOKEN" in capsys.readouterr().err
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1-2-abc")
    assert main(["run", "slack"]) == 2
    assert "SLACK_APP_TOKEN (Socket Mode) or SLACK_SIGNING_SECRET (HTTP mode); neither is set" in (
        capsys.readouterr().err
    )
    assert PLATFORMS["all"] == ("discord", "slack")


@pytest.mark.parametrize("token", ["bot", "app"])
async def test_a_refused_token_stops_start_up_with_a_clear_error(
    token: str,
    tmp_path: Path,
    slack_fake: FakeSlack,
    llm_server: FakeLLMServer,
    openai_client: openai.AsyncOpenAI,
    sleeps: SleepRecorder,
) -> None:
    if token == "bot":
        slack_fake.revoke_bot_token()
        expected = "Slack refused the bot token (SLACK_BOT_TOKEN): token_revoked"
    else:
        expected = "Slack refused the app-level token (SLACK_APP_TOKEN): invalid_auth"
    extra = {"socket": True, "app_token": "xapp-1-A0FAKE001-9-wrong"} if token == "app" else {}
    with pytest.raises(ConfigError, match=r"^" + expected.replace("(", r"\(").replace(")", r"\)")):
        await SlackBot.start(
            tmp_path=tmp_path, fake=slack_fake, llm=llm_server, openai_client=openai_client, sleeps=sleeps, **extra
        )


async def test_run_slack_serves_socket_mode_until_sigterm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slack_fake: FakeSlack, llm_server: FakeLLMServer
) -> None:
    """The composition root: settings -> store, router, runtime, scheduler, adapter; a signal stops it all."""
    monkeypatch.setenv("SLACK_BOT_TOKEN", slack_fake.app.bot_token)
    monkeypatch.setenv("SLACK_APP_TOKEN", slack_fake.app.app_token)
    monkeypatch.setenv("MEMBOT_SLACK__API_BASE_URL", slack_fake.base_url)
    monkeypatch.setenv("OPENAI_BASE_URL", llm_server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("MEMBOT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MEMBOT_OPS__HTTP_PORT", "0")
    settings = load_settings(env_file=None)
    llm_server.enqueue(reply("hello from the service"))
    served = asyncio.create_task(run(settings, PLATFORMS["slack"]))
    waiting = asyncio.create_task(slack_fake.socket.wait_for_connection(timeout=10))
    await asyncio.wait({served, waiting}, return_when=asyncio.FIRST_COMPLETED)
    if served.done():
        served.result()  # raises what stopped it
    await waiting

    mention = slack_fake.events.mention("hi")
    envelope = await slack_fake.socket.send_events_api(slack_fake.events.envelope(mention))

    await slack_fake.socket.wait_for_ack(envelope, timeout=10)
    posted = await slack_fake.wait_for_call("chat.postMessage", timeout=10)
    assert (posted.args["text"], posted.args["thread_ts"]) == ("hello from the service", mention["ts"])
    os.kill(os.getpid(), signal.SIGTERM)
    assert await asyncio.wait_for(served, 10) == 0
    assert slack_fake.socket.open_connections == 0
