"""Every page and action of the console through HTTP, logged in: what each page shows, and that
each change goes through the admin service with the slash commands' limits and audit entries."""

from __future__ import annotations

import re
from urllib.parse import quote

from bot.memory.store import NewPassage
from tests.console.conftest import Console
from tests.console.world import NOW, Reply


async def logged_in(console: Console) -> None:
    assert (await console.client.login()).status == 303


def rows(reply: Reply) -> list[str]:
    """The agent names in the agents table, in order."""
    return re.findall(r'<th scope="row"><a href="/console/agents/[^"]+">([^<]+)</a>', reply.text)


async def test_agents_lists_every_agent_with_platform_counts_activity_and_tokens(any_console: Console) -> None:
    console = any_console
    await logged_in(console)
    page = await console.client.get("/console/agents")
    assert page.status == 200
    assert rows(page) == [
        "discord:G1:channel:C1",
        "discord:G1:user:U7",
        "slack:T1:channel:C9",
        "discord:dm:U8",
        "terminal-sam",
    ]
    general = page.text[page.text.index("discord:G1:channel:C1</a>") :].split("</tr>")[0]
    assert '<td class="num">8</td>' in general  # messages
    assert "2026-05-20 10:00 UTC" in general  # the newest message: the reflection
    assert "channel C1" in general and ">sam<" in general
    assert "10,800" in general  # today's tokens: 9,000 x 1.2
    slack = page.text[page.text.index("slack:T1:channel:C9</a>") :].split("</tr>")[0]
    assert "paused" in slack
    assert "1-5 of 5 agents" in page.text


async def test_agents_filter_by_platform_and_server(any_console: Console) -> None:
    console = any_console
    await logged_in(console)
    assert rows(await console.client.get("/console/agents?platform=slack")) == ["slack:T1:channel:C9"]
    assert rows(await console.client.get("/console/agents?platform=discord")) == [
        "discord:G1:channel:C1",
        "discord:G1:user:U7",
        "discord:dm:U8",
    ]
    by_server = await console.client.get("/console/agents?server=discord:G1")
    assert rows(by_server) == ["discord:G1:channel:C1", "discord:G1:user:U7"]
    assert 'value="discord:G1"' in by_server.text  # the filter is kept in the form
    # Not a server name, not a platform: ignored, everything listed.
    assert len(rows(await console.client.get("/console/agents?server=%22%3E%3Cx&platform=%3Cx"))) == 5


async def test_agents_pages_through_many_agents(console: Console) -> None:
    for index in range(60):
        await console.world.agent(f"slack:T2:channel:C{index:03d}")
    await logged_in(console)
    first = await console.client.get("/console/agents?platform=slack")
    assert len(rows(first)) == 50
    assert "1-50 of 61 agents" in first.text
    assert "Next page" in first.text and "Previous page" not in first.text
    second = await console.client.get("/console/agents?platform=slack&offset=50")
    assert len(rows(second)) == 11
    assert rows(second)[-1] == "slack:T2:channel:C059"
    assert "51-61 of 61 agents" in second.text and "Previous page" in second.text


async def test_an_agent_shows_memory_context_heartbeats_and_messages(any_console: Console) -> None:
    console = any_console
    world = console.world
    agent = world.agents["discord:G1:channel:C1"]
    await logged_in(console)
    page = await console.client.get(f"/console/agents/{agent.id}")
    assert page.status == 200
    text = page.text
    # Core memory, editable, with its size and limit.
    assert 'form method="post"' in text and f'action="/console/agents/{agent.id}/blocks"' in text
    human = next(b for b in await world.store.get_blocks(agent.id) if b.label == "human")
    assert f"({len(human.value)} of 2,000 characters)" in text
    assert "Grace: Sunday shift</textarea>" in text
    assert "Ada and Grace run the greenhouse; they swap weekend shifts." in text  # the summary
    assert "The tomatoes need watering every two days in May." in text  # recent messages
    # The context window: the loop's own numbers, in the chart and its table.
    breakdown = await world.loop.context_breakdown(agent.id)
    assert f"Context window: {breakdown.total:,} of 16,000 tokens used" in text
    for label, value in [
        ("system prompt", breakdown.system),
        ("function schemas", breakdown.functions),
        ("core memory", breakdown.core_memory),
        ("summary", breakdown.summary),
        ("messages", breakdown.messages),
        ("reserved for the reply", 1_000),
        ("free", breakdown.free),
    ]:
        assert re.search(rf"{label}</th><td class=\"num\">{value:,}</td>", text), label
    assert '<svg viewBox="0 0 1000 48"' in text and 'role="img"' in text
    # Heartbeats: the schedule and what the last reflection changed.
    assert "2026-05-20 17:00 UTC" in text  # next due
    assert "2026-05-20 10:00 UTC" in text  # last fired
    assert "1,830 on 2026-05-20" in text
    assert "<code>core_memory_append</code> ok" in text
    assert "Grace: Sunday shift" in text
    # The actions, each through a confirmation page.
    for action in ["pause", "heartbeat", "reset-core", "reset-recall", "reset-archival", "reset-all"]:
        assert f'href="/console/agents/{agent.id}/confirm/{action}"' in text


async def test_recall_and_archival_search_from_the_agent_page(console: Console) -> None:
    agent = console.world.agents["discord:G1:channel:C1"]
    await console.world.store.insert_passages(
        agent.id, [NewPassage(text="Basil prefers the south window.", created_at=NOW)]
    )
    await logged_in(console)
    found = await console.client.get(f"/console/agents/{agent.id}?recall=tomatoes")
    assert "1 matches" in found.text
    assert found.text.count("The tomatoes need watering") == 2  # the hit and the recent message
    assert 'value="tomatoes"' in found.text
    archival = await console.client.get(f"/console/agents/{agent.id}?archival=basil+window")
    assert "Basil prefers the south window." in archival.text
    nothing = await console.client.get(f"/console/agents/{agent.id}?recall=zebra")
    assert "0 matches" in nothing.text


async def test_editing_a_block_is_limited_and_audited_like_the_slash_command(any_console: Console) -> None:
    console = any_console
    world = console.world
    agent = world.agents["discord:G1:channel:C1"]
    await logged_in(console)
    csrf = (await console.client.get(f"/console/agents/{agent.id}")).csrf()
    saved = await console.client.post(
        f"/console/agents/{agent.id}/blocks", {"label": "human", "value": "Ada\r\nGrace", "csrf": csrf}
    )
    assert saved.status == 303
    assert saved.location == f"/console/agents/{agent.id}?done=saved&label=human#block-human"
    blocks = {b.label: b.value for b in await world.store.get_blocks(agent.id)}
    assert blocks["human"] == "Ada\nGrace"
    entry = (await world.store.list_audit(limit=1))[0]
    assert (entry.actor_id, entry.actor_name, entry.scope) == ("console:operator", "console operator", None)
    assert (entry.action, entry.agent_id, entry.detail) == ("edit_block", agent.id, "label=human chars=9")
    assert "Saved human." in (await console.client.get(saved.location or "")).text
    # Over the limit: refused with the service's error, the text kept, nothing stored or audited.
    too_long = "x" * 2_001
    refused = await console.client.post(
        f"/console/agents/{agent.id}/blocks", {"label": "human", "value": too_long, "csrf": csrf}
    )
    assert refused.status == 422
    assert "would be 2001 characters, over its limit of 2000" in refused.text
    assert f">{too_long}</textarea>" in refused.text
    assert {b.label: b.value for b in await world.store.get_blocks(agent.id)}["human"] == "Ada\nGrace"
    assert len(await world.store.list_audit(limit=100)) == 2  # the seeded one and the edit


async def test_a_form_without_its_fields_is_refused(console: Console) -> None:
    agent = console.world.agents["discord:G1:channel:C1"]
    await logged_in(console)
    csrf = (await console.client.get(f"/console/agents/{agent.id}")).csrf()
    for data in [{"csrf": csrf}, {"csrf": csrf, "label": "", "value": "x"}, {"csrf": csrf, "label": "human"}]:
        assert (await console.client.post(f"/console/agents/{agent.id}/blocks", data)).status == 400


async def test_each_action_asks_first_then_acts_through_the_admin_service(any_console: Console) -> None:
    console = any_console
    world = console.world
    agent = world.agents["discord:G1:channel:C1"]
    await logged_in(console)
    base = f"/console/agents/{agent.id}"
    audited = len(await world.store.list_audit(limit=100))
    confirm = await console.client.get(f"{base}/confirm/pause")
    assert confirm.status == 200
    assert "Pause this agent?" in confirm.text and f'action="{base}/do/pause"' in confirm.text
    assert not (await world.store.get_agent(agent.id)).is_paused  # type: ignore[union-attr]  # asking changes nothing
    csrf = confirm.csrf()

    async def do(action: str) -> Reply:
        return await console.client.post(f"{base}/do/{action}", {"csrf": csrf})

    assert (await do("pause")).location == f"{base}?done=pause"
    assert (await world.store.get_agent(agent.id)).is_paused  # type: ignore[union-attr]
    assert "The agent is paused." in (await console.client.get(f"{base}?done=pause")).text
    await do("resume")
    assert not (await world.store.get_agent(agent.id)).is_paused  # type: ignore[union-attr]
    await do("heartbeat")
    state = await world.store.heartbeat_state(agent.id)
    assert state is not None and state.due_at == NOW  # no runtime here: due now, for the scheduler
    await do("reset-archival")
    assert await world.store.count_passages(agent.id) == 0
    await do("reset-core")
    assert {b.label: b.value for b in await world.store.get_blocks(agent.id)}["human"].startswith("First name")
    await do("reset-recall")
    assert await world.store.count_messages(agent.id) == 0
    deleted = await do("reset-all")
    assert deleted.location == "/console/agents?done=deleted"
    assert await world.store.get_agent(agent.id) is None
    actions = [e.action for e in await world.store.list_audit(limit=100)][: -audited or None]
    assert actions == ["reset_all", "reset_recall", "reset_core", "reset_archival", "heartbeat_now", "resume", "pause"]
    assert {e.actor_id for e in (await world.store.list_audit(limit=7))} == {"console:operator"}
    listing = await console.client.get(deleted.location or "")
    assert "The agent and all its memory are deleted." in listing.text
    assert "discord:G1:channel:C1" not in rows(listing)


async def test_a_forged_agent_id_is_not_found_everywhere_and_changes_nothing(console: Console) -> None:
    world = console.world
    await logged_in(console)
    csrf = (await console.client.get("/console/agents")).csrf()
    audit_before = await world.store.list_audit(limit=100)
    for forged in ["nope", "../agents", "x" * 300, "' OR 1=1 --", world.agents["terminal-sam"].id + "0"]:
        base = f"/console/agents/{quote(forged, safe='')}"
        for reply in [
            await console.client.get(base),
            await console.client.get(f"{base}/confirm/pause"),
            await console.client.post(f"{base}/blocks", {"label": "human", "value": "x", "csrf": csrf}),
            await console.client.post(f"{base}/do/reset-all", {"csrf": csrf}),
        ]:
            assert reply.status == 404, forged
            assert "No such agent" in reply.text
    real = world.agents["terminal-sam"].id
    assert (await console.client.get(f"/console/agents/{real}/confirm/explode")).status == 404
    assert (await console.client.post(f"/console/agents/{real}/do/explode", {"csrf": csrf})).status == 404
    assert await world.store.list_audit(limit=100) == audit_before
    assert await world.store.count_agents() == 5


async def test_cost_charts_30_days_per_server_and_agent_with_the_budget(any_console: Console) -> None:
    console = any_console
    await logged_in(console)
    page = await console.client.get("/console/cost")
    assert page.status == 200
    text = page.text
    assert "from 2026-04-21 to 2026-05-20 (UTC)" in text
    assert "40,000 tokens per server (the dashed line)" in text and "10,000 tokens per user" in text
    servers = re.findall(r"<figcaption><strong>([^<]+)</strong> · ([\d,]+) tokens", text)
    assert [name for name, _ in servers][:3] == ["discord:G1", "slack:T1", "(direct messages)"]
    assert text.count('stroke-dasharray="6 4"') == 2  # a budget line on each server, none on DMs or agents
    assert text.count("(over the budget)") == 2  # G1's two spikes
    assert text.count('<svg viewBox="0 0 400 150" role="img"') == 3 + 4
    g1 = await console.client.get("/console/cost?server=discord:G1")
    assert re.findall(r"<figcaption><strong>([^<]+)</strong>", g1.text) == [
        "discord:G1",
        "discord:G1:channel:C1",
        "discord:G1:user:U7",
    ]


async def test_audit_lists_newest_first_and_filters(console: Console) -> None:
    world = console.world
    general = world.agents["discord:G1:channel:C1"]
    await logged_in(console)
    csrf = (await console.client.get("/console/agents")).csrf()
    await console.client.post(f"/console/agents/{general.id}/do/pause", {"csrf": csrf})
    team = world.agents["slack:T1:channel:C9"]
    await console.client.post(f"/console/agents/{team.id}/do/resume", {"csrf": csrf})
    page = await console.client.get("/console/audit")
    actions = re.findall(r"<td><code>([a-z_]+)</code></td>", page.text)
    assert actions == ["resume", "pause", "edit_block"]
    assert "label=human chars=40" in page.text
    filtered = {
        "?action=pause": ["pause"],
        "?server=discord:G1": ["edit_block"],  # the console acts bot-wide: its entries have no server
        f"?agent={general.id}": ["pause", "edit_block"],
        "?actor=ada": ["edit_block"],
        "?actor=console": ["resume", "pause"],
        "?action=forget_user": [],
    }
    for query, expected in filtered.items():
        assert (
            re.findall(r"<td><code>([a-z_]+)</code></td>", (await console.client.get("/console/audit" + query)).text)
            == expected
        ), query


async def test_the_stylesheet_is_served_and_root_sends_to_the_agents(console: Console) -> None:
    css = await console.client.get("/console/static/console.css")
    assert css.status == 200 and css.headers["Content-Type"].startswith("text/css")
    await logged_in(console)
    assert (await console.client.get("/console/")).location == "/console/agents"
    assert (await console.client.get("/console")).location == "/console/"
