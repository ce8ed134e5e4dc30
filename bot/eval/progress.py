"""The resumable record of one eval run: `run.json` (what was asked) and `progress.jsonl` (one line
per finished question or ingest, appended and flushed as each finishes).

A run stopped halfway (Ctrl-C, a crash, a lost endpoint) is resumed by running the same command
again: finished questions are read back, not asked again, so the figures are those of an
uninterrupted run. A torn last line (the process died while writing it) is ignored and that
question asked again. Running with other options into the same directory is refused, so two
runs' records are never mixed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bot.errors import ConfigError

__all__ = ["RunProgress"]

_log = logging.getLogger(__name__)


class RunProgress:
    """Finished records of a run, and the file new ones are appended to."""

    def __init__(self, out_dir: Path, records: list[dict[str, Any]]) -> None:
        self._path = out_dir / "progress.jsonl"
        self._records = records
        self._done = {self.key(r) for r in records}

    @classmethod
    def open(cls, out_dir: Path, config: Mapping[str, Any]) -> RunProgress:
        """Start a run in `out_dir`, or resume the one there when it was made with `config`."""
        out_dir.mkdir(parents=True, exist_ok=True)
        run_path, progress_path = out_dir / "run.json", out_dir / "progress.jsonl"
        wanted = json.loads(json.dumps(config))  # as it reads back from the file
        if run_path.exists():
            try:
                found = json.loads(run_path.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise ConfigError(f"{run_path}: unreadable ({exc}); delete {out_dir} or choose another --out") from exc
            if found != wanted:
                changed = sorted(k for k in {*found, *wanted} if found.get(k) != wanted.get(k))
                raise ConfigError(
                    f"{out_dir} holds a run with other options ({', '.join(changed)}); "
                    "choose another --out or delete that directory"
                )
        else:
            run_path.write_text(json.dumps(wanted, indent=2) + "\n", encoding="utf-8")
        records: list[dict[str, Any]] = []
        if progress_path.exists():
            lines = progress_path.read_text(encoding="utf-8").splitlines()
            for number, line in enumerate(lines, start=1):
                try:
                    records.append(json.loads(line))
                except ValueError:
                    _log.warning("%s line %d is torn; that question will be asked again", progress_path, number)
            if lines and records and not progress_path.read_text(encoding="utf-8").endswith("\n"):
                with progress_path.open("a", encoding="utf-8") as file:
                    file.write("\n")  # so the next record starts on its own line
        return cls(out_dir, records)

    @staticmethod
    def key(record: Mapping[str, Any]) -> tuple[str, str, int]:
        return str(record["kind"]), str(record["sample"]), int(record.get("question", -1))

    def is_done(self, kind: str, sample: str, question: int = -1) -> bool:
        return (kind, sample, question) in self._done

    @property
    def records(self) -> list[dict[str, Any]]:
        return list(self._records)

    def add(self, record: dict[str, Any]) -> None:
        """Keep one finished record, on disk first."""
        with self._path.open("a", encoding="utf-8") as file:
            file.write(json.dumps(record, ensure_ascii=False) + "\n")
            file.flush()
        self._records.append(record)
        self._done.add(self.key(record))
