"""The router over both stores: DMs, shared channels, per-user servers, threads, policies."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.agent.directory import AgentDirectory
from bot.memory.policy_store import Policy
from bot.router import Place, Router, RouterStore
from tests.contract.conftest import store as store
from tests.fakes.templates import make_templates

T0 = datetime(2026, 5, 1, tzinfo=UTC)


@pytest.fixture
def router(store: RouterStore, tmp_path: Path) -> Router:
    return Router(
        store=store,
        directory=AgentDirectory(store, core_block_limit=2000, clock=lambda: T0),
        templates=make_templates(tmp_path / "templates"),
        model="m",
    )


def place(*, server: str | None = "G1", channel: str = "C1", user: str = "U1", thread_of: str | None = None) -> Place:
    return Place(platform="discord", server_id=server, channel_id=channel, thread_parent_id=thread_of, user_id=user)


async def test_a_dm_gets_one_agent_per_user_apart_from_the_servers(router: Router, store: RouterStore) -> None:
    dm = await router.route(place(server=None, channel="D1", user="U1"))
    assert dm.conversation_key == "discord:dm:U1"
    assert dm.is_shared is False
    assert dm.scope is None
    assert (await router.route(place(server=None, channel="D1", user="U1"))).agent_id == dm.agent_id
    assert (await router.route(place(server=None, channel="D2", user="U2"))).agent_id != dm.agent_id
    channel = await router.route(place(user="U1"))
    assert channel.agent_id != dm.agent_id, "a DM agent and a server agent never share memory"


async def test_a_server_channel_is_one_shared_speaker_aware_agent(router: Router, store: RouterStore) -> None:
    ada = await router.route(place(user="Ada"))
    bob = await router.route(place(user="Bob"))
    assert ada.agent_id == bob.agent_id
    assert ada.is_shared is True
    assert ada.scope == "discord:G1"
    assert ada.conversation_key == "discord:G1:channel:C1"
    assert (await router.route(place(channel="C2"))).agent_id != ada.agent_id
    agent = await store.get_agent(ada.agent_id)
    assert agent is not None
    assert agent.persona_template == "sam"
    blocks = {b.label: b.value for b in await store.get_blocks(ada.agent_id)}
    assert blocks["persona"] == "persona template sam"


async def test_per_user_policy_and_channel_overrides(router: Router, store: RouterStore) -> None:
    await store.set_policy(Policy(scope="discord:G1", mode="per_user", persona="assistant", updated_at=T0))
    ada, bob = await router.route(place(user="Ada")), await router.route(place(user="Bob"))
    assert ada.agent_id != bob.agent_id
    assert ada.is_shared is False
    assert (await router.route(place(user="Ada", channel="C9"))).agent_id == ada.agent_id, (
        "one agent per user across the server"
    )
    await store.set_policy(
        Policy(scope="discord:G1", channel="C5", mode="per_channel", persona="pirate", updated_at=T0)
    )
    shared = await router.route(place(user="Ada", channel="C5"))
    assert shared.is_shared is True
    assert shared.agent_id == (await router.route(place(user="Bob", channel="C5"))).agent_id
    agent = await store.get_agent(shared.agent_id)
    assert agent is not None
    assert agent.persona_template == "pirate"


async def test_threads_follow_their_parent_unless_set_otherwise(router: Router, store: RouterStore) -> None:
    parent = await router.route(place(channel="C1"))
    in_thread = await router.route(place(channel="T1", thread_of="C1"))
    assert in_thread.agent_id == parent.agent_id
    await store.set_policy(Policy(scope="discord:G1", channel="T2", persona="assistant", updated_at=T0))
    own = await router.route(place(channel="T2", thread_of="C1"))
    assert own.agent_id != parent.agent_id


async def test_concurrent_first_messages_create_one_agent(router: Router, store: RouterStore) -> None:
    routes = await asyncio.gather(*(router.route(place(user=f"U{i}")) for i in range(8)))
    assert len({r.agent_id for r in routes}) == 1
    assert len(await store.list_agents()) == 1


async def test_a_policy_stored_with_a_path_gets_the_default_and_a_warning(
    router: Router, store: RouterStore, caplog: pytest.LogCaptureFixture
) -> None:
    # Stored before admins were held to template names: a path never becomes a persona.
    await store.set_policy(Policy(scope="discord:G1", persona="/proc/self/environ", human="../x", updated_at=T0))
    route = await router.route(place())
    agent = await store.get_agent(route.agent_id)
    assert agent is not None and (agent.persona_template, agent.human_template) == ("sam", "basic")
    blocks = {b.label: b.value for b in await store.get_blocks(route.agent_id)}
    assert blocks == {"persona": "persona template sam", "human": "human template basic"}
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("'/proc/self/environ' refused" in w for w in warnings)
    assert any("'../x' refused" in w for w in warnings)
