"""The operator's web console: every agent's memory, context and cost at a glance.

Served by the ops server at `/console/` when `console.token` is set (see docs/console.md).
Imported only then, so `membot chat` and a console-less `membot run` never load it.
"""

from __future__ import annotations

from bot.console.server import OPERATOR, console_app

__all__ = ["OPERATOR", "console_app"]
