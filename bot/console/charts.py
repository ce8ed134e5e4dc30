"""The console's charts: inline SVG drawn on the server (no script, no front-end build).

Each chart is an `<svg role="img">` with a title and a description a screen reader reads, a
`<title>` on every bar and segment (the tooltip), and the page prints the same numbers as text
beside it, so colour is never the only carrier of a value. Colours are presentation attributes
(the Content-Security-Policy forbids inline styles) with at least 3:1 contrast on white.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from bot.agent.context import ContextBreakdown
from bot.console.html import Html, el, join

__all__ = ["Segment", "context_segments", "daily_bars", "segments_bar", "swatch"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Segment:
    label: str
    tokens: int
    colour: str


def context_segments(breakdown: ContextBreakdown) -> list[Segment]:
    """The context window in the prompt's order, then the reply's reserve and what is left."""
    return [
        Segment(label="system prompt", tokens=breakdown.system, colour="#3b6ea5"),
        Segment(label="function schemas", tokens=breakdown.functions, colour="#c4620f"),
        Segment(label="core memory", tokens=breakdown.core_memory, colour="#3d8a37"),
        Segment(label="summary", tokens=breakdown.summary, colour="#8c5a9e"),
        Segment(label="messages", tokens=breakdown.messages, colour="#c23b3e"),
        Segment(label="reserved for the reply", tokens=breakdown.reserved, colour="#6f6f6f"),
        Segment(label="free", tokens=max(0, breakdown.free), colour="#ffffff"),
    ]


def swatch(colour: str) -> Html:
    """A small square of `colour` for a legend (decorative: the label says what it is)."""
    return el(
        "svg",
        el("rect", x=0.5, y=0.5, width=13, height=13, fill=colour, stroke="#444"),
        width=14,
        height=14,
        viewBox="0 0 14 14",
        aria_hidden="true",
        focusable="false",
        class_="swatch",
    )


def segments_bar(segments: Sequence[Segment], *, total: int, title: str, description: str) -> Html:
    """One horizontal bar, `total` wide, split into `segments` left to right."""
    width = 1000.0
    x = 0.0
    rects = []
    for segment in segments:
        if segment.tokens <= 0 or total <= 0:
            continue
        w = min(width - x, width * segment.tokens / total)
        share = 100 * segment.tokens / total
        rects.append(
            el(
                "rect",
                el("title", f"{segment.label}: {segment.tokens:,} tokens ({share:.1f} %)"),
                x=round(x, 2),
                y=0,
                width=round(w, 2),
                height=48,
                fill=segment.colour,
                stroke="#444" if segment.colour == "#ffffff" else None,
            )
        )
        x += w
    return el(
        "svg",
        el("title", title, id="ctx-title"),
        el("desc", description, id="ctx-desc"),
        rects,
        el("rect", x=0.5, y=0.5, width=width - 1, height=47, fill="none", stroke="#444"),
        viewBox=f"0 0 {int(width)} 48",
        preserveAspectRatio="none",
        role="img",
        aria_labelledby="ctx-title ctx-desc",
        class_="bar-chart",
    )


def daily_bars(
    days: Sequence[date], values: Sequence[int], *, budget: int, title: str, chart_id: str, colour: str = "#3b6ea5"
) -> Html:
    """Tokens per day as vertical bars, with the daily budget as a dashed line (0: no budget)."""
    left, right, top, bottom = 58, 6, 16, 22
    width, height = 400, 150
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max([*values, budget, 1])
    step = plot_w / max(len(days), 1)

    def y_of(value: int) -> float:
        return top + plot_h - plot_h * value / peak

    bars = []
    for index, (day, value) in enumerate(zip(days, values, strict=True)):
        over = budget > 0 and value > budget
        bar_h = plot_h * value / peak
        bars.append(
            el(
                "rect",
                el("title", f"{day.isoformat()}: {value:,} tokens" + (" (over the budget)" if over else "")),
                x=round(left + index * step + step * 0.12, 2),
                y=round(top + plot_h - bar_h, 2),
                width=round(step * 0.76, 2),
                height=round(max(bar_h, 0.0), 2),
                fill="#b3261e" if over else colour,
            )
        )
    labels = [
        el("text", f"{peak:,}", x=left - 6, y=top + 4, text_anchor="end", class_="axis"),
        el("text", "0", x=left - 6, y=top + plot_h + 4, text_anchor="end", class_="axis"),
    ]
    for index in sorted({0, len(days) // 2, len(days) - 1}) if days else ():
        # The first and last labels align with the plot's edges so neither is cut off.
        anchor, x = "middle", left + index * step + step / 2
        if index == 0:
            anchor, x = "start", left
        elif index == len(days) - 1:
            anchor, x = "end", width - right
        labels.append(
            el("text", days[index].strftime("%m-%d"), x=round(x, 2), y=height - 5, text_anchor=anchor, class_="axis")
        )
    budget_line: list[Html] = []
    if budget > 0:
        y = round(y_of(budget), 2)
        budget_line = [
            el(
                "line",
                x1=left,
                x2=width - right,
                y1=y,
                y2=y,
                stroke="#b3261e",
                stroke_width=1.5,
                stroke_dasharray="6 4",
            ),
            el("text", f"budget {budget:,}", x=width - right, y=y - 4, text_anchor="end", class_="axis budget"),
        ]
    total = sum(values)
    description = f"{total:,} tokens over {len(days)} days, at most {max(values, default=0):,} in a day" + (
        f"; daily budget {budget:,}" if budget > 0 else "; no daily budget"
    )
    return el(
        "svg",
        el("title", title, id=f"{chart_id}-title"),
        el("desc", description, id=f"{chart_id}-desc"),
        el("line", x1=left, x2=width - right, y1=top + plot_h, y2=top + plot_h, stroke="#444"),
        join(bars),
        join(budget_line),
        join(labels),
        viewBox=f"0 0 {width} {height}",
        role="img",
        aria_labelledby=f"{chart_id}-title {chart_id}-desc",
        class_="day-chart",
    )
