"""The console's page frame and the small pieces every page uses (links, times, forms)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import quote, urlencode

from bot.console.html import Child, Html, el, join, void

__all__ = [
    "BASE",
    "Section",
    "agent_url",
    "csrf_field",
    "definition_list",
    "notice",
    "page",
    "tokens",
    "url",
    "when",
]

#: Where the ops server mounts the console.
BASE = "/console"

Section = Literal["agents", "cost", "audit", "login", "none"]

_SECTIONS: tuple[tuple[Section, str, str], ...] = (
    ("agents", "Agents", f"{BASE}/agents"),
    ("cost", "Cost", f"{BASE}/cost"),
    ("audit", "Audit", f"{BASE}/audit"),
)


def url(path: str, query: Mapping[str, str | int | None] | None = None) -> str:
    """A console URL: `path` below BASE, with the non-empty `query` values encoded."""
    kept = {k: str(v) for k, v in (query or {}).items() if v not in (None, "")}
    return f"{BASE}{path}" + (f"?{urlencode(kept)}" if kept else "")


def agent_url(agent_id: str, suffix: str = "", query: Mapping[str, str | int | None] | None = None) -> str:
    return url(f"/agents/{quote(agent_id, safe='')}{suffix}", query)


def when(moment: datetime | None, *, never: str = "never") -> Html:
    if moment is None:
        return el("span", never, class_="muted")
    utc = moment.astimezone(UTC)
    return el("time", f"{utc:%Y-%m-%d %H:%M} UTC", datetime=utc.isoformat(timespec="seconds"))


def tokens(count: int) -> str:
    return f"{count:,}"


def csrf_field(csrf: str) -> Html:
    return void("input", type="hidden", name="csrf", value=csrf)


def notice(text: str, *, kind: Literal["ok", "error"] = "ok") -> Html:
    """A status line after an action; errors are announced to screen readers at once."""
    return el("p", text, class_=f"notice {kind}", role="alert" if kind == "error" else "status")


def page(*, title: str, body: Child, section: Section, csrf: str | None, status: Child = None) -> Html:
    """A whole page: head, the navigation (with log-out when logged in), then `body`."""
    links = [
        el("li", el("a", label, href=href, aria_current="page" if name == section else None))
        for name, label, href in _SECTIONS
    ]
    logout = (
        el(
            "form",
            csrf_field(csrf),
            el("button", "Log out", type="submit", class_="link"),
            method="post",
            action=url("/logout"),
            class_="logout",
        )
        if csrf is not None
        else None
    )
    header = el(
        "header",
        el(
            "nav",
            el("a", "membot console", href=url("/agents"), class_="brand"),
            el("ul", links) if csrf is not None else None,
            logout,
            aria_label="Console",
        ),
    )
    head = el(
        "head",
        void("meta", charset="utf-8"),
        void("meta", name="viewport", content="width=device-width, initial-scale=1"),
        void("meta", name="referrer", content="no-referrer"),
        el("title", f"{title} · membot console"),
        void("link", rel="stylesheet", href=url("/static/console.css")),
        void("link", rel="icon", href=url("/static/favicon.svg"), type="image/svg+xml"),
    )
    main = el("main", el("h1", title), status, body, id="main", tabindex="-1")
    document = el(
        "html",
        head,
        el("body", el("a", "Skip to content", href="#main", class_="skip"), header, main),
        lang="en",
    )
    return Html("<!doctype html>\n" + document)


def definition_list(items: Mapping[str, Child]) -> Html:
    return el("dl", join(join([el("dt", term), el("dd", value)]) for term, value in items.items()), class_="facts")
