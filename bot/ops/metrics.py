"""Prometheus metrics for `membot run` (prometheus-client lives in `bot.ops` only).

`Metrics` is the runtime's `RuntimeObserver` (turns and LLM calls as they happen) and the
store timer's observer (`bot.ops.store_timing`); the runtime's own counters (`RuntimeStats`:
leases, heartbeats, duplicates, queue depth) are read at scrape time by a collector, so the
runtime never imports prometheus. Each `Metrics` has its own registry: two in one process (tests)
never collide. Model labels are the configured model name, so their number stays small.

    membot_turns_total{kind,outcome}              turns run: kind message|heartbeat, outcome ok|failed|refused
    membot_turn_seconds{kind}                     turn latency (histogram)
    membot_llm_calls_total{model,outcome}         LLM calls: outcome ok|error
    membot_llm_errors_total{model,error}          failed LLM calls by error class
    membot_llm_call_seconds{model}                LLM call latency, retries included (histogram)
    membot_llm_tokens_total{model,type}           tokens the endpoint reported: type prompt|completion
    membot_llm_last_success_timestamp_seconds     when an LLM call (or readiness probe) last succeeded
    membot_store_call_seconds{operation}          store latency per operation (histogram)
    membot_store_errors_total{operation}          failed store calls
    membot_queue_depth                            agents with work waiting or running here
    membot_turns_in_flight                        turns running now
    membot_leases_held                            agent leases this replica holds now
    membot_lease_takeovers_total                  leases taken from a replica that died or froze
    membot_leases_lost_total                      leases lost mid-turn
    membot_heartbeats_total{result}               reflection heartbeats: fired|skipped
    membot_duplicates_dropped_total               duplicate platform events dropped by the inbox
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from bot.metering import LLMCall, TurnContext, TurnOutcome
from bot.runtime import Runtime
from bot.scheduler import HeartbeatScheduler

__all__ = ["Metrics"]

_TURN_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0)
_LLM_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0)
_STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """The metrics of one `membot run`; implements `RuntimeObserver` and `StoreCallObserver`."""

    def __init__(self, *, wall_clock: Callable[[], float] = time.time) -> None:
        self.registry = CollectorRegistry()
        self._wall_clock = wall_clock
        #: `time.monotonic()` of the last successful LLM call or probe (readiness reads it).
        self.last_llm_success: float | None = None
        r = self.registry
        self._turns = Counter("membot_turns", "Turns run, by kind and outcome.", ["kind", "outcome"], registry=r)
        self._turn_seconds = Histogram(
            "membot_turn_seconds", "Turn latency in seconds.", ["kind"], buckets=_TURN_BUCKETS, registry=r
        )
        self._llm_calls = Counter(
            "membot_llm_calls", "LLM calls, by model and outcome.", ["model", "outcome"], registry=r
        )
        self._llm_errors = Counter(
            "membot_llm_errors", "Failed LLM calls, by model and error class.", ["model", "error"], registry=r
        )
        self._llm_seconds = Histogram(
            "membot_llm_call_seconds",
            "LLM call latency in seconds, retries included.",
            ["model"],
            buckets=_LLM_BUCKETS,
            registry=r,
        )
        self._llm_tokens = Counter(
            "membot_llm_tokens", "Tokens the LLM endpoint reported, by model and type.", ["model", "type"], registry=r
        )
        self._llm_last_success = Gauge(
            "membot_llm_last_success_timestamp_seconds",
            "Unix time of the last successful LLM call or readiness probe.",
            registry=r,
        )
        self._store_seconds = Histogram(
            "membot_store_call_seconds",
            "Store call latency in seconds, by operation.",
            ["operation"],
            buckets=_STORE_BUCKETS,
            registry=r,
        )
        self._store_errors = Counter(
            "membot_store_errors", "Failed store calls, by operation.", ["operation"], registry=r
        )

    # -- RuntimeObserver -----------------------------------------------------------------------
    def llm_called(self, turn: TurnContext, call: LLMCall) -> None:
        self._llm_seconds.labels(call.model).observe(call.seconds)
        if call.error is not None:
            self._llm_calls.labels(call.model, "error").inc()
            self._llm_errors.labels(call.model, call.error).inc()
            return
        self._llm_calls.labels(call.model, "ok").inc()
        self._llm_tokens.labels(call.model, "prompt").inc(call.prompt_tokens)
        self._llm_tokens.labels(call.model, "completion").inc(call.completion_tokens)
        self.note_llm_success()

    def turn_finished(self, turn: TurnContext, *, seconds: float, outcome: TurnOutcome) -> None:
        self._turns.labels(turn.kind, outcome).inc()
        if outcome != "refused":
            self._turn_seconds.labels(turn.kind).observe(seconds)

    # -- StoreCallObserver -----------------------------------------------------------------------
    def store_called(self, operation: str, *, seconds: float, error: str | None) -> None:
        self._store_seconds.labels(operation).observe(seconds)
        if error is not None:
            self._store_errors.labels(operation).inc()

    # -- readiness -------------------------------------------------------------------------------
    def note_llm_success(self) -> None:
        """The LLM endpoint answered (a call, or the readiness probe)."""
        self.last_llm_success = time.monotonic()
        self._llm_last_success.set(self._wall_clock())

    def watch(self, runtime: Runtime, scheduler: HeartbeatScheduler) -> None:
        """Export the runtime's and the scheduler's counters and gauges, read at each scrape."""
        self.registry.register(_RuntimeCollector(runtime, scheduler))


class _RuntimeCollector:
    """`RuntimeStats` and the mailbox count as metric families, read when scraped."""

    def __init__(self, runtime: Runtime, scheduler: HeartbeatScheduler) -> None:
        self._runtime = runtime
        self._scheduler = scheduler

    def collect(self) -> Iterable[Metric]:
        stats = self._runtime.stats
        yield GaugeMetricFamily(
            "membot_queue_depth", "Agents with work waiting or running in this process.", self._runtime.queue_depth
        )
        yield GaugeMetricFamily("membot_turns_in_flight", "Turns running now.", stats.turns_in_flight)
        yield GaugeMetricFamily("membot_leases_held", "Agent leases this replica holds now.", stats.leases_held)
        yield CounterMetricFamily(
            "membot_lease_takeovers", "Leases taken over from a replica that died or froze.", stats.lease_takeovers
        )
        yield CounterMetricFamily("membot_leases_lost", "Leases lost in the middle of a turn.", stats.leases_lost)
        heartbeats = CounterMetricFamily("membot_heartbeats", "Reflection heartbeats, by result.", labels=["result"])
        heartbeats.add_metric(["fired"], stats.heartbeats_fired)
        heartbeats.add_metric(["skipped"], stats.heartbeats_skipped + self._scheduler.heartbeats_skipped)
        yield heartbeats
        yield CounterMetricFamily(
            "membot_duplicates_dropped", "Duplicate platform events dropped by the inbox.", stats.duplicates_dropped
        )
