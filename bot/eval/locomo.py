"""LoCoMo's data format: read, validate and normalise `locomo10.json` (or any file in its format).

A file is a JSON list of samples. Each sample has `sample_id`, `conversation` (`speaker_a`,
`speaker_b`, then `session_N` lists of turns `{speaker, dia_id, text, [img_url, blip_caption,
query]}` with `session_N_date_time` such as "1:56 pm on 8 May, 2023"; turns carry no time of
their own) and `qa` (`question`, `answer` or `adversarial_answer`, `evidence`: dialog ids,
`category`). Other keys (event summaries, observations) are ignored.

What is refused, with the sample, session and turn named: bad JSON, a missing or mistyped
field, an unreadable session date, a duplicate dialog id. What is repaired, as the real file
needs (each repair counted in `Sample.evidence_repairs`): several ids in one string
(`"D8:6; D9:17"`), `"D:11:26"` for `D11:26`, `"D30:05"` for `D30:5`; ids naming no turn are
dropped; a question may have no evidence (it is then not scored for retrieval).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.errors import ConfigError

__all__ = [
    "CATEGORY_NAMES",
    "LocomoFormatError",
    "Question",
    "Sample",
    "Session",
    "Turn",
    "load_locomo",
    "parse_evidence",
    "parse_locomo",
    "parse_session_time",
]

#: LoCoMo's category codes, as its own evaluation code names them.
CATEGORY_NAMES: dict[int, str] = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop", 5: "adversarial"}
#: The category papers report apart (its questions have no answer in the conversation).
ADVERSARIAL = 5

_SESSION_KEY = re.compile(r"session_(\d+)")
_DIA_ID = re.compile(r"D:?(\d+):0*(\d+)")
_SESSION_TIME = re.compile(r"(\d{1,2}):(\d{2})\s*([ap]m)\s+on\s+(\d{1,2})\s+([A-Za-z]+),?\s+(\d{4})", re.IGNORECASE)
_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
           "november", "december")  # fmt: skip


class LocomoFormatError(ConfigError):
    """A LoCoMo data file that cannot be read: the message names the file, sample, session and turn."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Turn:
    dia_id: str
    speaker: str
    #: The turn's text, with a shared image's caption appended as text ("[shares a photo of ...]").
    text: str
    session: int
    at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Session:
    number: int
    at: datetime
    turns: tuple[Turn, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Question:
    #: Position in the sample's `qa` list: with the sample id, the question's identity in results.
    index: int
    text: str
    answer: str
    category: int
    #: Normalised dialog ids that name a turn of the sample, in order, without repeats.
    evidence: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    sample_id: str
    speaker_a: str
    speaker_b: str
    sessions: tuple[Session, ...]
    questions: tuple[Question, ...]
    #: Evidence ids that needed repair (split, reformatted) or were dropped (naming no turn).
    evidence_repairs: int = 0

    @property
    def turns(self) -> tuple[Turn, ...]:
        return tuple(turn for session in self.sessions for turn in session.turns)


def load_locomo(path: Path) -> list[Sample]:
    """Read and validate a LoCoMo file; `LocomoFormatError` names what is wrong and where."""
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LocomoFormatError(f"{path}: cannot read the LoCoMo data file ({exc})") from exc
    return parse_locomo(raw, source=str(path))


def parse_locomo(raw: str, *, source: str) -> list[Sample]:
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise LocomoFormatError(f"{source}: not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from exc
    if not isinstance(data, list):
        raise LocomoFormatError(f"{source}: expected a JSON list of samples, found {type(data).__name__}")
    samples: list[Sample] = []
    seen: set[str] = set()
    for position, item in enumerate(data):
        sample = _sample(item, f"{source}: sample {position}")
        if sample.sample_id in seen:
            raise LocomoFormatError(f"{source}: sample {sample.sample_id!r} appears twice")
        seen.add(sample.sample_id)
        samples.append(sample)
    return samples


def _sample(item: object, where: str) -> Sample:
    obj = _object(item, where)
    sample_id = _text(obj, "sample_id", where)
    where = f"{where.rsplit(': ', 1)[0]}: sample {sample_id!r}"
    conversation = _object(obj.get("conversation"), f"{where}, field 'conversation'")
    speaker_a = _text(conversation, "speaker_a", f"{where}, conversation")
    speaker_b = _text(conversation, "speaker_b", f"{where}, conversation")
    numbers = sorted(int(m[1]) for key in conversation if (m := _SESSION_KEY.fullmatch(key)))
    if not numbers:
        raise LocomoFormatError(f"{where}: the conversation has no session_N lists")
    sessions: list[Session] = []
    ids: set[str] = set()
    for number in numbers:
        session = _session(conversation, number, where)
        for turn in session.turns:
            if turn.dia_id in ids:
                raise LocomoFormatError(f"{where}, session {number}, turn {turn.dia_id}: dialog id used twice")
            ids.add(turn.dia_id)
        sessions.append(session)
    qa = obj.get("qa", [])
    if not isinstance(qa, list):
        raise LocomoFormatError(f"{where}: field 'qa' must be a list, found {type(qa).__name__}")
    questions: list[Question] = []
    repairs = 0
    for index, entry in enumerate(qa):
        question, repaired = _question(entry, index, ids, where)
        questions.append(question)
        repairs += repaired
    return Sample(
        sample_id=sample_id,
        speaker_a=speaker_a,
        speaker_b=speaker_b,
        sessions=tuple(sessions),
        questions=tuple(questions),
        evidence_repairs=repairs,
    )


def _session(conversation: Mapping[str, Any], number: int, where: str) -> Session:
    here = f"{where}, session {number}"
    turns_raw = conversation[f"session_{number}"]
    if not isinstance(turns_raw, list):
        raise LocomoFormatError(f"{here}: expected a list of turns, found {type(turns_raw).__name__}")
    when_raw = conversation.get(f"session_{number}_date_time")
    if not isinstance(when_raw, str):
        raise LocomoFormatError(f"{here}: field 'session_{number}_date_time' is missing or not text")
    at = parse_session_time(when_raw)
    if at is None:
        raise LocomoFormatError(f"{here}: cannot read the date {when_raw!r} (expected e.g. '1:56 pm on 8 May, 2023')")
    turns: list[Turn] = []
    for position, turn_raw in enumerate(turns_raw, start=1):
        turn_where = f"{here}, turn {position}"
        turn_obj = _object(turn_raw, turn_where)
        dia_raw = _text(turn_obj, "dia_id", turn_where)
        turn_where = f"{here}, turn {dia_raw}"
        dia_id = normalise_dia_id(dia_raw)
        if dia_id is None:
            raise LocomoFormatError(f"{turn_where}: {dia_raw!r} is not a dialog id like D{number}:{position}")
        text = _text(turn_obj, "text", turn_where, allow_empty=True)
        caption = turn_obj.get("blip_caption")
        if caption is not None and not isinstance(caption, str):
            raise LocomoFormatError(f"{turn_where}: field 'blip_caption' must be text")
        if caption:
            text = f"{text} [shares {caption}]".strip()
        speaker = _text(turn_obj, "speaker", turn_where)
        turns.append(Turn(dia_id=dia_id, speaker=speaker, text=text, session=number, at=at))
    return Session(number=number, at=at, turns=tuple(turns))


def _question(entry: object, index: int, ids: set[str], where: str) -> tuple[Question, int]:
    here = f"{where}, question {index}"
    obj = _object(entry, here)
    text = _text(obj, "question", here)
    category = obj.get("category")
    if not isinstance(category, int) or isinstance(category, bool) or category not in CATEGORY_NAMES:
        raise LocomoFormatError(f"{here}: field 'category' must be one of 1-5, found {category!r}")
    answer = obj.get("answer", obj.get("adversarial_answer"))
    if answer is None and category != ADVERSARIAL:
        raise LocomoFormatError(f"{here}: field 'answer' is missing")
    evidence_raw = obj.get("evidence", [])
    if not isinstance(evidence_raw, list) or not all(isinstance(e, str) for e in evidence_raw):
        raise LocomoFormatError(f"{here}: field 'evidence' must be a list of dialog ids")
    evidence, repairs = parse_evidence(evidence_raw, ids)
    return Question(index=index, text=text, answer="" if answer is None else str(answer), category=category,
                    evidence=evidence), repairs  # fmt: skip


def normalise_dia_id(raw: str) -> str | None:
    """`D11:26` from `D11:26`, `D:11:26` or `D11:026`; None when it is not a dialog id at all."""
    match = _DIA_ID.fullmatch(raw.strip())
    return None if match is None else f"D{int(match[1])}:{int(match[2])}"


def parse_evidence(raw: list[str], ids: set[str]) -> tuple[tuple[str, ...], int]:
    """The evidence ids that name a turn in `ids`, normalised, and how many needed a repair."""
    found: dict[str, None] = {}
    repairs = 0
    for entry in raw:
        parts = [p for p in re.split(r"[;,\s]+", entry) if p]
        repairs += len(parts) > 1
        for part in parts:
            dia_id = normalise_dia_id(part)
            if dia_id is None or dia_id not in ids:
                repairs += 1
                continue
            repairs += dia_id != part
            found.setdefault(dia_id)
    return tuple(found), repairs


def parse_session_time(text: str) -> datetime | None:
    """`1:56 pm on 8 May, 2023` as an aware UTC datetime (LoCoMo gives no zone); None if unreadable."""
    match = _SESSION_TIME.search(text)
    if match is None:
        return None
    hour, minute, half, day, month_name, year = match.groups()
    months = [m for m in _MONTHS if m.startswith(month_name.lower()[:3])]
    if len(months) != 1 or not 1 <= int(hour) <= 12:
        return None
    hour24 = int(hour) % 12 + (12 if half.lower() == "pm" else 0)
    try:
        return datetime(int(year), _MONTHS.index(months[0]) + 1, int(day), hour24, int(minute), tzinfo=UTC)
    except ValueError:
        return None


def _object(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise LocomoFormatError(f"{where}: expected an object, found {type(value).__name__}")
    return value


def _text(obj: Mapping[str, Any], key: str, where: str, *, allow_empty: bool = False) -> str:
    value = obj.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and key == "sample_id":
        value = str(value)
    if not isinstance(value, str) or (not value.strip() and not allow_empty):
        found = "missing" if key not in obj else f"{type(value).__name__} {value!r}"[:60]
        raise LocomoFormatError(f"{where}: field {key!r} must be non-empty text ({found})")
    return value
