"""`membot eval locomo`: ingest, ask, score, report; resumable.

Each sample runs inside its own composition root (`open_app` on settings whose store is the
run's: a SQLite file per sample in `--out`, or the configured MongoDB server's `<database>_eval`
database), so the agents it makes never mix with the operator's. `--jobs N` works on N samples at once (one agent each;
an agent answers one question at a time, as in production).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from bot.agent.tokens import TokenCounter
from bot.app import App, open_app
from bot.config import Settings
from bot.errors import ConfigError
from bot.eval.download import ensure_locomo
from bot.eval.ingest import IngestedAgent, ingest_sample
from bot.eval.locomo import Question, Sample, load_locomo
from bot.eval.progress import RunProgress
from bot.eval.qa import answer_f1, answer_full_context, answer_with_agent, judge
from bot.eval.report import render_tables, summarize, write_results
from bot.eval.retrieval import score_question
from bot.sdk_clients import DeferredChatModel

__all__ = ["EvalOptions", "eval_locomo"]

_log = logging.getLogger(__name__)

Mode = Literal["retrieval", "qa"]


@dataclass(frozen=True, slots=True, kw_only=True)
class EvalOptions:
    data: Path | None
    mode: Mode
    #: Sample ids, or None for every sample of the file.
    samples: tuple[str, ...] | None
    store: Literal["sqlite", "mongodb"]
    jobs: int
    out: Path
    archival: bool
    baseline: Literal["full-context"] | None
    #: retrieval: the question is recorded as the agent's user message before its search, as in
    #: production; False searches without it (the old measure, for benchmarks to compare).
    is_question_recorded: bool = True


async def eval_locomo(settings: Settings, options: EvalOptions, *, console: Console) -> int:
    if options.baseline is not None and options.mode != "qa":
        raise ConfigError("--baseline full-context compares answers: it needs --mode qa")
    if options.jobs < 1:
        raise ConfigError(f"--jobs must be at least 1 (got {options.jobs})")
    path = options.data or await ensure_locomo(
        settings.data_dir, url=settings.eval.locomo_url, notify=lambda text: console.print(text, style="yellow")
    )
    samples = _chosen(load_locomo(path), options.samples, path)
    if options.store == "mongodb" and settings.store.mongodb_uri is None:
        raise ConfigError("--store mongodb: set MONGODB_URI (the run uses its <database>_eval database)")
    config = {
        "data": str(path.resolve()),
        "mode": options.mode,
        "samples": [s.sample_id for s in samples],
        "store": options.store,
        "archival": options.archival,
        "baseline": options.baseline,
        # A run's progress from before questions were recorded is not resumed with them.
        "questions": "recorded" if options.is_question_recorded else "unrecorded",
        "model": settings.llm.model if options.mode == "qa" else None,
        "judge_model": _judge_model(settings) if options.mode == "qa" else None,
        "embedding_model": settings.embeddings.model,
    }
    progress = RunProgress.open(options.out, config)
    judge_model = DeferredChatModel(settings.llm.model_copy(update={"model": _judge_model(settings)}))
    try:
        await _run(settings, samples, options, progress, judge_model, console)
    finally:
        await judge_model.aclose()
    public_options = {k: v for k, v in config.items() if k not in ("data", "samples") and v is not None}
    results = summarize(
        progress.records, mode=options.mode, options=public_options, sample_ids=[s.sample_id for s in samples]
    )
    json_path, md_path = write_results(results, options.out)
    for table in render_tables(results):
        console.print(table)
    console.print(f"Results: {json_path}  Report: {md_path}")
    return 0


def _judge_model(settings: Settings) -> str:
    return settings.eval.judge_model or settings.llm.model


def _chosen(samples: list[Sample], wanted: tuple[str, ...] | None, path: Path) -> list[Sample]:
    if wanted is None:
        return samples
    by_id = {s.sample_id: s for s in samples}
    missing = [w for w in wanted if w not in by_id]
    if missing:
        raise ConfigError(f"{path} has no sample {', '.join(missing)} (it has {', '.join(by_id)})")
    return [by_id[w] for w in dict.fromkeys(wanted)]


def _run_settings(settings: Settings, options: EvalOptions, sample: Sample) -> Settings:
    """The settings of one sample's store: its own SQLite file, or the MongoDB `<database>_eval`
    database. One conversation per SQLite file because FTS5's bm25 statistics are table-wide, so
    a sample's figures never depend on which other samples the run holds (MongoDB's are per agent)."""
    if options.store == "sqlite":
        name = "".join(c if c.isalnum() or c in "-_" else "_" for c in sample.sample_id)
        update: dict[str, Any] = {"kind": "sqlite", "sqlite_path": options.out / f"locomo-{name}.sqlite3"}
    else:
        update = {"kind": "mongodb", "mongodb_database": f"{settings.store.mongodb_database}_eval"}
    return settings.model_copy(update={"store": settings.store.model_copy(update=update)})


async def _run(
    settings: Settings,
    samples: Sequence[Sample],
    options: EvalOptions,
    progress: RunProgress,
    judge_model: DeferredChatModel,
    console: Console,
) -> None:
    kinds = _kinds(options)
    total = sum(len(s.questions) for s in samples) * len(kinds)
    done = sum(1 for s in samples for q in s.questions for k in kinds if progress.is_done(k, s.sample_id, q.index))
    counter = TokenCounter(model=settings.llm.model)
    slots = asyncio.Semaphore(options.jobs)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(f"LoCoMo {options.mode}", total=total, completed=done)

        async def one_sample(sample: Sample) -> None:
            async with slots, open_app(_run_settings(settings, options, sample)) as app:
                agent = await _ingest(app, sample, options, progress, counter)
                for question in sample.questions:
                    for kind in kinds:
                        if not progress.is_done(kind, sample.sample_id, question.index):
                            progress.add(await _ask(app, sample, agent, question, kind, options, judge_model))
                            bar.advance(task)

        async with asyncio.TaskGroup() as group:
            for sample in samples:
                group.create_task(one_sample(sample))


def _kinds(options: EvalOptions) -> tuple[str, ...]:
    if options.mode == "retrieval":
        return ("retrieval",)
    return ("agent", "full-context") if options.baseline == "full-context" else ("agent",)


async def _ingest(
    app: App, sample: Sample, options: EvalOptions, progress: RunProgress, counter: TokenCounter
) -> IngestedAgent:
    started = time.perf_counter()
    agent = await ingest_sample(
        sample,
        store=app.store,
        directory=app.directory,
        loop=app.loop,
        counter=counter,
        model=app.settings.llm.model,
        archival=options.archival,
    )
    if not progress.is_done("ingest", sample.sample_id):
        progress.add({"kind": "ingest", "sample": sample.sample_id, "seconds": round(time.perf_counter() - started, 3)})
    return agent


async def _ask(
    app: App,
    sample: Sample,
    agent: IngestedAgent,
    question: Question,
    kind: str,
    options: EvalOptions,
    judge_model: DeferredChatModel,
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "kind": kind,
        "sample": sample.sample_id,
        "question": question.index,
        "category": question.category,
        "evidence": list(question.evidence),
    }
    if kind == "retrieval":
        if not question.evidence:
            return record | {"scored": False}
        score = await score_question(
            question,
            sample,
            agent,
            app.loop,
            store=app.store,
            archival=options.archival,
            is_recorded=options.is_question_recorded,
        )
        return (
            record
            | {
                "scored": True,
                "recall": {str(k): round(v, 4) for k, v in score.recall.items()},
                "rr": round(score.reciprocal_rank, 4),
                "ranked": list(score.ranked),
                "latency_ms": round(score.latency_ms, 3),
            }
            | ({"archival_session_recall": score.archival_session_recall} if options.archival else {})
        )
    if kind == "agent":
        answer, prompt, completion, error = await answer_with_agent(
            question, sample, agent, loop=app.loop, store=app.store
        )
    else:
        error = None
        answer, prompt, completion = await answer_full_context(question, sample, model=app.model)
    if error is None:
        is_correct, judge_tokens = await judge(question, answer, model=judge_model)
    else:  # the turn failed (the user got an apology): wrong, and not worth a judge's tokens
        is_correct, judge_tokens = False, 0
    return record | {
        "answer": answer,
        "correct": is_correct,
        "f1": round(answer_f1(question, answer), 4),
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "judge_tokens": judge_tokens,
        "error": error,
    }
