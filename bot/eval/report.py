"""Per-question results into figures: per category and overall, `results.json`, a Markdown report
and the terminal table.

Overall figures cover categories 1-4; the adversarial category (5) is reported apart, as papers
do (its questions have no answer in the conversation, and often no evidence). Questions without
evidence are not scored for retrieval (counted as `unscored`). Timings (search latency, ingest
time) sit under `timings`: they are the only figures that differ between two runs of the same data.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.table import Table

from bot.eval.locomo import ADVERSARIAL, CATEGORY_NAMES
from bot.eval.retrieval import RECALL_KS

__all__ = ["QA_KINDS", "render_markdown", "render_tables", "summarize", "write_results"]

#: The answerers of QA mode: the agent, and the full-context baseline when asked for.
QA_KINDS = ("agent", "full-context")
_OVERALL = "overall (1-4)"

type Record = Mapping[str, Any]


def _groups(records: Iterable[Record]) -> dict[str, list[Record]]:
    groups: dict[str, list[Record]] = {CATEGORY_NAMES[c]: [] for c in sorted(CATEGORY_NAMES) if c != ADVERSARIAL}
    groups[_OVERALL] = []
    groups[CATEGORY_NAMES[ADVERSARIAL]] = []
    for record in records:
        category = int(record["category"])
        groups[CATEGORY_NAMES[category]].append(record)
        if category != ADVERSARIAL:
            groups[_OVERALL].append(record)
    return groups


def _mean(values: Sequence[float]) -> float | None:
    return round(statistics.fmean(values), 4) if values else None


def _percentile(values: Sequence[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))], 3)


def _retrieval(records: Sequence[Record]) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for name, group in _groups(records).items():
        scored = [r for r in group if r["scored"]]
        row: dict[str, Any] = {"questions": len(group), "scored": len(scored)}
        for k in RECALL_KS:
            row[f"recall@{k}"] = _mean([float(r["recall"][str(k)]) for r in scored])
        row["mrr"] = _mean([float(r["rr"]) for r in scored])
        sessions = [float(r["archival_session_recall"]) for r in scored if r.get("archival_session_recall") is not None]
        if sessions:
            row["archival_session_recall@5"] = _mean(sessions)
        table[name] = row
    return table


def _qa(records: Sequence[Record]) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for name, group in _groups(records).items():
        correct = sum(1 for r in group if r["correct"])
        tokens = [int(r["prompt_tokens"]) + int(r["completion_tokens"]) for r in group]
        table[name] = {
            "questions": len(group),
            "correct": correct,
            "accuracy": round(correct / len(group), 4) if group else None,
            "f1": _mean([float(r["f1"]) for r in group]),
            "prompt_tokens_per_question": _mean([float(r["prompt_tokens"]) for r in group]),
            "completion_tokens_per_question": _mean([float(r["completion_tokens"]) for r in group]),
            "tokens_per_correct_answer": round(sum(tokens) / correct, 1) if correct else None,
            "judge_tokens": sum(int(r["judge_tokens"]) for r in group),
            "failed_turns": sum(1 for r in group if r.get("error")),
        }
    return table


def summarize(
    records: Sequence[Record], *, mode: str, options: Mapping[str, Any], sample_ids: Sequence[str]
) -> dict[str, Any]:
    """results.json's content from every per-question record of the run (in any order)."""
    order = {sample: i for i, sample in enumerate(sample_ids)}
    ordered = sorted(
        (r for r in records if r["kind"] != "ingest"),
        key=lambda r: (order.get(str(r["sample"]), len(order)), int(r["question"]), str(r["kind"])),
    )
    results: dict[str, Any] = {
        "benchmark": "locomo",
        "mode": mode,
        "options": dict(options),
        "samples": list(sample_ids),
    }
    timings: dict[str, Any] = {
        "ingest_seconds": round(sum(float(r["seconds"]) for r in records if r["kind"] == "ingest"), 3)
    }
    if mode == "retrieval":
        retrieval = [r for r in ordered if r["kind"] == "retrieval"]
        results["retrieval"] = _retrieval(retrieval)
        results["unscored_questions"] = sum(1 for r in retrieval if not r["scored"])
        latencies = [float(r["latency_ms"]) for r in retrieval if "latency_ms" in r]
        timings["search_ms"] = {"p50": _percentile(latencies, 0.5), "p95": _percentile(latencies, 0.95)}
    else:
        results["qa"] = {kind: _qa([r for r in ordered if r["kind"] == kind]) for kind in QA_KINDS}
        results["qa"] = {kind: table for kind, table in results["qa"].items() if table[_OVERALL]["questions"]}
    results["questions"] = [_public(r) for r in ordered]
    results["timings"] = timings
    return results


def _public(record: Record) -> dict[str, Any]:
    return {key: value for key, value in record.items() if key != "latency_ms"}


def write_results(results: Mapping[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """`results.json` and `report.md` in `out_dir`."""
    json_path, md_path = out_dir / "results.json", out_dir / "report.md"
    json_path.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    md_path.write_text(render_markdown(results), encoding="utf-8")
    return json_path, md_path


def _columns(results: Mapping[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of each table of the results."""
    tables: list[tuple[str, list[str], list[list[str]]]] = []
    if "retrieval" in results:
        keys = [f"recall@{k}" for k in RECALL_KS] + ["mrr"]
        has_archival = any("archival_session_recall@5" in row for row in results["retrieval"].values())
        keys += ["archival_session_recall@5"] if has_archival else []
        header = ["category", "questions", "scored", *keys]
        rows = [
            [name, str(row["questions"]), str(row["scored"]), *(_fmt(row.get(k)) for k in keys)]
            for name, row in results["retrieval"].items()
        ]
        tables.append(("Retrieval (turn level, question text as the query)", header, rows))
    for kind, table in results.get("qa", {}).items():
        keys = ["accuracy", "f1", "prompt_tokens_per_question", "completion_tokens_per_question",
                "tokens_per_correct_answer"]  # fmt: skip
        header = ["category", "questions", "correct", *keys]
        rows = [[name, str(row["questions"]), str(row["correct"]), *(_fmt(row.get(k)) for k in keys)]
                for name, row in table.items()]  # fmt: skip
        tables.append((f"QA ({kind}, LLM judge)", header, rows))
    return tables


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if value < 10 else f"{value:.0f}"
    return str(value)


def render_markdown(results: Mapping[str, Any]) -> str:
    lines = [f"# membot on LoCoMo: {results['mode']} mode", ""]
    options = ", ".join(f"{k}={v}" for k, v in results["options"].items())
    lines += [f"Samples: {', '.join(results['samples'])}. Options: {options}.", ""]
    for title, header, rows in _columns(results):
        lines += [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        lines.append("")
    timings = results["timings"]
    lines.append(f"Ingest: {timings['ingest_seconds']} s in this run.")
    if "search_ms" in timings:
        lines.append(f"Search latency: p50 {timings['search_ms']['p50']} ms, p95 {timings['search_ms']['p95']} ms.")
    if results.get("unscored_questions"):
        lines.append(f"Questions without evidence (not scored for retrieval): {results['unscored_questions']}.")
    lines += ["", "Data: LoCoMo (Maharana et al., ACL 2024), CC BY-NC 4.0.", ""]
    return "\n".join(lines)


def render_tables(results: Mapping[str, Any]) -> list[Table]:
    tables = []
    for title, header, rows in _columns(results):
        table = Table(title=title)
        for i, name in enumerate(header):
            table.add_column(name, justify="left" if i == 0 else "right")
        for row in rows:
            table.add_row(*row)
        tables.append(table)
    return tables
