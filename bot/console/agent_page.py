"""The page of one agent: who it is, its context window as a chart, core memory (editable),
summary, heartbeats, recall and archival search, recent messages, and the admin actions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bot.console.charts import context_segments, segments_bar, swatch
from bot.console.html import Child, Html, el, join, void
from bot.console.layout import agent_url, csrf_field, definition_list, page, tokens, when
from bot.console.queries import AgentView, HeartbeatView, Place
from bot.memory.store import CoreBlock, Passage, StoredMessage

__all__ = ["ACTIONS", "Action", "BlockDraft", "agent_page", "place_text"]

_CLIP = 2_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Action:
    """An admin action the page offers; each asks for confirmation first."""

    name: str
    label: str
    question: str
    is_danger: bool


ACTIONS: dict[str, Action] = {
    a.name: a
    for a in (
        Action(
            name="pause", label="Pause", question="Pause this agent? It stops answering until resumed.", is_danger=False
        ),
        Action(name="resume", label="Resume", question="Resume this agent? It answers again.", is_danger=False),
        Action(
            name="heartbeat",
            label="Heartbeat now",
            question="Fire a reflection heartbeat now? It costs LLM tokens.",
            is_danger=False,
        ),
        Action(
            name="reset-core",
            label="Reset core memory",
            question="Reset core memory to the persona and human templates? What the agent wrote there is lost.",
            is_danger=True,
        ),
        Action(
            name="reset-recall",
            label="Reset recall",
            question="Delete every message in recall, and the summary? This cannot be undone.",
            is_danger=True,
        ),
        Action(
            name="reset-archival",
            label="Reset archival",
            question="Delete every archival passage? This cannot be undone.",
            is_danger=True,
        ),
        Action(
            name="reset-all",
            label="Delete the agent",
            question="Delete this agent with all its memory? The next message in its conversation starts a new one.",
            is_danger=True,
        ),
    )
}


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockDraft:
    """An edit that was refused: shown again with its error, so nothing typed is lost."""

    label: str
    value: str
    error: str


def place_text(place: Place, *, with_server: bool = True) -> str:
    """Where the agent talks: `discord:1 · channel 2`, or without the server (the agents table has a column)."""
    match place.kind:
        case "channel" | "user":
            where = f"{place.kind} {place.target}"
            return f"{place.server} · {where}" if with_server else where
        case "dm":
            return f"direct messages with {place.target}"
        case "other":
            return place.target or "(no conversation)"


def agent_page(view: AgentView, *, csrf: str, status: Child = None, draft: BlockDraft | None = None) -> Html:
    agent = view.agent
    facts = definition_list(
        {
            "id": el("code", agent.id),
            "platform": place.platform if (place := view.place).platform != "-" else "none",
            "where": place_text(place),
            "templates": f"persona {agent.persona_template}, human {agent.human_template}",
            "model": agent.model,
            "state": el("strong", "paused", class_="paused") if agent.is_paused else "active",
            "created": when(agent.created_at),
            "last user message": when(agent.last_user_message_at),
            "memory": f"{view.recall_count:,} messages in recall, {view.archival_count:,} archival passages",
            "tokens today": tokens(view.tokens_today),
        }
    )
    body = [
        facts,
        _actions(view),
        _context(view),
        _blocks(view.agent.id, view.blocks, csrf=csrf, draft=draft),
        el("section", el("h2", "Summary"), _text(agent.summary or "(no summary yet)"), aria_label="Summary"),
        _heartbeats(view.heartbeat),
        _searches(view),
        _recent(view.recent),
    ]
    return page(title=agent.name, body=body, section="agents", csrf=csrf, status=status)


def _actions(view: AgentView) -> Html:
    names = [
        "resume" if view.agent.is_paused else "pause",
        "heartbeat",
        "reset-core",
        "reset-recall",
        "reset-archival",
        "reset-all",
    ]
    links = [
        el(
            "li",
            el(
                "a",
                ACTIONS[name].label,
                href=agent_url(view.agent.id, f"/confirm/{name}"),
                class_="button danger" if ACTIONS[name].is_danger else "button",
            ),
        )
        for name in names
    ]
    return el("section", el("h2", "Actions"), el("ul", links, class_="actions"), aria_label="Actions")


def _context(view: AgentView) -> Html:
    breakdown = view.context
    window = breakdown.window.context_window
    segments = context_segments(breakdown)
    rows = [
        el(
            "tr",
            el("th", swatch(s.colour), " ", s.label, scope="row"),
            el("td", tokens(s.tokens), class_="num"),
            el("td", f"{100 * s.tokens / window:.1f} %" if window else "-", class_="num"),
        )
        for s in segments
    ]
    over = (
        el(
            "p",
            f"The prompt is {-breakdown.free:,} tokens over its budget: the agent compacts before its next call.",
            class_="notice error",
        )
        if breakdown.free < 0
        else None
    )
    description = ", ".join(f"{s.label} {s.tokens:,}" for s in segments) + f" of {window:,} tokens"
    chart = segments_bar(
        segments,
        total=max(window, breakdown.total + breakdown.reserved),
        title=f"Context window: {breakdown.total:,} of {window:,} tokens used",
        description=description,
    )
    table = el(
        "table",
        el(
            "caption",
            f"{breakdown.total:,} prompt tokens ({breakdown.message_count:,} messages in the queue) of a {window:,}-token window",
        ),
        el(
            "thead",
            el("tr", el("th", "part", scope="col"), el("th", "tokens", scope="col"), el("th", "share", scope="col")),
        ),
        el("tbody", rows),
        class_="legend",
    )
    return el(
        "section",
        el("h2", "Context window"),
        chart,
        over,
        el("div", table, class_="scroll"),
        aria_label="Context window",
    )


def _blocks(agent_id: str, blocks: Sequence[CoreBlock], *, csrf: str, draft: BlockDraft | None) -> Html:
    forms = []
    for index, block in enumerate(blocks):
        is_draft = draft is not None and draft.label == block.label
        value = draft.value if draft is not None and is_draft else block.value
        field = f"block-{index}"
        forms.append(
            el(
                "form",
                el(
                    "label",
                    el("strong", block.label),
                    f" ({len(block.value):,} of {block.limit:,} characters)",
                    for_=field,
                ),
                el("p", draft.error, class_="notice error", role="alert", id=f"{field}-error")
                if draft is not None and is_draft
                else None,
                el(
                    "textarea",
                    value,
                    id=field,
                    name="value",
                    rows=min(14, max(3, value.count("\n") + 2)),
                    aria_describedby=f"{field}-error" if is_draft else None,
                ),
                void("input", type="hidden", name="label", value=block.label),
                csrf_field(csrf),
                el("button", f"Save {block.label}", type="submit"),
                method="post",
                action=agent_url(agent_id, "/blocks"),
                class_="block",
                id=f"block-{block.label}",
            )
        )
    return el(
        "section",
        el("h2", "Core memory"),
        forms or el("p", "No core blocks.", class_="muted"),
        aria_label="Core memory",
    )


def _heartbeats(view: HeartbeatView) -> Html:
    state = view.state
    facts = definition_list(
        {
            "next due": when(state.due_at if state else None, never="not scheduled"),
            "last fired": when(state.last_fired_at if state else None),
            "reflection tokens": (
                f"{state.tokens_spent:,} on {state.budget_day}" if state and state.budget_day else "none recorded"
            ),
        }
    )
    if view.reflection_at is None:
        changes: Html = el("p", "No reflection found in recall.", class_="muted")
    elif not view.changes:
        changes = el("p", "The last reflection (", when(view.reflection_at), ") changed nothing.")
    else:
        changes = el(
            "div",
            el("p", "What the last reflection (", when(view.reflection_at), ") changed:"),
            el(
                "ul",
                [
                    el(
                        "li",
                        el("code", c.name),
                        " ",
                        {True: "ok", False: "failed", None: "no result"}[c.is_ok],
                        el("pre", _clip(c.arguments)),
                    )
                    for c in view.changes
                ],
                class_="changes",
            ),
        )
    return el("section", el("h2", "Heartbeats"), facts, changes, aria_label="Heartbeats")


def _searches(view: AgentView) -> Html:
    recall_results: Child = None
    archival_results: Child = None
    if view.recall_hits is not None:
        found, total = view.recall_hits
        recall_results = el("div", el("p", f"{total:,} matches", class_="muted"), _messages(found), class_="results")
    if view.archival_hits is not None:
        passages, count = view.archival_hits
        archival_results = el(
            "div", el("p", f"{count:,} matches", class_="muted"), _passages(passages), class_="results"
        )
    return el(
        "section",
        el("h2", "Search memory"),
        _search_form(view.agent.id, "recall", "Search recall (messages)", view.recall_query),
        recall_results,
        _search_form(view.agent.id, "archival", "Search archival (passages)", view.archival_query),
        archival_results,
        aria_label="Search memory",
    )


def _search_form(agent_id: str, name: str, label: str, value: str) -> Html:
    return el(
        "form",
        el("label", label, for_=f"q-{name}"),
        el(
            "div",
            void("input", type="search", id=f"q-{name}", name=name, value=value, maxlength=500),
            el("button", "Search", type="submit"),
            class_="inline",
        ),
        method="get",
        action=agent_url(agent_id, "", None) + f"#q-{name}",
        role="search",
        class_="search",
    )


def _recent(messages: Sequence[StoredMessage]) -> Html:
    return el(
        "section",
        el("h2", f"Recent messages ({len(messages)})"),
        _messages(messages) if messages else el("p", "No messages.", class_="muted"),
        aria_label="Recent messages",
    )


def _messages(messages: Sequence[StoredMessage]) -> Html:
    items = []
    for m in messages:
        who = m.speaker_name or m.role
        if m.role == "tool":
            who = f"result of {m.tool_name or 'a function'}"
        calls = [el("pre", el("code", f"{c.name}({_clip(c.arguments, 500)})")) for c in m.tool_calls]
        items.append(
            el(
                "li",
                el(
                    "div",
                    when(m.created_at),
                    " ",
                    el("strong", who),
                    " ",
                    el("span", f"#{m.seq} {m.role}", class_="muted"),
                    class_="meta",
                ),
                _text(_clip(m.content)) if m.content else None,
                join(calls),
                class_=f"message {m.role}",
            )
        )
    return el("ol", items, class_="messages")


def _passages(passages: Sequence[Passage]) -> Html:
    return el(
        "ol",
        [el("li", el("div", when(p.created_at), class_="meta"), _text(_clip(p.text))) for p in passages],
        class_="messages",
    )


def _text(text: str) -> Html:
    return el("p", text, class_="text")


def _clip(text: str, limit: int = _CLIP) -> str:
    return text if len(text) <= limit else text[:limit] + f"… ({len(text):,} characters)"
