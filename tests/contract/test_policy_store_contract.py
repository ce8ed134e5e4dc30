"""The `PolicyStore` contract (routing policies, the admin audit log): every store must pass every
test here, with the same results."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Protocol

from bot.memory.policy_store import AuditEntry, Policy, PolicyStore, RoutingMode
from bot.memory.store import AgentRecord, MemoryStore

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
SCOPE = "discord:100"
ODD = 'srv.$id "quoted" ünïcödé 🙂 名前 שלום'


class Store(MemoryStore, PolicyStore, Protocol):
    """Both halves, as the admin service uses them."""


def policy(
    scope: str = SCOPE,
    channel: str | None = None,
    *,
    mode: RoutingMode = "per_channel",
    persona: str | None = None,
    human: str | None = None,
    updated_by: str | None = None,
) -> Policy:
    return Policy(
        scope=scope, channel=channel, mode=mode, persona=persona, human=human, updated_at=T0, updated_by=updated_by
    )


def audit(action: str, *, at: datetime = T0, scope: str | None = SCOPE, agent_id: str | None = None) -> AuditEntry:
    return AuditEntry(at=at, scope=scope, actor_id="u1", actor_name="Ann", action=action, agent_id=agent_id)


async def actions(store: Store, *, scope: str | None = None, agent_id: str | None = None, limit: int = 50) -> list[str]:
    return [e.action for e in await store.list_audit(scope=scope, agent_id=agent_id, limit=limit)]


# -- policies ----------------------------------------------------------------------------------


async def test_a_policy_reads_back_whole_with_a_utc_time(store: Store) -> None:
    at = datetime(2024, 5, 1, 14, 30, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    stored = Policy(
        scope=SCOPE, channel="200", mode="per_user", persona="sam", human="basic", updated_at=at, updated_by="u1"
    )
    await store.set_policy(stored)

    found = await store.get_policy(SCOPE, "200")
    assert found == stored
    assert found is not None
    assert found.updated_at.tzinfo is not None
    assert found.updated_at.utcoffset() == timedelta(0)
    assert found.updated_at == datetime(2024, 5, 1, 12, 30, 0, 123456, tzinfo=UTC)


async def test_optional_fields_read_back_as_none(store: Store) -> None:
    await store.set_policy(policy())
    assert await store.get_policy(SCOPE, None) == Policy(scope=SCOPE, updated_at=T0)


async def test_set_policy_replaces_the_policy_of_the_same_scope_and_channel(store: Store) -> None:
    for channel in (None, "200"):
        await store.set_policy(policy(channel=channel, mode="per_user", persona="sam", updated_by="u1"))
        replacement = Policy(scope=SCOPE, channel=channel, updated_at=T0 + timedelta(minutes=1))
        await store.set_policy(replacement)
        assert await store.get_policy(SCOPE, channel) == replacement  # every field replaced, None included
    assert [(p.channel, p.mode) for p in await store.list_policies(SCOPE)] == [
        (None, "per_channel"),
        ("200", "per_channel"),
    ]


async def test_the_proactive_channel_reads_back_and_a_replacement_without_it_clears_it(store: Store) -> None:
    with_channel = Policy(scope=SCOPE, mode="per_user", proactive_channel="300", updated_at=T0, updated_by="u1")
    await store.set_policy(with_channel)
    assert await store.get_policy(SCOPE, None) == with_channel
    assert await store.list_policies(SCOPE) == [with_channel]

    await store.set_policy(policy(channel="200", persona="sam"))  # a channel's policy does not inherit it
    channel_policy = await store.get_policy(SCOPE, "200")
    assert channel_policy is not None
    assert channel_policy.proactive_channel is None

    await store.set_policy(policy(mode="per_user", updated_by="u2"))
    found = await store.get_policy(SCOPE, None)
    assert found == policy(mode="per_user", updated_by="u2")
    assert found is not None
    assert found.proactive_channel is None
    assert [p.proactive_channel for p in await store.list_policies(SCOPE)] == [None, None]


async def test_server_and_channel_policies_are_apart_and_matched_exactly(store: Store) -> None:
    server = policy(mode="per_user")
    channel = policy(channel="200", persona="sam")
    await store.set_policy(server)
    await store.set_policy(channel)
    await store.set_policy(policy("discord:999", "200", persona="other"))

    assert await store.get_policy(SCOPE, None) == server
    assert await store.get_policy(SCOPE, "200") == channel
    assert await store.get_policy(SCOPE, "300") is None  # exact match: no fallback to the server's
    assert await store.get_policy("discord:101", None) is None
    assert await store.get_policy("discord:999", None) is None


async def test_the_server_policy_is_one_and_an_empty_channel_id_is_not_it(store: Store) -> None:
    await store.set_policy(policy(mode="per_user"))
    await store.set_policy(policy(mode="per_channel"))
    assert [p.mode for p in await store.list_policies(SCOPE)] == ["per_channel"]

    await store.set_policy(policy(channel="", persona="empty id"))
    found = await store.get_policy(SCOPE, "")
    assert found is not None
    assert (found.channel, found.persona) == ("", "empty id")
    assert (await store.get_policy(SCOPE, None)) == policy(mode="per_channel")
    assert [p.channel for p in await store.list_policies(SCOPE)] == [None, ""]

    assert await store.delete_policy(SCOPE, None) is True
    assert [p.channel for p in await store.list_policies(SCOPE)] == [""]


async def test_list_policies_gives_the_servers_own_first_then_channels_by_id(store: Store) -> None:
    # U+FF5E sorts before 🙂 (U+1F642) by code point, after it in UTF-16: no store may sort by the latter.
    channels = ["z", "300", "1000", "a", "é", "\uff5e", "🙂", "Z"]
    for channel in channels:
        await store.set_policy(policy(channel=channel))
    await store.set_policy(policy())
    await store.set_policy(policy("discord:1000", "0"))
    await store.set_policy(policy("discord:10", None))

    listed = await store.list_policies(SCOPE)
    assert [p.channel for p in listed] == [None, *sorted(channels)]  # ids compare as text, code point by code point
    assert {p.scope for p in listed} == {SCOPE}
    assert await store.list_policies("discord:nobody") == []


async def test_list_policies_without_a_server_policy_lists_channels_only(store: Store) -> None:
    await store.set_policy(policy(channel="b"))
    await store.set_policy(policy(channel="a"))
    assert [p.channel for p in await store.list_policies(SCOPE)] == ["a", "b"]


async def test_delete_policy_says_whether_there_was_one(store: Store) -> None:
    await store.set_policy(policy())
    await store.set_policy(policy(channel="200"))

    assert await store.delete_policy(SCOPE, "200") is True
    assert await store.delete_policy(SCOPE, "200") is False
    assert await store.delete_policy(SCOPE, "300") is False
    assert await store.delete_policy("discord:101", None) is False
    assert await store.get_policy(SCOPE, "200") is None
    assert [p.channel for p in await store.list_policies(SCOPE)] == [None]

    assert await store.delete_policy(SCOPE, None) is True
    assert await store.delete_policy(SCOPE, None) is False
    assert await store.list_policies(SCOPE) == []
    await store.set_policy(policy(channel="200"))  # a deleted key can be set again
    assert [p.channel for p in await store.list_policies(SCOPE)] == ["200"]


async def test_unicode_and_dollar_dot_ids_are_plain_values(store: Store) -> None:
    odd_channel = "$set.channel 🙂"
    await store.set_policy(policy(ODD, None, persona="Zoë 名前", human="$human.x"))
    await store.set_policy(policy(ODD, odd_channel, updated_by="$where"))
    await store.set_policy(policy(ODD, "$", mode="per_user"))

    assert [p.channel for p in await store.list_policies(ODD)] == [None, "$", odd_channel]
    found = await store.get_policy(ODD, None)
    assert found is not None
    assert (found.persona, found.human) == ("Zoë 名前", "$human.x")
    assert (await store.get_policy(ODD, odd_channel)) == policy(ODD, odd_channel, updated_by="$where")
    assert await store.list_policies("srv") == []
    assert await store.get_policy(ODD, "$set") is None
    assert await store.delete_policy(ODD, odd_channel) is True
    assert [p.channel for p in await store.list_policies(ODD)] == [None, "$"]


# -- audit -------------------------------------------------------------------------------------


async def test_an_audit_entry_reads_back_whole_with_a_utc_time(store: Store) -> None:
    at = datetime(2024, 5, 1, 6, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-5)))  # 1 µs before T0
    entry = AuditEntry(
        at=at, scope=SCOPE, actor_id="u1", actor_name="Ann", action="reset", agent_id="agent-1", detail="why: asked"
    )
    await store.append_audit(entry)
    await store.append_audit(AuditEntry(at=T0, scope=None, actor_id="u2", actor_name="Bo", action="pause"))

    newest, oldest = await store.list_audit()
    assert oldest == entry
    assert oldest.at.utcoffset() == timedelta(0)
    assert newest == AuditEntry(at=T0, scope=None, actor_id="u2", actor_name="Bo", action="pause")
    assert (newest.agent_id, newest.detail) == (None, "")


async def test_list_audit_is_newest_first_with_ties_newest_inserted_first(store: Store) -> None:
    await store.append_audit(audit("a", at=T0 + timedelta(minutes=1)))
    await store.append_audit(audit("b", at=T0))
    await store.append_audit(audit("c", at=T0 + timedelta(minutes=2)))
    await store.append_audit(audit("d", at=T0))
    await store.append_audit(audit("e", at=T0 + timedelta(minutes=1)))
    await store.append_audit(audit("f", at=T0 + timedelta(microseconds=1)))

    assert await actions(store) == ["c", "e", "a", "f", "d", "b"]


async def test_list_audit_filters_by_server_agent_or_both(store: Store) -> None:
    minute = timedelta(minutes=1)
    await store.append_audit(audit("s1-a1", at=T0, agent_id="agent-1"))
    await store.append_audit(audit("s2-a1", at=T0 + minute, scope="slack:T1", agent_id="agent-1"))
    await store.append_audit(audit("s1-none", at=T0 + 2 * minute))
    await store.append_audit(audit("none-a2", at=T0 + 3 * minute, scope=None, agent_id="agent-2"))
    await store.append_audit(audit("s1-a2", at=T0 + 4 * minute, agent_id="agent-2"))

    assert await actions(store) == ["s1-a2", "none-a2", "s1-none", "s2-a1", "s1-a1"]
    assert await actions(store, scope=SCOPE) == ["s1-a2", "s1-none", "s1-a1"]
    assert await actions(store, agent_id="agent-1") == ["s2-a1", "s1-a1"]
    assert await actions(store, scope=SCOPE, agent_id="agent-2") == ["s1-a2"]
    assert await actions(store, scope="slack:T1", agent_id="agent-2") == []
    assert await actions(store, scope="discord:nobody") == []
    assert await actions(store, agent_id="agent-3") == []


async def test_list_audit_limits_to_the_newest(store: Store) -> None:
    for i in range(7):
        await store.append_audit(audit(f"n{i}", at=T0 + timedelta(seconds=i), agent_id="agent-1"))

    assert await actions(store, limit=3) == ["n6", "n5", "n4"]
    assert await actions(store, scope=SCOPE, limit=2) == ["n6", "n5"]
    assert await actions(store, agent_id="agent-1", limit=1) == ["n6"]
    assert await actions(store, limit=100) == [f"n{i}" for i in reversed(range(7))]
    assert await actions(store, limit=0) == []
    assert await actions(store, limit=-1) == []
    assert len(await store.list_audit()) == 7  # the default limit (50) is more than there are


async def test_the_default_limit_is_fifty(store: Store) -> None:
    for i in range(55):
        await store.append_audit(audit(f"n{i}", at=T0 + timedelta(seconds=i)))
    listed = await store.list_audit()  # the store's own default, not `actions`'
    assert [e.action for e in listed] == [f"n{i}" for i in reversed(range(5, 55))]


async def test_the_audit_log_and_policies_survive_deleting_the_agent(store: Store) -> None:
    record = AgentRecord(
        id="agent-1",
        name="Sam",
        conversation_key=f"{SCOPE}:200",
        persona_template="sam",
        human_template="basic",
        model="test-model",
        created_at=T0,
        updated_at=T0,
    )
    await store.create_agent(record, [])
    await store.set_policy(policy(channel="200", persona="sam"))
    await store.append_audit(audit("create", agent_id="agent-1"))
    await store.append_audit(audit("reset", at=T0 + timedelta(minutes=1), agent_id="agent-1"))

    await store.delete_agent("agent-1")

    assert await store.get_agent("agent-1") is None
    assert await actions(store, agent_id="agent-1") == ["reset", "create"]
    assert await actions(store, scope=SCOPE) == ["reset", "create"]
    assert await store.get_policy(SCOPE, "200") is not None
    await store.create_agent(record, [])  # the same id again: its history is still there
    assert await actions(store, agent_id="agent-1") == ["reset", "create"]


async def test_audit_values_with_unicode_and_dollar_dot_are_plain(store: Store) -> None:
    entry = AuditEntry(
        at=T0,
        scope=ODD,
        actor_id="$actor.id",
        actor_name="Zoë 🙂 名前",
        action="block.set",
        agent_id="agent.$id ünï",
        detail='{"$set": {"a.b": 1}} שלום',
    )
    await store.append_audit(entry)
    assert await store.list_audit(scope=ODD) == [entry]
    assert await store.list_audit(agent_id="agent.$id ünï") == [entry]
    assert await store.list_audit(agent_id="agent") == []
    assert await store.list_audit(scope="srv") == []


# -- joined threads ------------------------------------------------------------------------------


async def test_a_joined_thread_is_remembered_per_server_and_adding_it_twice_is_harmless(store: Store) -> None:
    assert not await store.has_joined_thread(SCOPE, "300")
    await store.add_joined_thread(SCOPE, "300")
    await store.add_joined_thread(SCOPE, "300")

    assert await store.has_joined_thread(SCOPE, "300")
    assert not await store.has_joined_thread(SCOPE, "301")
    assert not await store.has_joined_thread("discord:999", "300"), "another server's thread of the same id"
    await store.add_joined_thread(ODD, "$thread.id")
    assert await store.has_joined_thread(ODD, "$thread.id")
    assert not await store.has_joined_thread(ODD, "$thread")


async def test_every_joined_thread_and_policy_scope_is_listed_sorted(store: Store) -> None:
    """What `membot migrate` copies: every (scope, thread) and every scope with a policy."""
    assert await store.list_joined_threads() == []
    assert await store.list_policy_scopes() == []
    for scope, thread in ((SCOPE, "9"), (ODD, "$thread.id"), (SCOPE, "10"), (SCOPE, "9")):
        await store.add_joined_thread(scope, thread)
    assert await store.list_joined_threads() == sorted([(SCOPE, "10"), (SCOPE, "9"), (ODD, "$thread.id")])
    for scope, channel in ((SCOPE, None), (SCOPE, "5"), (ODD, "1"), ("slack:T1", None)):
        await store.set_policy(policy(scope=scope, channel=channel))
    assert await store.list_policy_scopes() == sorted([SCOPE, ODD, "slack:T1"])
    await store.delete_policy(ODD, "1")
    assert await store.list_policy_scopes() == sorted([SCOPE, "slack:T1"])
