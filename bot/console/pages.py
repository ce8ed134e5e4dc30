"""The console's pages other than an agent's: login, the agents list, a confirmation, cost,
the audit log, and the short error pages."""

from __future__ import annotations

from collections.abc import Sequence

from bot.console.agent_page import Action, place_text
from bot.console.charts import daily_bars
from bot.console.html import Child, Html, el, void
from bot.console.layout import agent_url, csrf_field, notice, page, tokens, url, when
from bot.console.queries import AgentsPage, AuditView, CostView, Series
from bot.memory.store import AgentRecord

__all__ = [
    "AUDIT_ACTIONS",
    "PLATFORMS",
    "agents_page",
    "audit_page",
    "confirm_page",
    "cost_page",
    "login_page",
    "message_page",
]

PLATFORMS = ("discord", "slack")
#: What `AdminService` writes to the audit log (the filter's choices).
AUDIT_ACTIONS = (
    "edit_block",
    "reset_core",
    "reset_recall",
    "reset_archival",
    "reset_all",
    "pause",
    "resume",
    "heartbeat_now",
    "dump",
    "set_policy",
    "export_user",
    "forget_user",
    "forget_me",
    "reset_budget",
)


def login_page(*, error: str | None = None) -> Html:
    form = el(
        "form",
        el("label", "Console token", for_="token"),
        void(
            "input",
            type="password",
            id="token",
            name="token",
            required=True,
            autocomplete="current-password",
            autofocus=True,
        ),
        el("button", "Log in", type="submit"),
        method="post",
        action=url("/login"),
        class_="login",
    )
    status = notice(error, kind="error") if error else None
    return page(title="Log in", body=form, section="login", csrf=None, status=status)


def message_page(title: str, text: str, *, csrf: str | None) -> Html:
    """A short page for a refusal or a missing agent."""
    back = el("p", el("a", "Back to the agents", href=url("/agents"))) if csrf is not None else None
    return page(title=title, body=[el("p", text), back], section="none", csrf=csrf)


def _select(name: str, label: str, options: Sequence[str], chosen: str, *, any_label: str) -> Html:
    return el(
        "div",
        el("label", label, for_=f"f-{name}"),
        el(
            "select",
            el("option", any_label, value=""),
            [el("option", option, value=option, selected=option == chosen) for option in options],
            id=f"f-{name}",
            name=name,
        ),
        class_="field",
    )


def _text_field(name: str, label: str, value: str, *, placeholder: str) -> Html:
    return el(
        "div",
        el("label", label, for_=f"f-{name}"),
        void("input", type="text", id=f"f-{name}", name=name, value=value, placeholder=placeholder, maxlength=200),
        class_="field",
    )


def agents_page(listing: AgentsPage, *, platform: str, server: str, csrf: str, status: Child = None) -> Html:
    filters = el(
        "form",
        _select("platform", "Platform", PLATFORMS, platform, any_label="all platforms"),
        _text_field("server", "Server", server, placeholder="discord:123"),
        el("button", "Filter", type="submit"),
        method="get",
        action=url("/agents"),
        class_="filters",
        role="search",
    )
    rows = []
    for row in listing.rows:
        agent, place = row.agent, row.place
        server_cell: Child = (
            el("a", place.server, href=url("/agents", {"server": place.server}))
            if place.server
            else el("span", "-", class_="muted")
        )
        rows.append(
            el(
                "tr",
                el("th", el("a", agent.name, href=agent_url(agent.id)), scope="row"),
                el("td", place.platform),
                el("td", server_cell),
                el("td", place_text(place, with_server=False)),
                el("td", agent.persona_template),
                el("td", f"{row.stats.message_count:,}", class_="num"),
                el("td", when(row.stats.last_message_at)),
                el("td", el("strong", "paused", class_="paused") if agent.is_paused else "active"),
                el("td", tokens(row.tokens_today), class_="num"),
            )
        )
    first = listing.offset + 1 if listing.rows else 0
    last = listing.offset + len(listing.rows)
    query = {"platform": platform, "server": server}
    pager = el(
        "nav",
        el("a", "Previous page", href=url("/agents", {**query, "offset": max(0, listing.offset - listing.limit)}))
        if listing.offset > 0
        else None,
        el("span", f"{first:,}-{last:,} of {listing.total:,} agents"),
        el("a", "Next page", href=url("/agents", {**query, "offset": last})) if last < listing.total else None,
        aria_label="Pages",
        class_="pager",
    )
    head = [
        "agent",
        "platform",
        "server",
        "channel or user",
        "persona",
        "messages",
        "last activity",
        "state",
        "tokens today",
    ]
    table = el(
        "table",
        el("caption", "Agents, oldest first"),
        el("thead", el("tr", [el("th", h, scope="col") for h in head])),
        el("tbody", rows),
        class_="agents",
    )
    body = [filters, el("div", table, class_="scroll") if rows else el("p", "No agents match.", class_="muted"), pager]
    return page(title="Agents", body=body, section="agents", csrf=csrf, status=status)


def confirm_page(agent: AgentRecord, action: Action, *, csrf: str) -> Html:
    form = el(
        "form",
        el("p", action.question),
        csrf_field(csrf),
        el(
            "div",
            el("button", f"Yes: {action.label.lower()}", type="submit", class_="danger" if action.is_danger else None),
            " ",
            el("a", "Cancel", href=agent_url(agent.id)),
            class_="inline",
        ),
        method="post",
        action=agent_url(agent.id, f"/do/{action.name}"),
        class_="confirm",
    )
    return page(title=f"{action.label}: {agent.name}", body=form, section="agents", csrf=csrf)


def _charts(series: Sequence[Series], view: CostView, *, budget: int, kind: str) -> Html:
    figures = [
        el(
            "figure",
            el("figcaption", el("strong", s.label), f" · {s.total:,} tokens"),
            daily_bars(
                view.days,
                s.values,
                budget=budget if s.key else 0,  # direct messages have no server, so no server budget
                title=f"Tokens per day: {s.label}",
                chart_id=f"{kind}-{index}",
            ),
        )
        for index, s in enumerate(series)
    ]
    return el("div", figures, class_="charts")


def _table(series: Sequence[Series], view: CostView, caption: str) -> Html:
    head = el("tr", el("th", "day", scope="col"), [el("th", s.label, scope="col") for s in series])
    rows = [
        el("tr", el("th", day.isoformat(), scope="row"), [el("td", f"{s.values[i]:,}", class_="num") for s in series])
        for i, day in enumerate(view.days)
    ]
    table = el("table", el("caption", caption), el("thead", head), el("tbody", rows))
    return el("details", el("summary", "The numbers as a table"), el("div", table, class_="scroll"))


def cost_page(view: CostView, *, server_budget: int, user_budget: int, csrf: str) -> Html:
    filters = el(
        "form",
        _text_field("server", "Server", view.server or "", placeholder="discord:123"),
        el("button", "Show", type="submit"),
        method="get",
        action=url("/cost"),
        class_="filters",
        role="search",
    )
    budgets = el(
        "p",
        "Daily budgets: ",
        f"{server_budget:,} tokens per server (the dashed line)" if server_budget else "no server budget",
        "; ",
        f"{user_budget:,} tokens per user" if user_budget else "no user budget",
        ". Days over a budget are drawn in dark red.",
    )
    span = f"{view.days[0].isoformat()} to {view.days[-1].isoformat()} (UTC)"
    body: list[Child] = [filters, el("p", f"{view.total:,} tokens from {span}."), budgets]
    if not view.servers:
        body.append(el("p", "No LLM usage recorded in these 30 days.", class_="muted"))
    else:
        more_servers = f" ({view.more_servers} more not shown)" if view.more_servers else ""
        more_agents = f" ({view.more_agents} more not shown)" if view.more_agents else ""
        body += [
            el("h2", "Per server" + more_servers),
            _charts(view.servers, view, budget=server_budget, kind="server"),
            _table(view.servers, view, "Tokens per day and server"),
            el("h2", "Per agent" + more_agents),
            _charts(view.agents, view, budget=0, kind="agent"),
            _table(view.agents, view, "Tokens per day and agent"),
        ]
    return page(title="Cost, last 30 days", body=body, section="cost", csrf=csrf)


def audit_page(view: AuditView, *, server: str, agent_id: str, action: str, actor: str, limit: int, csrf: str) -> Html:
    filters = el(
        "form",
        _text_field("server", "Server", server, placeholder="discord:123"),
        _text_field("agent", "Agent id", agent_id, placeholder="any agent"),
        _select("action", "Action", AUDIT_ACTIONS, action, any_label="any action"),
        _text_field("actor", "Who", actor, placeholder="name or id"),
        _select("limit", "Show", ("50", "200", "1000"), str(limit), any_label="50"),
        el("button", "Filter", type="submit"),
        method="get",
        action=url("/audit"),
        class_="filters",
        role="search",
    )
    rows = [
        el(
            "tr",
            el("td", when(e.at)),
            el("td", e.actor_name, " ", el("span", e.actor_id, class_="muted")),
            el("td", e.scope or "bot-wide"),
            el("td", el("code", e.action)),
            el("td", el("a", e.agent_id, href=agent_url(e.agent_id)) if e.agent_id else "-"),
            el("td", e.detail),
        )
        for e in view.entries
    ]
    head = ["when", "who", "where", "action", "agent", "detail"]
    table = el(
        "table",
        el("caption", f"{len(view.entries):,} entries, newest first" + (" (more are older)" if view.is_cut else "")),
        el("thead", el("tr", [el("th", h, scope="col") for h in head])),
        el("tbody", rows),
    )
    body = [filters, el("div", table, class_="scroll") if rows else el("p", "No entries match.", class_="muted")]
    return page(title="Audit log", body=body, section="audit", csrf=csrf)
