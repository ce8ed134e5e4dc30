"""Reading LoCoMo's format (the hand-written fixture reproduces the real file's quirks) and the
retrieval metrics, worked out by hand."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.eval.locomo import LocomoFormatError, load_locomo, parse_session_time
from bot.eval.qa import answer_f1
from bot.eval.retrieval import rank_metrics

FIXTURE = Path(__file__).with_name("locomo_mini.json")


def fixture_data() -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads(FIXTURE.read_text(encoding="utf-8"))
    return data


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "locomo.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_the_fixture_reads_with_its_quirks_repaired() -> None:
    first, second = load_locomo(FIXTURE)
    assert (first.sample_id, first.speaker_a, first.speaker_b) == ("mini-1", "Ava", "Ben")
    assert [s.number for s in first.sessions] == [1, 2]
    assert first.sessions[1].at == datetime(2024, 4, 20, 16, 30, tzinfo=UTC)
    assert [t.dia_id for t in first.turns][:3] == ["D1:1", "D1:2", "D1:3"]
    # A shared image's caption is kept as text, after the turn's own words.
    assert first.turns[4].text == "Show me! [shares a photo of a cello on a wooden stand]"
    evidence = [q.evidence for q in first.questions]
    assert evidence == [
        ("D2:1",),
        ("D1:3",),
        ("D1:3", "D2:4"),  # "D1:3; D2:4": two ids in one string
        ("D2:1",),  # "D:2:1"
        ("D1:5",),  # "D1:05", and "D9:9" names no turn
        (),  # no evidence at all
        ("D1:1",),
        ("D1:3",),
    ]
    assert first.evidence_repairs == 4
    assert [q.answer for q in first.questions][-2:] == ["2024", "Not mentioned"]  # a number; an adversarial answer
    assert [q.category for q in first.questions] == [4, 4, 1, 2, 3, 3, 2, 5]
    assert second.sessions[0].turns[1].speaker == "Dan"


def test_session_times_read_as_utc() -> None:
    assert parse_session_time("1:56 pm on 8 May, 2023") == datetime(2023, 5, 8, 13, 56, tzinfo=UTC)
    assert parse_session_time("12:09 am on 13 September, 2023") == datetime(2023, 9, 13, 0, 9, tzinfo=UTC)
    assert parse_session_time("10:00 am on 3 March 2024") == datetime(2024, 3, 3, 10, 0, tzinfo=UTC)
    assert parse_session_time("sometime in May") is None
    assert parse_session_time("1:56 pm on 31 February, 2023") is None


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (lambda d: d[0].pop("sample_id"), "sample 0: field 'sample_id' must be non-empty text (missing)"),
        (
            lambda d: d[0]["conversation"]["session_2"][2].pop("text"),
            "sample 'mini-1', session 2, turn D2:3: field 'text' must be non-empty text (missing)",
        ),
        (
            lambda d: d[0]["conversation"]["session_1"][1].update(speaker=7),
            "sample 'mini-1', session 1, turn D1:2: field 'speaker' must be non-empty text (int 7)",
        ),
        (
            lambda d: d[0]["conversation"]["session_1"][3].update(dia_id="turn four"),
            "sample 'mini-1', session 1, turn turn four: 'turn four' is not a dialog id like D1:4",
        ),
        (
            lambda d: d[0]["conversation"].update(session_2_date_time="next spring"),
            "sample 'mini-1', session 2: cannot read the date 'next spring'",
        ),
        (
            lambda d: d[0]["conversation"].pop("session_1_date_time"),
            "sample 'mini-1', session 1: field 'session_1_date_time' is missing or not text",
        ),
        (
            lambda d: d[0]["conversation"]["session_2"].append({"speaker": "Ava", "dia_id": "D1:2", "text": "again"}),
            "sample 'mini-1', session 2, turn D1:2: dialog id used twice",
        ),
        (
            lambda d: d[1]["qa"][0].update(category=9),
            "sample 'mini-2', question 0: field 'category' must be one of 1-5",
        ),
        (lambda d: d[1]["qa"][0].pop("answer"), "sample 'mini-2', question 0: field 'answer' is missing"),
        (
            lambda d: d[1]["qa"][0].update(evidence="D1:1"),
            "sample 'mini-2', question 0: field 'evidence' must be a list of dialog ids",
        ),
        (lambda d: d[1]["conversation"].pop("session_1"), "sample 'mini-2': the conversation has no session_N lists"),
        (lambda d: d.append(d[1]), "sample 'mini-2' appears twice"),
    ],
)
def test_a_malformed_file_is_refused_naming_sample_session_and_turn(
    tmp_path: Path, break_it: Any, message: str
) -> None:
    data = fixture_data()
    break_it(data)
    path = write(tmp_path, data)
    with pytest.raises(LocomoFormatError) as caught:
        load_locomo(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)


def test_bad_json_and_wrong_shapes_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('[{"sample_id": "x",', encoding="utf-8")
    with pytest.raises(LocomoFormatError, match=r"broken.json: not JSON \(line 1, column 20"):
        load_locomo(path)
    with pytest.raises(LocomoFormatError, match="expected a JSON list of samples, found dict"):
        load_locomo(write(tmp_path, {"sample_id": "x"}))
    with pytest.raises(LocomoFormatError, match="cannot read the LoCoMo data file"):
        load_locomo(tmp_path / "missing.json")


def test_recall_at_k_and_reciprocal_rank_by_hand() -> None:
    # Evidence b, a, c: a is 1st, b 3rd, c never found.
    recall, rr = rank_metrics(["a", "x", "b", "y", "z", "w"], ["b", "a", "c"])
    assert recall == {1: pytest.approx(1 / 3), 5: pytest.approx(2 / 3), 10: pytest.approx(2 / 3)}
    assert rr == 1.0
    # The first evidence turn 7th: in the top 10 only.
    recall, rr = rank_metrics([f"n{i}" for i in range(6)] + ["e", "f"], ["e"])
    assert (recall, rr) == ({1: 0.0, 5: 0.0, 10: 1.0}, pytest.approx(1 / 7))
    assert rank_metrics([], ["e"]) == ({1: 0.0, 5: 0.0, 10: 0.0}, 0.0)
    with pytest.raises(ValueError, match="without evidence"):
        rank_metrics(["a"], [])


def test_answer_f1_follows_locomo_per_category() -> None:
    first = load_locomo(FIXTURE)[0]
    boston, multi, open_domain, adversarial = (
        first.questions[0],
        first.questions[2],
        first.questions[4],
        first.questions[7],
    )
    assert answer_f1(boston, "In Boston.") == pytest.approx(2 / 3)  # "in boston" vs "boston": p 1/2, r 1
    assert answer_f1(boston, "Chicago") == 0.0
    assert answer_f1(multi, "Beagles") == 1.0  # stems match
    # Category 3 scores against the part before ';'.
    assert answer_f1(open_domain, "probably yes") == 1.0
    assert answer_f1(adversarial, "That is not mentioned in the conversation.") == 1.0
    assert answer_f1(adversarial, "A tabby.") == 0.0
