"""Every stored text is untrusted: markup in a block, a message, a name, an audit detail, a
summary or a search renders as inert text on every page."""

from __future__ import annotations

from datetime import timedelta

from bot.console.html import Html, el, esc
from bot.memory.policy_store import AuditEntry
from bot.memory.store import AgentUpdate, NewPassage
from tests.console.conftest import Console
from tests.console.world import NOW, message

ATTACK = "<script>alert(1)</script>\"><img src=x onerror=alert(2)>'><svg onload=alert(3)>"


async def test_markup_in_every_stored_text_renders_inert(console: Console) -> None:
    world = console.world
    agent = await world.agent(f"discord:G9:channel:{ATTACK}", name=f"evil {ATTACK}")
    store = world.store
    await world.loop.core.overwrite(agent.id, "human", ATTACK)
    await store.append_messages(agent.id, [message("user", ATTACK, at=NOW, speaker=ATTACK)])
    await store.update_agent(agent.id, AgentUpdate(summary=ATTACK), expected_version=agent.version)
    await store.insert_passages(agent.id, [NewPassage(text=f"alert {ATTACK}", created_at=NOW)])
    await store.append_audit(
        AuditEntry(
            at=NOW - timedelta(minutes=1),
            scope="discord:G9",
            actor_id=ATTACK,
            actor_name=ATTACK,
            action="edit_block",
            agent_id=agent.id,
            detail=ATTACK,
        )
    )
    assert (await console.client.login()).status == 303
    pages = [
        "/console/agents",
        f"/console/agents/{agent.id}",
        f"/console/agents/{agent.id}?recall=alert&archival=alert",
        f"/console/agents/{agent.id}/confirm/reset-all",
        "/console/audit",
        "/console/audit?actor=%3Cscript%3E",
        "/console/cost",
    ]
    for path in pages:
        reply = await console.client.get(path)
        assert reply.status == 200, path
        lowered = reply.text.lower()
        assert "<script" not in lowered, path
        assert "<img" not in lowered, path
        assert "<svg onload" not in lowered, path
    page = (await console.client.get(f"/console/agents/{agent.id}?recall=alert")).text
    escaped = esc(ATTACK)
    assert f"{escaped}</textarea>" in page  # the block, editable as text
    assert page.count(escaped) >= 5  # name, block, summary, message, speaker, the hit
    # A block edited back through the form is stored as typed, not as its escaped form.
    csrf = (await console.client.get(f"/console/agents/{agent.id}")).csrf()
    await console.client.post(f"/console/agents/{agent.id}/blocks", {"label": "human", "value": ATTACK, "csrf": csrf})
    assert {b.label: b.value for b in await store.get_blocks(agent.id)}["human"] == ATTACK


def test_the_builder_escapes_text_and_attributes_but_not_its_own_markup() -> None:
    assert el("p", ATTACK) == f"<p>{esc(ATTACK)}</p>"
    assert el("a", "x", href='"><script>') == '<a href="&quot;&gt;&lt;script&gt;">x</a>'
    assert el("div", el("b", "<i>"), "&") == "<div><b>&lt;i&gt;</b>&amp;</div>"
    assert el("input", disabled=True, value=None, hidden=False) == "<input disabled>"
    assert el("p", 1_000, None, False, [["a", Html("<br>")]]) == "<p>1000a<br></p>"
    assert esc("'") == "&#x27;"
