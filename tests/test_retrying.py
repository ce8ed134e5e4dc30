"""`bot.retrying`: the backoff arithmetic and Retry-After parsing shared by the LLM and embeddings clients."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from bot.errors import LLMUnavailableError
from bot.retrying import RetryPolicy, Transient, call_with_retries, parse_retry_after
from tests.fakes.llm_fixtures import SleepRecorder


class TestRetryPolicy:
    def test_delay_grows_exponentially_under_full_jitter_and_is_capped(self) -> None:
        policy = RetryPolicy(base_delay=1.0, max_delay=5.0)

        class Top:
            def random(self) -> float:
                return 0.999999

        assert [round(policy.delay_for(n, None, Top()), 3) for n in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]

    def test_retry_after_wins_up_to_its_cap(self) -> None:
        policy = RetryPolicy(max_retry_after=10.0)
        assert policy.delay_for(0, 3.5, random.Random(1)) == 3.5
        assert policy.delay_for(0, 99.0, random.Random(1)) == 10.0

    def test_parse_retry_after_forms(self) -> None:
        now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
        assert parse_retry_after({"Retry-After": "7"}) == 7.0
        assert parse_retry_after({"retry-after": "0.5"}) == 0.5
        assert parse_retry_after({"Retry-After-Ms": "1500", "Retry-After": "9"}) == 1.5
        assert parse_retry_after({"Retry-After": "Wed, 01 Jan 2025 12:00:30 GMT"}, now=now) == 30.0
        assert parse_retry_after({"Retry-After": "Wed, 01 Jan 2025 11:00:00 GMT"}, now=now) == 0.0
        assert parse_retry_after({"Retry-After": "soon"}) is None
        assert parse_retry_after({"Retry-After": "-3"}) is None
        assert parse_retry_after({}) is None


async def test_call_with_retries_passes_non_transient_errors_through(sleeps: SleepRecorder) -> None:
    async def refuse() -> None:
        raise KeyError("not ours to retry")

    with pytest.raises(KeyError):
        await call_with_retries(
            refuse, policy=RetryPolicy(), classify=lambda exc: None, sleep=sleeps, rng=random.Random(1), operation="op"
        )
    assert sleeps.delays == []


async def test_call_with_retries_gives_up_with_one_line(sleeps: SleepRecorder) -> None:
    calls = 0

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError

    with pytest.raises(LLMUnavailableError) as caught:
        await call_with_retries(
            flaky,
            policy=RetryPolicy(max_retries=2),
            classify=lambda exc: Transient(reason="connection error", retry_after=0.25),
            sleep=sleeps,
            rng=random.Random(1),
            operation="embeddings (m)",
        )
    assert str(caught.value) == "embeddings (m) failed after 3 attempt(s): connection error"
    assert (calls, sleeps.delays) == (3, [0.25, 0.25])
