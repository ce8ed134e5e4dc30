"""An ordinary store outage (a closed or locked database, MongoDB down) is one warning per outage
and one line when the store is back, never a traceback per attempt: Bolt's listeners and the
Discord adapter's message handler, each with the real store closed under it and opened again
(the scheduler's tick and sweep: tests/runtime/test_scheduler_outages.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import pytest

from bot.errors import NotFoundError, StoreError
from bot.ops.logging import OutageLog, is_store_outage
from tests.fakes.discord_bot import DiscordBot
from tests.fakes.slack_bot import SlackBot, reply

UNAVAILABLE = "store unavailable"
BACK = "store available again"


class LogWatch(logging.Handler):
    """Every record of the `bot` loggers (DEBUG included), and a way to wait for one."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._changed = asyncio.Event()
        self._loop = asyncio.get_running_loop()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self._loop.call_soon_threadsafe(self._changed.set)

    async def wait_for(self, predicate: Callable[[list[logging.LogRecord]], bool]) -> None:
        async with asyncio.timeout(10):
            while not predicate(self.records):
                self._changed.clear()
                await self._changed.wait()

    def warnings(self, text: str) -> list[logging.LogRecord]:
        return [r for r in self.records if r.levelno >= logging.WARNING and text in r.getMessage()]

    def attempts(self, where: str) -> int:
        """Failed attempts seen so far at `where` (the first warning, then a DEBUG line each)."""
        return sum(
            1 for r in self.records if r.getMessage().startswith(f"{where}: store") and "unavailable" in r.getMessage()
        )


@pytest.fixture
async def watch(caplog: pytest.LogCaptureFixture) -> AsyncIterator[LogWatch]:
    caplog.set_level(logging.DEBUG, logger="bot")
    handler = LogWatch()
    logging.getLogger().addHandler(handler)
    try:
        yield handler
    finally:
        logging.getLogger().removeHandler(handler)


def _no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    with_traceback = [r for r in caplog.records if r.exc_info is not None]
    assert with_traceback == [], [r.getMessage() for r in with_traceback]


def test_one_warning_per_outage_and_one_when_it_is_back(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    now = [100.0]
    outage = OutageLog("test loop", logger=logging.getLogger("bot.test"), clock=lambda: now[0])
    for _ in range(5):
        outage.failed(StoreError("database is locked"))
    now[0] += 42
    outage.succeeded()
    outage.succeeded()
    outage.failed(StoreError("MongoDB at db:27017 is unreachable"))
    outage.succeeded()

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "test loop: store unavailable (database is locked); retrying, and saying so once it is back",
        "test loop: store available again after 42 s (5 failed attempts)",
        "test loop: store unavailable (MongoDB at db:27017 is unreachable); retrying, and saying so once it is back",
        "test loop: store available again after 0 s (1 failed attempts)",
    ]
    assert len([r for r in caplog.records if r.levelno == logging.DEBUG]) == 4
    assert is_store_outage(StoreError("locked")) and not is_store_outage(NotFoundError("no agent"))


# -- Slack: Bolt's listeners -------------------------------------------------------------
async def test_bolt_listeners_log_a_store_outage_once_and_slack_retries(
    slack_bot: SlackBot, watch: LogWatch, caplog: pytest.LogCaptureFixture
) -> None:
    bot = slack_bot
    await bot.store.close()
    for attempt in range(3):
        delivery = await bot.slack.send_event(bot.fake.events.mention(f"are you there? {attempt}"))
        assert delivery.status == 500, "not acknowledged: Slack delivers it again"
    await bot.store.open()
    bot.llm.enqueue(reply("back"))
    assert (await bot.slack.send_event(bot.fake.events.mention("now?"))).status == 200
    await bot.fake.wait_for_call("chat.postMessage")
    await bot.settle()

    assert len(watch.warnings(UNAVAILABLE)) == 1
    (back,) = watch.warnings(BACK)
    assert "(3 failed attempts)" in back.getMessage()
    _no_tracebacks(caplog)


# -- Discord: the message handler --------------------------------------------------------
async def test_the_discord_handler_logs_a_store_outage_once(
    discord_bot: DiscordBot, watch: LogWatch, caplog: pytest.LogCaptureFixture
) -> None:
    bot = discord_bot
    await bot.store.close()
    for attempt in range(3):
        await bot.fake.dispatch_message(bot.general, bot.alice, f"{bot.fake.bot.mention} there? {attempt}")
        await watch.wait_for(lambda _, seen=attempt + 1: watch.attempts("Discord messages") == seen)
    await bot.store.open()
    bot.llm.enqueue(reply("back"))
    await bot.fake.dispatch_message(bot.general, bot.alice, f"{bot.fake.bot.mention} now?")
    await bot.fake.wait_for_message(bot.general)
    await bot.settle()

    assert len(watch.warnings(UNAVAILABLE)) == 1
    (back,) = watch.warnings(BACK)
    assert "(3 failed attempts)" in back.getMessage()
    _no_tracebacks(caplog)
