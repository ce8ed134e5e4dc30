"""Nothing of the console without the token: refusals with no session, a wrong token, a forged
or expired cookie, a missing or foreign CSRF token; rate-limited logins; the cookie's flags;
the security headers on every response; the token never in a log."""

from __future__ import annotations

import logging

import pytest

from tests.console.conftest import Console
from tests.console.world import TOKEN, client

PAGES = ["/console/", "/console/agents", "/console/cost", "/console/audit"]


def agent_paths(console: Console) -> list[str]:
    agent_id = console.world.agents["discord:G1:channel:C1"].id
    return [f"/console/agents/{agent_id}", f"/console/agents/{agent_id}/confirm/pause"]


async def test_without_a_session_every_page_sends_to_the_login_and_shows_nothing(console: Console) -> None:
    for path in [*PAGES, *agent_paths(console)]:
        reply = await console.client.get(path)
        assert reply.status == 303, path
        assert reply.location == "/console/login"
        assert "greenhouse" not in reply.text and "discord:G1" not in reply.text
    login = await console.client.get("/console/login")
    assert login.status == 200
    assert 'type="password"' in login.text and 'name="token"' in login.text
    assert "greenhouse" not in login.text


async def test_without_a_session_every_action_is_refused_and_changes_nothing(console: Console) -> None:
    world = console.world
    agent = world.agents["discord:G1:channel:C1"]
    before = await world.directory.export(agent.id)
    audit_before = await world.store.list_audit(limit=100)
    posts = {
        f"/console/agents/{agent.id}/blocks": {"label": "human", "value": "pwned", "csrf": "x"},
        f"/console/agents/{agent.id}/do/reset-all": {"csrf": "x"},
        f"/console/agents/{agent.id}/do/pause": {},
        "/console/logout": {},
    }
    for path, data in posts.items():
        reply = await console.client.post(path, data)
        assert reply.status == 403, path
        assert "greenhouse" not in reply.text
    assert await world.directory.export(agent.id) == before
    assert await world.store.list_audit(limit=100) == audit_before


async def test_a_wrong_token_is_refused_and_sets_no_cookie(console: Console) -> None:
    for wrong in ["", "nope", TOKEN + "x", TOKEN[:-1], TOKEN.upper()]:
        reply = await console.client.login(wrong)
        assert reply.status == 401, wrong
        assert "not the console token" in reply.text
        assert console.client.cookie() is None
    assert (await console.client.get("/console/agents")).status == 303


async def test_the_right_token_opens_a_session_with_a_strict_cookie(console: Console) -> None:
    reply = await console.client.login()
    assert reply.status == 303
    assert reply.location == "/console/agents"
    cookie = reply.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Path=/console" in cookie
    assert "Secure" not in cookie  # plain http on loopback: a Secure cookie would never come back
    assert TOKEN not in cookie
    page = await console.client.get("/console/agents")
    assert page.status == 200
    assert "discord:G1:channel:C1" in page.text
    # Logged in, the login form sends to the agents.
    assert (await console.client.get("/console/login")).location == "/console/agents"


async def test_behind_https_the_cookie_is_secure(console: Console) -> None:
    reply = await console.client.post("/console/login", {"token": TOKEN}, headers={"X-Forwarded-Proto": "https"})
    assert reply.status == 303
    assert "Secure" in reply.headers["Set-Cookie"]


async def test_a_forged_foreign_or_expired_cookie_is_no_session(console: Console) -> None:
    await console.client.login()
    good = console.client.cookie()
    assert good is not None
    version, expires, nonce, mac = good.split(".")
    forged = [
        f"{version}.{int(expires) + 10_000}.{nonce}.{mac}",  # a longer life
        f"{version}.{expires}.{nonce}x.{mac}",
        f"{version}.{expires}.{nonce}.{mac[:-2]}AA",
        "v1.9999999999.abc.def",
        "",
        "x" * 500,
    ]
    async with client(console.base) as other:
        for value in forged:
            other.session.cookie_jar.update_cookies({"membot_console": value})
            assert (await other.get("/console/agents")).status == 303, value
        other.session.cookie_jar.update_cookies({"membot_console": good})
        assert (await other.get("/console/agents")).status == 200  # a copied cookie works ...
        console.world.wall.now += 12 * 3600 + 1
        assert (await other.get("/console/agents")).status == 303  # ... until it expires


async def test_a_post_without_or_with_a_wrong_csrf_token_is_refused(console: Console) -> None:
    world = console.world
    agent = world.agents["discord:G1:channel:C1"]
    await console.client.login()
    page = await console.client.get(f"/console/agents/{agent.id}")
    csrf = page.csrf()
    async with client(console.base) as other:  # a second session has its own CSRF token
        await other.login()
        foreign = (await other.get(f"/console/agents/{agent.id}")).csrf()
    assert foreign != csrf
    blocks_before = await world.store.get_blocks(agent.id)
    agent_before = await world.store.get_agent(agent.id)
    audit_before = await world.store.list_audit(limit=100)
    path = f"/console/agents/{agent.id}/blocks"
    for data in [
        {"label": "human", "value": "changed"},
        {"label": "human", "value": "changed", "csrf": ""},
        {"label": "human", "value": "changed", "csrf": csrf[:-1]},
        {"label": "human", "value": "changed", "csrf": foreign},
    ]:
        reply = await console.client.post(path, data)
        assert reply.status == 403, data
        assert "expired" in reply.text
    for action in ["pause", "reset-all", "heartbeat"]:
        assert (await console.client.post(f"/console/agents/{agent.id}/do/{action}", {"csrf": foreign})).status == 403
    assert (await console.client.post("/console/logout", {})).status == 403
    assert await world.store.get_blocks(agent.id) == blocks_before
    assert await world.store.list_audit(limit=100) == audit_before
    assert await world.store.get_agent(agent.id) == agent_before


async def test_logout_ends_the_session_in_this_browser(console: Console) -> None:
    await console.client.login()
    csrf = (await console.client.get("/console/agents")).csrf()
    reply = await console.client.post("/console/logout", {"csrf": csrf})
    assert reply.status == 303
    assert reply.location == "/console/login"
    assert console.client.cookie() in (None, "")
    assert (await console.client.get("/console/agents")).status == 303


async def test_failed_logins_are_limited_per_client(console: Console) -> None:
    for _ in range(5):
        assert (await console.client.login("wrong-token-guess")).status == 401
    limited = await console.client.login()  # even the right token waits: no oracle while limited
    assert limited.status == 429
    assert int(limited.headers["Retry-After"]) == 60
    assert "Too many failed attempts" in limited.text
    assert console.client.cookie() is None
    console.world.monotonic.now += 61
    assert (await console.client.login()).status == 303


async def test_a_good_login_never_counts_against_the_limit(console: Console) -> None:
    for _ in range(4):
        assert (await console.client.login("wrong-token-guess")).status == 401
    for _ in range(10):
        assert (await console.client.login()).status == 303
    assert (await console.client.login("wrong-token-guess")).status == 401
    assert (await console.client.login("wrong-token-guess")).status == 429


SECURITY = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


async def test_every_response_carries_the_security_headers(console: Console) -> None:
    responses = [
        await console.client.get("/console/login"),
        await console.client.get("/console/agents"),  # a redirect
        await console.client.login("wrong-token-guess"),
        await console.client.get("/console/static/console.css"),
    ]
    await console.client.login()
    responses += [
        await console.client.get(path)
        for path in [*PAGES[1:], *agent_paths(console), "/console/agents/nope", "/console/nope"]
    ]
    for reply in responses:
        for name, value in SECURITY.items():
            assert reply.headers.get(name) == value, (reply.status, name)
        csp = reply.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp
        assert "frame-ancestors 'none'" in csp
        assert "script-src" not in csp  # no script at all: default-src 'none' covers it
        assert "unsafe-inline" not in csp
    for reply in responses:
        assert "<script" not in reply.text.lower()


async def test_the_token_never_reaches_the_log(console: Console, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await console.client.login("a-wrong-token-that-must-not-be-logged")
    await console.client.login()
    assert "failed login" in caplog.text
    assert "logged in" in caplog.text
    assert TOKEN not in caplog.text
    assert "a-wrong-token-that-must-not-be-logged" not in caplog.text
