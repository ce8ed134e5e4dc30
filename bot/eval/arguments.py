"""The `membot eval` command line: arguments, and the options they make. Light to import (the CLI
builds its parser on every start); the work is in `bot.eval.command`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.eval.command import EvalOptions

__all__ = ["add_eval_parser", "eval_options"]

_DESCRIPTION = """\
How well membot remembers, on LoCoMo (long conversations with questions tagged single-hop,
multi-hop, temporal, open-domain and adversarial, each with its evidence turns).

retrieval (offline): each question is a user message of the agent, then the query of its own
  conversation_search in that turn (as live searches run); recall@1/5/10 and MRR of the evidence
  turns, per category, and search latency.
qa: each question is a user message to the agent in a fresh turn (the agent decides what to
  search); an LLM judge grades the answers (MEMBOT_EVAL__JUDGE_MODEL, default the chat model).

Without --data, LoCoMo (CC BY-NC 4.0) is downloaded once into the data directory, pinned to a
commit and checked by SHA-256. A stopped run resumes when run again with the same options."""


def add_eval_parser(commands: Any) -> None:
    """Add `eval locomo` to the CLI's subcommands (`commands` is argparse's subparsers action)."""
    evaluate = commands.add_parser("eval", help="benchmark memory: `membot eval locomo`")
    benchmarks = evaluate.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    locomo = benchmarks.add_parser(
        "locomo",
        help="LoCoMo: retrieval quality offline, answer quality with an LLM judge",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    locomo.add_argument("--data", type=Path, metavar="FILE", help="a file in LoCoMo's format (default: download)")
    locomo.add_argument("--mode", choices=["retrieval", "qa"], default="retrieval", help="default: retrieval")
    locomo.add_argument(
        "--samples", metavar="IDS", help="comma-separated sample ids (e.g. conv-26,conv-30); default: all"
    )
    locomo.add_argument("--store", choices=["sqlite", "mongodb"], default="sqlite", help="default: sqlite")
    locomo.add_argument("--jobs", type=int, default=1, metavar="N", help="samples worked on at once (default: 1)")
    locomo.add_argument(
        "--out", type=Path, metavar="DIR", help="results, report and resumable progress (default: ./locomo-MODE)"
    )
    locomo.add_argument(
        "--archival", action="store_true", help="also store each session as archival passages and search them"
    )
    locomo.add_argument(
        "--baseline", choices=["full-context"], help="qa: also answer with the whole conversation in the prompt"
    )
    locomo.add_argument("--debug", action="store_true", help="debug logs")


def eval_options(args: argparse.Namespace) -> EvalOptions:
    from bot.eval.command import EvalOptions

    samples = tuple(s.strip() for s in args.samples.split(",") if s.strip()) if args.samples else None
    return EvalOptions(
        data=args.data,
        mode=args.mode,
        samples=samples or None,
        store=args.store,
        jobs=args.jobs,
        out=args.out or Path(f"locomo-{args.mode}"),
        archival=args.archival,
        baseline=args.baseline,
    )
