"""`membot eval locomo --mode qa` against the scripted LLM server: the agent answers in a fresh turn
(searching recall itself), a scripted judge grades it, and the full-context baseline runs beside."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from bot.cli import main
from tests.fakes.llm_server import FakeLLMServer, RawReply, TextReply, ToolCallReply, tool_call

FIXTURE = Path(__file__).with_name("locomo_mini.json")


@pytest.fixture(autouse=True)
def _llm(llm_server: FakeLLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMBOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("OPENAI_BASE_URL", llm_server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("MEMBOT_LLM__MODEL", "gpt-4o-mini")
    monkeypatch.setenv("MEMBOT_EVAL__JUDGE_MODEL", "judge-model")


def run_qa(out: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    args = ["--data", str(FIXTURE), "--samples", "mini-2", "--mode", "qa", "--baseline", "full-context"]
    code = main(["eval", "locomo", *args, "--out", str(out)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def messages_of(request_body: dict[str, Any]) -> str:
    return json.dumps(request_body["messages"])


def test_qa_mode_asks_the_agent_grades_with_the_judge_and_compares_full_context(
    llm_server: FakeLLMServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    llm_server.enqueue(
        # The agent: searches recall, then answers.
        ToolCallReply(calls=(tool_call("conversation_search", {"query": "Cleo bake", "request_heartbeat": True}),)),
        ToolCallReply(calls=(tool_call("send_message", {"message": "Sourdough bread."}),)),
        TextReply(text='Both name sourdough. {"label": "CORRECT"}'),  # the judge
        TextReply(text="She is learning to bake pizza."),  # the full-context baseline
        TextReply(text='Pizza is not sourdough. {"label": "WRONG"}'),  # the judge
    )
    out = tmp_path / "qa"
    code, printed = run_qa(out, capsys)
    assert code == 0, printed

    chats = llm_server.chat_requests
    assert [r.body["model"] for r in chats] == [
        "gpt-4o-mini",
        "gpt-4o-mini",
        "judge-model",
        "gpt-4o-mini",
        "judge-model",
    ]
    # The conversation is in recall only: the first prompt holds the question, not the turns.
    first = messages_of(chats[0].body)
    assert "What is Cleo learning to bake?" in first and "sourdough" not in first.lower()
    # Its search found the ingested turn: speaker, session time, text.
    assert "[2024-01-01 21:15] Cleo: Happy new year! I am learning to bake sourdough." in messages_of(chats[1].body)
    judged = messages_of(chats[2].body)
    assert "Gold answer: sourdough" in judged and "Generated answer: Sourdough bread." in judged
    baseline = messages_of(chats[3].body)
    assert "Session 1 (01 January 2024, 21:15):" in baseline and "Dan: Sourdough is hard" in baseline

    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    agent, full = results["qa"]["agent"]["single-hop"], results["qa"]["full-context"]["single-hop"]
    assert (agent["questions"], agent["correct"], agent["accuracy"]) == (1, 1, 1.0)
    assert agent["f1"] == round(2 / 3, 4)  # "sourdough bread" vs "sourdough": precision 1/2, recall 1
    assert (full["correct"], full["accuracy"], full["f1"], full["tokens_per_correct_answer"]) == (0, 0.0, 0.0, None)
    question = next(q for q in results["questions"] if q["kind"] == "agent")
    assert question["prompt_tokens"] > 0 and question["completion_tokens"] > 0
    assert agent["tokens_per_correct_answer"] == question["prompt_tokens"] + question["completion_tokens"]
    assert question["judge_tokens"] > 0
    assert "QA (agent, LLM judge)" in printed and "QA (full-context, LLM judge)" in printed

    # The question's turn was undone: recall holds the conversation only, the context starts after it.
    with sqlite3.connect(out / "locomo-mini-2.sqlite3") as db:
        rows = db.execute("SELECT platform_message_id FROM messages ORDER BY seq").fetchall()
        start = db.execute("SELECT context_start_seq FROM agents").fetchone()
    db.close()
    assert [r[0] for r in rows] == ["D1:1", "D1:2"]
    assert start == (3,)

    # Run again: everything is done, so nothing is asked (the script is empty) and the results stand.
    before = (out / "results.json").read_text(encoding="utf-8")
    code, printed = run_qa(out, capsys)
    assert code == 0, printed
    assert len(llm_server.chat_requests) == 5
    after = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert {k: v for k, v in after.items() if k != "timings"} == {
        k: v for k, v in json.loads(before).items() if k != "timings"
    }


def test_a_failed_turn_is_recorded_as_wrong_and_the_run_goes_on(
    llm_server: FakeLLMServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMBOT_LLM__MAX_RETRIES", "0")
    llm_server.enqueue(
        RawReply(status=400, body={"error": {"message": "bad request", "type": "invalid_request_error"}})
    )
    llm_server.enqueue(TextReply(text="sourdough"), TextReply(text='{"label": "CORRECT"}'))
    out = tmp_path / "qa"
    code, printed = run_qa(out, capsys)
    assert code == 0, printed
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    agent = results["qa"]["agent"]["overall (1-4)"]
    assert (agent["correct"], agent["failed_turns"]) == (0, 1)  # the apology is not graded: no judge call
    assert results["qa"]["full-context"]["overall (1-4)"]["correct"] == 1
    assert [r.body["model"] for r in llm_server.chat_requests] == ["gpt-4o-mini", "gpt-4o-mini", "judge-model"]
