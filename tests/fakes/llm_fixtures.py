"""Pytest fixtures for the scripted LLM server (registered in tests/conftest.py via `pytest_plugins`).

`llm_server` starts a `FakeLLMServer` per test and, at teardown of a test that passed,
checks every scripted step was requested and none arrived after the script ran out;
call `llm_server.allow_unused_steps()` in a test that means to leave steps behind.
`openai_client` is a real SDK client aimed at it; `sleeps` records injected backoff.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Iterator

import openai
import pytest

from bot.agent.llm import make_openai_client
from tests.fakes.llm_server import FakeLLMServer

__all__ = ["SleepRecorder", "llm_server", "openai_client", "sleeps"]


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Remember each phase's report on the item so teardown can tell whether the test passed."""
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


class SleepRecorder:
    """An `asyncio.sleep` stand-in to inject as `sleep=`: records each delay, returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def sleeps() -> SleepRecorder:
    """A fresh `SleepRecorder`, so retry tests assert backoff without waiting for it."""
    return SleepRecorder()


@pytest.fixture
def llm_server(request: pytest.FixtureRequest) -> Iterator[FakeLLMServer]:
    """A started scripted OpenAI-compatible server; stopped (and checked) after the test."""
    server = FakeLLMServer()
    server.start()
    try:
        yield server
        call_report = request.node.stash.get(_REPORTS, {}).get("call")
        if server.checks_unused_steps and call_report is not None and call_report.passed:
            server.assert_all_steps_used()
    finally:
        server.stop()


@pytest.fixture
async def openai_client(llm_server: FakeLLMServer) -> AsyncIterator[openai.AsyncOpenAI]:
    """A real `AsyncOpenAI` (SDK retries off, 5 s timeout) aimed at `llm_server`, closed after the test."""
    client = make_openai_client(llm_server.base_url, "test-key", 5.0)
    try:
        yield client
    finally:
        await client.close()
