"""Pytest fixtures for the fake Slack (registered in tests/conftest.py via `pytest_plugins`).

`slack_fake` starts a `FakeSlack` per test; `slack_client` is a real `AsyncWebClient` aimed
at it with the bot token; `serve_bolt(app)` serves a Bolt `AsyncApp` over HTTP through
Bolt's own aiohttp server on 127.0.0.1 port 0 and returns its Request URL;
`slack_requests(url)` is a signed-request sender to such a URL, closed after the test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from aiohttp import web
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_requests import SlackRequestSender

__all__ = ["serve_bolt", "slack_client", "slack_fake", "slack_requests"]

BoltServer = Callable[[AsyncApp], Awaitable[str]]
SenderFactory = Callable[[str], SlackRequestSender]


_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")


@pytest.fixture
def slack_fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSlack]:
    """A started fake Slack (Web API, upload and response URLs, Socket Mode); stopped after the test.

    slack_sdk's clients read HTTP(S)_PROXY when built and ignore NO_PROXY, so a developer's
    proxy would swallow loopback calls: the proxy variables are unset for the test."""
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def slack_client(slack_fake: FakeSlack) -> AsyncWebClient:
    """A real `AsyncWebClient` with the bot token, aimed at `slack_fake` (a session per call)."""
    return AsyncWebClient(base_url=slack_fake.base_url, token=slack_fake.app.bot_token, timeout=5)


@pytest.fixture
async def serve_bolt() -> AsyncIterator[BoltServer]:
    """`url = await serve_bolt(app)`: serve `app.web_app()` (Bolt's aiohttp server) on loopback."""
    runners: list[web.AppRunner] = []

    async def serve(app: AsyncApp) -> str:
        path = "/slack/events"
        runner = web.AppRunner(app.web_app(path=path), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}{path}"

    try:
        yield serve
    finally:
        for runner in reversed(runners):
            await runner.cleanup()


@pytest.fixture
async def slack_requests(slack_fake: FakeSlack) -> AsyncIterator[SenderFactory]:
    """`slack = slack_requests(url)`: Slack's signed HTTP deliveries to the app at `url`."""
    senders: list[SlackRequestSender] = []

    def make(url: str) -> SlackRequestSender:
        sender = slack_fake.requests_to(url)
        senders.append(sender)
        return sender

    try:
        yield make
    finally:
        for sender in senders:
            await sender.close()
