"""One `membot doctor` finding: what was checked, how it went, how to fix it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Check", "Status"]

#: ok: works; warn: works, but something is off; fail: membot will not work until it is fixed.
Status = Literal["ok", "warn", "fail"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Check:
    """The outcome of one check."""

    name: str
    status: Status
    detail: str
    #: What to do about a warn or a fail.
    hint: str = ""
