"""The admin service over both stores: the admin check, each command's effect, the audit log."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from bot.admin import Actor, AdminService
from bot.agent.directory import AgentDirectory
from bot.agent.loop import AgentLoop
from bot.errors import CoreBlockLimitError, NotAllowedError, UserFacingError
from bot.memory.core import CoreMemory
from bot.memory.policy_store import Policy
from bot.memory.runtime_store import DueHeartbeat
from bot.memory.store import AgentRecord, NewMessage, NewPassage
from bot.runtime import Runtime, Store
from tests.contract.conftest import store as store
from tests.fakes.templates import make_templates

T0 = datetime(2026, 5, 1, tzinfo=UTC)

ADMIN = Actor(id="A1", name="Ada", scope="discord:G1", is_admin=True)
OWNER = Actor(id="O1", name="Owner", scope=None, is_admin=True)
MEMBER = Actor(id="U9", name="Mallory", scope="discord:G1", is_admin=False)
OTHER_ADMIN = Actor(id="A2", name="Otto", scope="discord:G2", is_admin=True)


class Clock:
    """One second later on every call, so audit entries have a clear order."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@dataclass
class FakeLoop:
    """The part of `AgentLoop` the admin service uses."""

    core: CoreMemory
    forgotten: list[str] = field(default_factory=list)

    def forget_cached(self, agent_id: str) -> None:
        self.forgotten.append(agent_id)


@dataclass
class FakeRuntime:
    owner: str = "replica-1"
    queued: list[DueHeartbeat] = field(default_factory=list)

    def heartbeat(self, due: DueHeartbeat) -> None:
        self.queued.append(due)


@dataclass
class World:
    store: Store
    admin: AdminService
    loop: FakeLoop
    directory: AgentDirectory

    async def agent(self, key: str | None, *, name: str | None = None) -> AgentRecord:
        return await self.directory.create(
            name=name or key or "unbound",
            persona="persona text",
            human="human text",
            persona_template="sam",
            human_template="basic",
            model="m",
            conversation_key=key,
        )

    async def say(self, agent_id: str, *texts: tuple[str, str]) -> None:
        await self.store.append_messages(
            agent_id,
            [
                NewMessage(role="user", content=text, created_at=T0, tokens=3, speaker_id=speaker, speaker_name=speaker)
                for speaker, text in texts
            ],
        )


def make_world(store: Any, root: Path, *, runtime: FakeRuntime | None = None) -> World:
    clock = Clock()
    directory = AgentDirectory(store, core_block_limit=100, clock=clock)
    loop = FakeLoop(core=CoreMemory(store, default_limit=100))
    admin = AdminService(
        store=store,
        directory=directory,
        loop=cast(AgentLoop, loop),
        templates=make_templates(root),
        runtime=cast(Runtime, runtime) if runtime is not None else None,
        clock=clock,
    )
    return World(store=store, admin=admin, loop=loop, directory=directory)


@pytest.fixture
def world(store: Any, tmp_path: Path) -> World:
    return make_world(store, tmp_path / "templates")


async def test_a_non_admin_is_refused_everything_and_nothing_changes(world: World) -> None:
    agent = await world.agent("discord:G1:channel:C1")
    await world.say(agent.id, ("U1", "hello"))
    await world.store.insert_passages(agent.id, [NewPassage(text="a fact", created_at=T0)])
    before = await world.directory.export(agent.id)
    admin = world.admin
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: admin.show(MEMBER, agent.id),
        lambda: admin.dump(MEMBER, agent.id),
        lambda: admin.edit_block(MEMBER, agent.id, "persona", "hacked"),
        *[lambda s=s: admin.reset(MEMBER, agent.id, s) for s in ("core", "recall", "archival", "all")],
        lambda: admin.pause(MEMBER, agent.id),
        lambda: admin.resume(MEMBER, agent.id),
        lambda: admin.heartbeat_now(MEMBER, agent.id),
        lambda: admin.set_policy(MEMBER, "discord:G1", None, "per_user", None, None, None),
        lambda: admin.get_policy(MEMBER, "discord:G1", None),
        lambda: admin.export_user(MEMBER, "U1"),
        lambda: admin.forget_user(MEMBER, "U1"),
        lambda: admin.audit(MEMBER, 10),
    ]
    for call in calls:
        with pytest.raises(NotAllowedError):
            await call()
    after = await world.directory.export(agent.id)
    assert {k: v for k, v in after.items() if k != "exported_at"} == {
        k: v for k, v in before.items() if k != "exported_at"
    }
    assert await world.store.get_policy("discord:G1", None) is None
    assert await world.store.heartbeat_state(agent.id) is None
    assert await world.store.list_audit(limit=100) == []
    assert world.loop.forgotten == []


async def test_a_server_admin_cannot_reach_another_servers_agents_or_dms(world: World) -> None:
    theirs = await world.agent("discord:G2:channel:C1")
    dm = await world.agent("discord:dm:U1")
    for agent_id in (theirs.id, dm.id):
        with pytest.raises(NotAllowedError):
            await world.admin.show(ADMIN, agent_id)
        with pytest.raises(NotAllowedError):
            await world.admin.reset(ADMIN, agent_id, "all")
    with pytest.raises(NotAllowedError):
        await world.admin.set_policy(ADMIN, "discord:G2", None, "per_user", None, None, None)
    assert await world.store.get_agent(theirs.id) is not None
    assert await world.store.get_agent(dm.id) is not None
    assert (await world.admin.show(OWNER, dm.id)).conversation_key == "discord:dm:U1", "a bot-wide admin sees all"


async def test_show_summarises_an_agent(world: World) -> None:
    agent = await world.agent("discord:G1:channel:C1")
    await world.say(agent.id, ("U1", "hi"), ("U2", "yo"))
    await world.store.insert_passages(agent.id, [NewPassage(text="a fact", created_at=T0)])
    summary = await world.admin.show(ADMIN, agent.id)
    assert summary.name == "discord:G1:channel:C1"
    assert {(b.label, b.size, b.limit) for b in summary.blocks} == {("persona", 12, 100), ("human", 10, 100)}
    assert (summary.recall_count, summary.archival_count) == (2, 1)
    assert summary.summary == ""
    assert summary.is_paused is False
    assert summary.heartbeats_paused_until is None
    assert await world.store.list_audit(limit=10) == [], "show changes nothing and is not audited"


async def test_dump_exports_the_agent_and_is_audited(world: World) -> None:
    agent = await world.agent("discord:G1:channel:C1")
    await world.say(agent.id, ("U1", "hi"))
    dumped = await world.admin.dump(ADMIN, agent.id)
    assert dumped["agent"]["id"] == agent.id
    assert [m["content"] for m in dumped["messages"]] == ["hi"]
    [entry] = await world.store.list_audit(limit=10)
    assert (entry.action, entry.agent_id, entry.actor_id, entry.scope) == ("dump", agent.id, "A1", "discord:G1")


async def test_edit_block_enforces_the_limit_and_is_audited(world: World) -> None:
    agent = await world.agent("discord:G1:channel:C1")
    block = await world.admin.edit_block(ADMIN, agent.id, "persona", "a calmer persona")
    assert block.value == "a calmer persona"
    assert block.version == 2
    with pytest.raises(CoreBlockLimitError):
        await world.admin.edit_block(ADMIN, agent.id, "persona", "x" * 101)
    blocks = {b.label: b.value for b in await world.store.get_blocks(agent.id)}
    assert blocks["persona"] == "a calmer persona"
    assert [e.action for e in await world.store.list_audit(limit=10)] == ["edit_block"]
    assert world.loop.forgotten == [agent.id]


async def test_reset_core_restores_the_templates(world: World) -> None:
    agent = await world.agent("discord:G1:channel:C1")
    await world.admin.edit_block(ADMIN, agent.id, "persona", "changed")
    await world.admin.edit_block(ADMIN, agent.id, "notes:U1", "likes tea")
    report = await world.admin.reset(ADMIN, agent.id, "core")
    assert report.blocks_reset == 2
    blocks = {b.label: b.value for b in await world.store.get_blocks(agent.id)}
    assert blocks == {"persona": "persona template sam", "human": "human template basic"}
    assert (await world.store.list_audit(limit=1))[0].action == "reset_core"
    assert world.loop.forgotten[-1] == agent.id


async def test_reset_recall_clears_messages_and_the_summary(world: World) -> None:
    agent = await world.agent("discord:G1:channel:C1")
    await world.say(agent.id, ("U1", "one"), ("U1", "two"))
    report = await world.admin.reset(ADMIN, agent.id, "recall")
    assert report.messages_deleted == 2
    assert await world.store.count_messages(agent.id) == 0
    reset = await world.store.get_agent(agent.id)
    assert reset is not None
    assert (reset.context_start_seq, reset.summary) == (1, "")
    assert world.loop.forgotten == [agent.id]


async def test_reset_archival_and_all(world: World) -> None:
    agent = await world.agent("discord:G1:channel:C1")
    await world.store.insert_passages(
        agent.id, [NewPassage(text="a", created_at=T0), NewPassage(text="b", created_at=T0)]
    )
    assert (await world.admin.reset(ADMIN, agent.id, "archival")).passages_deleted == 2
    assert await world.store.count_passages(agent.id) == 0
    assert await world.store.get_agent(agent.id) is not None
    assert (await world.admin.reset(ADMIN, agent.id, "all")).agent_deleted is True
    assert await world.store.get_agent(agent.id) is None
    assert [e.action for e in await world.store.list_audit(limit=10)] == ["reset_all", "reset_archival"]
    assert world.loop.forgotten == [agent.id, agent.id]


async def test_pause_and_resume(world: World) -> None:
    agent = await world.agent("discord:G1:channel:C1")
    assert (await world.admin.pause(ADMIN, agent.id)).is_paused is True
    assert (await world.admin.show(ADMIN, agent.id)).is_paused is True
    assert (await world.admin.resume(ADMIN, agent.id)).is_paused is False
    assert [e.action for e in await world.store.list_audit(limit=10)] == ["resume", "pause"]


async def test_heartbeat_now_schedules_it_due_now(world: World) -> None:
    agent = await world.agent("discord:G1:channel:C1")
    report = await world.admin.heartbeat_now(ADMIN, agent.id)
    assert report.is_queued_directly is False
    state = await world.store.heartbeat_state(agent.id)
    assert state is not None
    assert state.due_at == report.due_at
    claimed = await world.store.claim_due_heartbeats(
        "r", now=report.due_at, claim_until=report.due_at + timedelta(minutes=1), limit=10
    )
    assert [c.agent_id for c in claimed] == [agent.id]
    assert (await world.store.list_audit(limit=1))[0].action == "heartbeat_now"


async def test_heartbeat_now_goes_straight_to_a_runtime(store: Any, tmp_path: Path) -> None:
    runtime = FakeRuntime()
    world = make_world(store, tmp_path / "templates", runtime=runtime)
    agent = await world.agent("discord:G1:channel:C1")
    report = await world.admin.heartbeat_now(ADMIN, agent.id)
    assert report.is_queued_directly is True
    assert [(d.agent_id, d.claimed_by) for d in runtime.queued] == [(agent.id, "replica-1")]


async def test_policies_are_set_read_and_audited(world: World) -> None:
    policy = await world.admin.set_policy(ADMIN, "discord:G1", "C5", "per_user", "pirate", None, None)
    assert policy.updated_by == "A1"
    assert await world.admin.get_policy(ADMIN, "discord:G1", "C5") == policy
    assert await world.admin.get_policy(ADMIN, "discord:G1", None) is None
    [entry] = await world.store.list_audit(limit=10)
    assert (entry.action, entry.scope) == ("set_policy", "discord:G1")


async def test_policy_templates_are_installed_names_never_paths(world: World, caplog: pytest.LogCaptureFixture) -> None:
    for name in ("/proc/self/environ", "../humans/basic", "robot"):
        with pytest.raises(UserFacingError):
            await world.admin.set_policy(ADMIN, "discord:G1", None, "per_user", name, None, None)
    assert await world.store.list_audit(limit=10) == []
    # A path stored before the rule is dropped when the policy is next changed, not kept or refused.
    await world.store.set_policy(Policy(scope="discord:G1", persona="/etc/passwd", human="basic", updated_at=T0))
    policy = await world.admin.set_policy(ADMIN, "discord:G1", None, "per_user", "/etc/passwd", "basic", None)
    assert (policy.mode, policy.persona, policy.human) == ("per_user", None, "basic")
    assert any("dropping persona template '/etc/passwd'" in r.getMessage() for r in caplog.records)


async def test_reset_core_never_reads_a_path_an_agent_was_created_with(world: World) -> None:
    agent = await world.directory.create(
        name="old", persona="p", human="h", persona_template="/proc/self/environ", human_template="basic",
        model="m", conversation_key="discord:G1:channel:C1",
    )  # fmt: skip
    await world.admin.reset(ADMIN, agent.id, "core")
    blocks = {b.label: b.value for b in await world.store.get_blocks(agent.id)}
    assert blocks == {"persona": "persona template sam", "human": "human template basic"}


async def test_export_user_takes_own_agents_and_their_shared_messages(world: World) -> None:
    mine = await world.agent("discord:G1:user:U1")
    dm = await world.agent("discord:dm:U1")
    elsewhere = await world.agent("discord:G2:user:U1")
    shared = await world.agent("discord:G1:channel:C1")
    await world.agent("discord:G1:user:U2")
    await world.say(shared.id, ("U1", "mine"), ("U2", "theirs"))
    exported = await world.admin.export_user(ADMIN, "U1")
    assert [a["agent"]["id"] for a in exported["agents"]] == [mine.id], "a server admin gets no DMs or other servers"
    [group] = exported["shared_messages"]
    assert group["agent_id"] == shared.id
    assert [m["content"] for m in group["messages"]] == ["mine"]
    everywhere = await world.admin.export_user(OWNER, "U1")
    assert {a["agent"]["id"] for a in everywhere["agents"]} == {mine.id, dm.id, elsewhere.id}
    assert [e.action for e in await world.store.list_audit(limit=10)] == ["export_user", "export_user"]


async def test_forget_user_deletes_own_agents_and_the_users_shared_messages(world: World) -> None:
    mine = await world.agent("discord:G1:user:U1")
    dm = await world.agent("discord:dm:U1")
    other = await world.agent("discord:G1:user:U2")
    shared = await world.agent("discord:G1:channel:C1")
    theirs = await world.agent("discord:G2:channel:C1")
    await world.say(shared.id, ("U1", "mine"), ("U2", "theirs"), ("U1", "also"))
    await world.say(theirs.id, ("U1", "elsewhere"))
    report = await world.admin.forget_user(ADMIN, "U1")
    assert report.agents_deleted == (mine.id,)
    assert (report.shared_agents_cleaned, report.shared_messages_deleted) == ((shared.id,), 2)
    assert (report.shared_agents_kept, report.shared_messages_kept, report.is_complete) == ((), 0, True)
    left = await world.store.get_messages(shared.id)
    assert [(m.seq, m.speaker_id, m.content) for m in left] == [(2, "U2", "theirs")]
    assert await world.store.search_messages(shared.id, "mine") == ([], 0)
    assert await world.store.count_messages(shared.id) == 1
    assert await world.store.count_messages(theirs.id) == 1, "another server's agents are out of scope"
    assert await world.store.get_agent(mine.id) is None
    assert await world.store.get_agent(dm.id) is not None, "a server admin cannot forget a DM"
    assert await world.store.get_agent(other.id) is not None
    assert world.loop.forgotten == [mine.id, shared.id]
    entry = (await world.store.list_audit(limit=1))[0]
    assert (entry.action, entry.detail) == ("forget_user", "user=U1 agents_deleted=1 shared_messages_deleted=2")


async def test_forget_me_deletes_only_the_users_dm_agent_without_admin(world: World) -> None:
    dm = await world.agent("discord:dm:U1")
    server = await world.agent("discord:G1:user:U1")
    report = await world.admin.forget_me("U1", "Una", platform="discord")
    assert report.agents_deleted == (dm.id,)
    assert await world.store.get_agent(dm.id) is None
    assert await world.store.get_agent(server.id) is not None
    [entry] = await world.store.list_audit(limit=10)
    assert (entry.action, entry.actor_id, entry.agent_id) == ("forget_me", "U1", dm.id)
    assert (await world.admin.forget_me("U1", "Una", platform="discord")).agents_deleted == ()


async def test_audit_lists_the_actors_server_newest_first(world: World) -> None:
    ours = await world.agent("discord:G1:channel:C1")
    theirs = await world.agent("discord:G2:channel:C1")
    await world.admin.pause(ADMIN, ours.id)
    await world.admin.pause(OTHER_ADMIN, theirs.id)
    await world.admin.resume(ADMIN, ours.id)
    assert [e.action for e in await world.admin.audit(ADMIN, 10)] == ["resume", "pause"]
    assert [e.actor_id for e in await world.admin.audit(OWNER, 10)] == ["A1", "A2", "A1"]
