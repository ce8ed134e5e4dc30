"""`membot eval locomo --mode retrieval` end to end, through the CLI, on both stores.

Expected figures are worked out by hand from the fixture (see `locomo_mini.json`): the stop
words leave few terms per question, so each ranking follows from which turns hold which terms
(in their text, speaker or context: the turn before) and from bm25's preference for shorter turns.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import openai
import pytest
from rich.console import Console

from bot.agent.llm import OpenAIChatModel
from bot.agent.loop import AgentLoop
from bot.agent.options import shipped_options
from bot.agent.tokens import TokenCounter
from bot.cli import main
from bot.config import load_settings
from bot.eval.command import EvalOptions, eval_locomo
from bot.eval.ingest import IngestedAgent, agent_name
from bot.eval.locomo import load_locomo
from bot.eval.turns import question_message, undone_turn
from bot.memory.sqlite import SQLiteStore
from tests.fakes.llm_server import FakeLLMServer, ToolCallReply, tool_call

FIXTURE = Path(__file__).with_name("locomo_mini.json")


def run_eval(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["eval", "locomo", "--data", str(FIXTURE), *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def results_of(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / "results.json").read_text(encoding="utf-8"))
    return data


def without_timings(results: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in results.items() if k != "timings"}


@pytest.fixture(autouse=True)
def _data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMBOT_DATA_DIR", str(tmp_path / "data"))


def check_hand_worked_figures(results: dict[str, Any]) -> None:
    retrieval = results["retrieval"]
    # Keyword search: bm25's order, then reciprocal rank fusion (1 / (10 + rank)), the neighbourhood
    # (+0.3 x the scores of found turns up to two seqs away) and x1.5 for the speaker the question names.
    # "What breed is the dog that chewed Ava's sneakers?" (evidence D1:3 and D2:4) keeps breed, dog,
    # chew, ava, sneaker. bm25 ranks D2:4 (chew, sneaker, Ava's turn), D2:5 (chew; both in its
    # context), then turns by Ava matching only her name, shortest first: D1:1, D2:2, D1:3, D1:5.
    # Fused: D2:4 (1/11 + 0.3 x (1/14 + 1/12)) x 1.5 = 0.206; D2:2 (1/14 + 0.3 x (1/16 + 1/11)) x 1.5
    # = 0.176; D1:3 (1/15 + 0.3 x (1/13 + 1/16)) x 1.5 = 0.163; D1:5 0.156; D1:1 0.145; D2:5, Ben's, 0.111.
    by_question = {(q["sample"], q["question"]): q for q in results["questions"]}
    assert by_question[("mini-1", 2)]["ranked"] == ["D2:4", "D2:2", "D1:3", "D1:5", "D1:1", "D2:5"]
    assert by_question[("mini-1", 2)]["recall"] == {"1": 0.5, "5": 1.0, "10": 1.0}
    assert retrieval["multi-hop"] == {
        "questions": 1, "scored": 1, "recall@1": 0.5, "recall@5": 1.0, "recall@10": 1.0, "mrr": 1.0,
    }  # fmt: skip
    # "In which year did Ava adopt Pepper?" (D1:1, where Ava adopts a puppy): D1:3 (Ava: "Her name is
    # Pepper") sits between two other matches by Ava and comes first by the neighbourhood; D1:1 second.
    assert by_question[("mini-1", 6)]["ranked"][:2] == ["D1:3", "D1:1"]
    # Every other scored question of categories 1-4 finds its evidence first.
    assert retrieval["overall (1-4)"] == {
        "questions": 8, "scored": 7, "recall@1": round(5.5 / 7, 4), "recall@5": 1.0, "recall@10": 1.0,
        "mrr": round(6.5 / 7, 4),
    }  # fmt: skip
    # The open-domain question without evidence is not scored; the adversarial one is reported apart
    # (its "evidence" D1:3 shares no term with "What breed is Ben's cat?").
    assert retrieval["open-domain"]["questions"] == 2 and retrieval["open-domain"]["scored"] == 1
    assert results["unscored_questions"] == 1
    assert retrieval["adversarial"] == {
        "questions": 1, "scored": 1, "recall@1": 0.0, "recall@5": 0.0, "recall@10": 0.0, "mrr": 0.0,
    }  # fmt: skip
    assert by_question[("mini-1", 3)]["evidence"] == ["D2:1"]  # "D:2:1" repaired
    assert by_question[("mini-2", 0)]["ranked"] == ["D1:1", "D1:2"]


def test_retrieval_end_to_end_on_sqlite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    code, printed = run_eval(capsys, "--mode", "retrieval", "--out", str(out))
    assert code == 0, printed
    results = results_of(out)
    check_hand_worked_figures(results)
    assert results["samples"] == ["mini-1", "mini-2"]
    assert results["timings"]["search_ms"]["p50"] > 0
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "| overall (1-4) | 8 | 7 | 0.786 | 1.000 | 1.000 | 0.929 |" in report
    assert "overall (1-4)" in printed and "0.786" in printed  # the terminal table
    # Results name dialog ids and figures, never the data's own text (its licence forbids copying it).
    assert "marathon" not in (out / "results.json").read_text(encoding="utf-8")


def test_retrieval_end_to_end_on_mongodb_ranks_as_sqlite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.contract.mongo_backend import shared_uri

    monkeypatch.setenv("MONGODB_URI", shared_uri())
    monkeypatch.setenv("MEMBOT_STORE__MONGODB_DATABASE", f"eval_{uuid.uuid4().hex[:12]}")
    code, printed = run_eval(capsys, "--store", "mongodb", "--out", str(tmp_path / "mongo"))
    assert code == 0, printed
    code, printed = run_eval(capsys, "--store", "sqlite", "--out", str(tmp_path / "sqlite"))
    assert code == 0, printed
    mongo, lite = results_of(tmp_path / "mongo"), results_of(tmp_path / "sqlite")
    check_hand_worked_figures(mongo)
    assert mongo["questions"] == lite["questions"]  # the same rankings, question by question
    assert mongo["options"]["store"] == "mongodb"


def test_a_resumed_run_gives_the_results_of_an_uninterrupted_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    assert run_eval(capsys, "--out", str(whole))[0] == 0
    assert run_eval(capsys, "--out", str(stopped))[0] == 0
    # Leave `stopped` as a run killed halfway leaves it: four questions recorded and a fifth torn
    # mid-line, no results yet, and the second session of mini-1 not yet in the store.
    progress = stopped / "progress.jsonl"
    lines = progress.read_text(encoding="utf-8").splitlines(keepends=True)
    progress.write_text("".join(lines[:5]) + lines[5][: len(lines[5]) // 2], encoding="utf-8")
    (stopped / "results.json").unlink()
    asyncio.run(_truncate_at(stopped / "locomo-mini-1.sqlite3", "D2:1"))
    code, printed = run_eval(capsys, "--out", str(stopped))
    assert code == 0, printed
    assert without_timings(results_of(stopped)) == without_timings(results_of(whole))
    kinds = [line.split('"kind": "')[1].split('"')[0] for line in progress.read_text(encoding="utf-8").splitlines()]
    assert kinds.count("retrieval") == 10  # each question once, and the torn one's first half


async def _truncate_at(path: Path, dia_id: str) -> None:
    """The store as an ingest stopped before the session that starts with `dia_id` leaves it (each
    session is one append, so the next seq is that session's first)."""
    store = SQLiteStore(path)
    await store.open()
    try:
        (agent,) = await store.list_agents()
        first = next(m.seq for m in await store.get_messages(agent.id) if m.platform_message_id == dia_id)
        await store.delete_messages_from(agent.id, first)
    finally:
        await store.close()


def test_a_run_with_other_options_is_refused_in_the_same_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert run_eval(capsys, "--out", str(out), "--samples", "mini-2")[0] == 0
    assert results_of(out)["samples"] == ["mini-2"]
    code, printed = run_eval(capsys, "--out", str(out))
    assert code == 2
    assert f"{out} holds a run with other options (samples)" in printed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--samples", "mini-9"], "has no sample mini-9 (it has mini-1, mini-2)"),
        (["--baseline", "full-context"], "--baseline full-context compares answers: it needs --mode qa"),
        (["--jobs", "0"], "--jobs must be at least 1 (got 0)"),
        (["--store", "mongodb"], "--store mongodb: set MONGODB_URI"),
    ],
)
def test_bad_options_get_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, printed = run_eval(capsys, "--out", str(tmp_path / "run"), *args)
    assert code == 2
    assert message in printed


def test_a_malformed_data_file_stops_the_run_with_its_location(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = json.loads(FIXTURE.read_text(encoding="utf-8"))
    del data[0]["conversation"]["session_2"][3]["speaker"]
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(data), encoding="utf-8")
    code = main(["eval", "locomo", "--data", str(broken), "--out", str(tmp_path / "run")])
    printed = capsys.readouterr().err
    assert code == 2
    assert "sample 'mini-1', session 2, turn D2:4: field 'speaker' must be non-empty text (missing)" in printed
    assert not (tmp_path / "run").exists()  # nothing was started


def test_archival_sessions_are_searched_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    code, printed = run_eval(capsys, "--archival", "--samples", "mini-1", "--out", str(out))
    assert code == 0, printed
    results = results_of(out)
    by_question = {q["question"]: q for q in results["questions"]}
    # Two session passages, both naming Ava and Ben (every question names one of them), so every
    # scored question finds its evidence's sessions among the first 5 passages.
    assert {q: r["archival_session_recall"] for q, r in by_question.items() if r["scored"]} == {
        0: 1.0, 1: 1.0, 2: 1.0, 3: 1.0, 4: 1.0, 6: 1.0, 7: 1.0,
    }  # fmt: skip
    assert results["retrieval"]["overall (1-4)"]["archival_session_recall@5"] == 1.0
    assert results["retrieval"]["overall (1-4)"]["recall@1"] == round(4.5 / 6, 4)  # recall unchanged by archival


def test_jobs_work_on_samples_at_once_with_the_same_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_eval(capsys, "--out", str(tmp_path / "one"))[0] == 0
    assert run_eval(capsys, "--out", str(tmp_path / "two"), "--jobs", "2")[0] == 0
    one, two = results_of(tmp_path / "one"), results_of(tmp_path / "two")
    assert without_timings(one) == without_timings(two)


async def test_each_question_ranks_as_a_live_turn_of_the_agent_searching_it(
    tmp_path: Path, llm_server: FakeLLMServer, openai_client: openai.AsyncOpenAI
) -> None:
    # What the eval publishes must be what users get: the question a user message of the agent,
    # then its conversation_search. A live turn through the scripted model searches each question's
    # text; its first page must be the eval's first five, in order.
    out = tmp_path / "run"
    settings = load_settings(None, env_file=None, overrides={"data_dir": str(tmp_path / "data")})
    options = EvalOptions(data=FIXTURE, mode="retrieval", samples=("mini-1",), store="sqlite", jobs=1, out=out,
                          archival=False, baseline=None)  # fmt: skip
    await eval_locomo(settings, options, console=Console(quiet=True))
    ranked = {q["question"]: q["ranked"] for q in results_of(out)["questions"] if q["scored"]}
    sample = load_locomo(FIXTURE)[0]
    turn_of = {f"{t.speaker}: {t.text}": t.dia_id for t in sample.turns}
    store = SQLiteStore(out / "locomo-mini-1.sqlite3")
    await store.open()
    try:
        loop = AgentLoop(
            store=store,
            model=OpenAIChatModel(client=openai_client, model="gpt-4o-mini", max_retries=0),
            counter=TokenCounter(model="gpt-4o-mini"),
            embedder=None,
            options=shipped_options(context_window=16_000, max_output_tokens=1_000),
        )
        agent = await store.get_agent_by_name(agent_name(sample))
        assert agent is not None
        ingested = IngestedAgent(agent_id=agent.id, last_seq=len(sample.turns), turns=len(sample.turns), dia_ids={})
        for question in (q for q in sample.questions if q.index in ranked):
            llm_server.enqueue(
                ToolCallReply(calls=(tool_call("conversation_search", {"query": question.text}),)),
                ToolCallReply(calls=(tool_call("send_message", {"message": "ok"}),)),
            )
            async with undone_turn(ingested, store=store, loop=loop):
                await loop.run_turn(agent.id, [question_message(question, sample)], reply=_Sink())
            tool = [m for m in llm_server.chat_requests[-1].body["messages"] if m["role"] == "tool"][-1]
            result = json.loads(tool["content"])["message"]
            lines = [line.split("] ", 1)[1] for line in result.splitlines()[1:]]
            assert [turn_of[line] for line in lines] == ranked[question.index][:5], question.text
    finally:
        await store.close()


class _Sink:
    async def send(self, text: str) -> str | None:
        return None

    async def typing(self) -> None:
        return None
