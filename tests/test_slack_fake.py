"""The fake Slack under the real slack-bolt `AsyncApp` and slack_sdk `AsyncWebClient`.

These tests pin what the Slack adapter's end-to-end tests will lean on: a signed event
reaches a Bolt app served by Bolt's own aiohttp server and its `say` lands in the fake's
Web API; bad signatures stop at Bolt; slash commands, button clicks and shortcuts arrive as
Slack sends them; Slack's errors and rate limits surface through slack_sdk as in production;
uploads, streaming and Socket Mode go through the SDK's own code paths.
"""

from __future__ import annotations

import json
import time
import types
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import builtin_async_handlers
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.slack_api import (
    ADMIN,
    ALICE,
    DM_ALICE,
    GENERAL,
    RANDOM,
    FakeSlack,
    Signature,
    SlackChannel,
    SlackRequestSender,
)

BoltServer = Callable[[AsyncApp], Awaitable[str]]
SenderFactory = Callable[[str], SlackRequestSender]
JSON = dict[str, Any]


def _bolt_app(fake: FakeSlack, *, process_before_response: bool = False) -> AsyncApp:
    """A Bolt app as the adapter will build one: signing secret, and a client aimed at the fake.

    With `process_before_response` Bolt answers Slack only after the listener has finished,
    so a test can assert on what the listener did as soon as the delivery returns."""
    client = AsyncWebClient(base_url=fake.base_url, token=fake.app.bot_token, timeout=5)
    return AsyncApp(
        signing_secret=fake.app.signing_secret, client=client, process_before_response=process_before_response
    )


@pytest.fixture
def bolt_app(slack_fake: FakeSlack) -> AsyncApp:
    return _bolt_app(slack_fake)


async def _serve(bolt_app: AsyncApp, serve_bolt: BoltServer, slack_requests: SenderFactory) -> SlackRequestSender:
    return slack_requests(await serve_bolt(bolt_app))


# -- Events API over HTTP --------------------------------------------------------------
async def test_signed_mention_is_acked_and_answered_in_its_thread(
    slack_fake: FakeSlack, bolt_app: AsyncApp, serve_bolt: BoltServer, slack_requests: SenderFactory
) -> None:
    @bolt_app.event("app_mention")
    async def answer(event: JSON, say: Any) -> None:
        await say(text=f"hello <@{event['user']}>", thread_ts=event.get("thread_ts") or event["ts"])

    slack = await _serve(bolt_app, serve_bolt, slack_requests)
    mention = slack_fake.events.mention("what do you remember?")

    delivery = await slack.send_event(mention)

    assert delivery.status == 200
    assert delivery.elapsed < 3
    call = await slack_fake.wait_for_call("chat.postMessage")
    assert call.args["channel"] == GENERAL
    assert call.args["thread_ts"] == mention["ts"]
    assert call.args["text"] == f"hello <@{ALICE}>"
    assert [c.method for c in slack_fake.calls] == ["auth.test", "chat.postMessage"]
    thread = slack_fake.workspace.thread(GENERAL, mention["ts"])
    assert [(m.user, m.text) for m in thread] == [
        (ALICE, mention["text"]),
        (slack_fake.app.bot_user_id, f"hello <@{ALICE}>"),
    ]


@pytest.mark.parametrize("signature", ["wrong_secret", "stale", "missing"])
async def test_badly_signed_request_is_refused_before_any_listener(
    signature: Signature,
    slack_fake: FakeSlack,
    bolt_app: AsyncApp,
    serve_bolt: BoltServer,
    slack_requests: SenderFactory,
) -> None:
    ran: list[JSON] = []

    @bolt_app.event("app_mention")
    async def answer(event: JSON) -> None:
        ran.append(event)

    slack = await _serve(bolt_app, serve_bolt, slack_requests)

    delivery = await slack.send_event(slack_fake.events.mention("hi"), signature=signature)

    assert delivery.status == 401
    assert ran == []
    assert slack_fake.calls == []  # not even auth.test: verification comes first


async def test_retried_event_arrives_again_with_slacks_retry_headers(
    slack_fake: FakeSlack, bolt_app: AsyncApp, serve_bolt: BoltServer, slack_requests: SenderFactory
) -> None:
    seen: list[tuple[str, str | None, str | None]] = []

    @bolt_app.event("app_mention")
    async def answer(body: JSON, request: AsyncBoltRequest, say: Any) -> None:
        headers = request.headers
        seen.append(
            (
                body["event_id"],
                headers.get("x-slack-retry-num", [None])[0],
                headers.get("x-slack-retry-reason", [None])[0],
            )
        )
        await say("noted")

    slack = await _serve(bolt_app, serve_bolt, slack_requests)
    envelope = slack_fake.events.envelope(slack_fake.events.mention("hi"))

    first = await slack.send_envelope(envelope)
    retry = await slack.send_envelope(envelope, retry_num=1, retry_reason="http_timeout")

    assert (first.status, retry.status) == (200, 200)
    await slack_fake.wait_for_calls("chat.postMessage", 2)
    event_id = envelope["event_id"]
    assert sorted(seen, key=lambda s: s[1] or "") == [(event_id, None, None), (event_id, "1", "http_timeout")]


async def test_url_verification_is_answered_with_the_challenge(
    bolt_app: AsyncApp, serve_bolt: BoltServer, slack_requests: SenderFactory
) -> None:
    slack = await _serve(bolt_app, serve_bolt, slack_requests)

    delivery = await slack.send_url_verification("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P")

    assert delivery.status == 200
    assert delivery.json() == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}


async def test_message_events_reach_bolt_and_the_bots_own_echo_is_ignored(
    slack_fake: FakeSlack, serve_bolt: BoltServer, slack_requests: SenderFactory
) -> None:
    bolt_app = _bolt_app(slack_fake, process_before_response=True)
    seen: list[tuple[str | None, str]] = []

    @bolt_app.event("message")
    async def record(event: JSON, say: Any) -> None:
        seen.append((event.get("subtype"), event.get("text", "")))
        if event.get("channel_type") == "im" and "subtype" not in event:
            await say("got it")

    slack = await _serve(bolt_app, serve_bolt, slack_requests)

    assert (await slack.send_event(slack_fake.events.message("remember my cat is called Tom"))).status == 200
    (reply,) = slack_fake.calls_to("chat.postMessage")
    assert reply.args["channel"] == DM_ALICE
    echo = slack_fake.events.own_message_echo(DM_ALICE, reply.response["ts"])
    assert (await slack.send_event(echo)).status == 200
    assert (await slack.send_event(slack_fake.events.bot_message("build passed"))).status == 200

    # Bolt dropped the echo of its own post (IgnoringSelfEvents, fed by the fake's auth.test).
    assert seen == [(None, "remember my cat is called Tom"), ("bot_message", "build passed")]


def test_event_helpers_follow_slacks_shapes(slack_fake: FakeSlack) -> None:
    mention = slack_fake.events.mention("hi")
    reply = slack_fake.events.message("in thread", channel=GENERAL, thread_ts=mention["ts"])
    edited = slack_fake.events.edit(GENERAL, reply["ts"], "in thread (edited)")
    report = slack_fake.workspace.host_file(name="notes.pdf", content=b"%PDF-1.4", user=ALICE)
    shared = slack_fake.events.message("see attached", files=[report])
    deleted = slack_fake.events.delete(GENERAL, mention["ts"])

    assert mention["text"] == f"<@{slack_fake.app.bot_user_id}> hi"
    assert "channel_type" not in mention
    assert (reply["channel_type"], reply["thread_ts"], reply["parent_user_id"]) == ("channel", mention["ts"], ALICE)
    assert edited["subtype"] == "message_changed"
    assert edited["message"] == {
        "type": "message",
        "user": ALICE,
        "text": "in thread (edited)",
        "ts": reply["ts"],
        "edited": {"user": ALICE, "ts": edited["ts"]},
        "thread_ts": mention["ts"],
    }
    assert edited["previous_message"]["text"] == "in thread"
    assert (shared["subtype"], shared["channel_type"], shared["files"][0]["mimetype"]) == (
        "file_share",
        "im",
        "application/pdf",
    )
    assert (deleted["subtype"], deleted["deleted_ts"]) == ("message_deleted", mention["ts"])
    assert [m.text for m in slack_fake.workspace.messages(GENERAL)] == ["in thread (edited)"]


# -- slash commands and interactivity --------------------------------------------------
async def test_slash_command_is_acked_and_answered_at_its_response_url(
    slack_fake: FakeSlack, bolt_app: AsyncApp, serve_bolt: BoltServer, slack_requests: SenderFactory
) -> None:
    @bolt_app.command("/membot")
    async def membot(ack: Any, respond: Any, command: JSON) -> None:
        await ack()
        await respond(text=f"status for <@{command['user_id']}>: {command['text']}", response_type="ephemeral")

    slack = await _serve(bolt_app, serve_bolt, slack_requests)

    delivery = await slack.send_slash_command("/membot", "status", user=ADMIN)

    assert delivery.status == 200
    assert delivery.elapsed < 3
    post = await slack_fake.wait_for_response_url_post()
    assert (post.status, post.channel, post.user) == (200, GENERAL, ADMIN)
    assert post.body == {"text": f"status for <@{ADMIN}>: status", "response_type": "ephemeral"}


async def test_expired_response_url_answers_404_expired_url(
    slack_fake: FakeSlack, serve_bolt: BoltServer, slack_requests: SenderFactory
) -> None:
    bolt_app = _bolt_app(slack_fake, process_before_response=True)
    answers: list[tuple[int, str]] = []

    @bolt_app.command("/membot")
    async def membot(ack: Any, respond: Any) -> None:
        await ack()
        response = await respond("too late")
        answers.append((response.status_code, response.body))

    slack = await _serve(bolt_app, serve_bolt, slack_requests)
    slack_fake.expire_response_urls()

    assert (await slack.send_slash_command("/membot", "status")).status == 200

    (post,) = slack_fake.response_url_posts
    assert post.status == 404
    ((status, body),) = answers
    assert status == 404
    assert json.loads(body) == {"ok": False, "error": "expired_url"}


async def test_button_click_reaches_the_action_listener(
    slack_fake: FakeSlack,
    bolt_app: AsyncApp,
    serve_bolt: BoltServer,
    slack_requests: SenderFactory,
    slack_client: AsyncWebClient,
) -> None:
    @bolt_app.action("forget")
    async def forget(ack: Any, body: JSON, client: AsyncWebClient) -> None:
        await ack()
        await client.chat_update(channel=body["channel"]["id"], ts=body["message"]["ts"], text="Forgotten.")

    slack = await _serve(bolt_app, serve_bolt, slack_requests)
    button = {"type": "button", "action_id": "forget", "value": "memory-1", "text": {"type": "plain_text", "text": "x"}}
    posted = await slack_client.chat_postMessage(
        channel=GENERAL, text="Forget this?", blocks=[{"type": "actions", "block_id": "b1", "elements": [button]}]
    )

    delivery = await slack.send_block_action(message=posted["message"], action_id="forget", value="memory-1")

    assert delivery.status == 200
    update = await slack_fake.wait_for_call("chat.update")
    assert update.ok
    assert slack_fake.workspace.message(GENERAL, posted["ts"]).text == "Forgotten."


async def test_message_shortcut_opens_a_modal(
    slack_fake: FakeSlack, bolt_app: AsyncApp, serve_bolt: BoltServer, slack_requests: SenderFactory
) -> None:
    @bolt_app.shortcut("remember_this")
    async def remember(ack: Any, shortcut: JSON, client: AsyncWebClient) -> None:
        await ack()
        view = {"type": "modal", "callback_id": "remember", "title": {"type": "plain_text", "text": "Remember"}}
        await client.views_open(trigger_id=shortcut["trigger_id"], view=view)

    slack = await _serve(bolt_app, serve_bolt, slack_requests)
    message = {"type": "message", "user": ALICE, "ts": slack_fake.workspace.new_ts(), "text": "my birthday is in May"}

    assert (await slack.send_message_shortcut(callback_id="remember_this", message=message)).status == 200

    await slack_fake.wait_for_call("views.open")
    assert slack_fake.workspace.opened_views[0]["callback_id"] == "remember"


# -- Web API errors as slack_sdk sees them ---------------------------------------------
async def test_chat_update_over_4000_characters_is_msg_too_long(slack_client: AsyncWebClient) -> None:
    posted = await slack_client.chat_postMessage(channel=GENERAL, text="thinking...")

    await slack_client.chat_update(channel=GENERAL, ts=posted["ts"], text="x" * 4000)
    with pytest.raises(SlackApiError) as raised:
        await slack_client.chat_update(channel=GENERAL, ts=posted["ts"], text="x" * 4001)

    assert raised.value.response["error"] == "msg_too_long"
    assert raised.value.response.status_code == 200


async def test_rate_limited_call_is_retried_by_the_sdks_handler(
    slack_fake: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The handler sleeps Retry-After plus random() seconds; no jitter keeps this test fast and exact.
    monkeypatch.setattr(builtin_async_handlers, "random", types.SimpleNamespace(random=lambda: 0.0))
    retrying = AsyncWebClient(
        base_url=slack_fake.base_url,
        token=slack_fake.app.bot_token,
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=1)],
    )
    slack_fake.rate_limit("chat.postMessage", retry_after=0, times=1)

    response = await retrying.chat_postMessage(channel=GENERAL, text="hello")

    assert response["ok"]
    assert [(c.status, c.response.get("error")) for c in slack_fake.calls_to("chat.postMessage")] == [
        (429, "ratelimited"),
        (200, None),
    ]


async def test_rate_limit_without_a_retry_handler_raises_with_retry_after(
    slack_fake: FakeSlack, slack_client: AsyncWebClient
) -> None:
    slack_fake.rate_limit("chat.postMessage", retry_after=7)

    with pytest.raises(SlackApiError) as raised:
        await slack_client.chat_postMessage(channel=GENERAL, text="hello")

    assert raised.value.response.status_code == 429
    assert raised.value.response.headers["Retry-After"] == "7"
    assert raised.value.response["error"] == "ratelimited"


async def test_slacks_usual_refusals(slack_fake: FakeSlack, slack_client: AsyncWebClient) -> None:
    async def error_of(call: Awaitable[object]) -> str:
        with pytest.raises(SlackApiError) as raised:
            await call
        return str(raised.value.response["error"])

    assert await error_of(slack_client.chat_postMessage(channel="C0NOWHERE", text="x")) == "channel_not_found"
    assert await error_of(slack_client.chat_postMessage(channel=RANDOM, text="x")) == "not_in_channel"
    slack_fake.fail("chat.postMessage", "is_archived", channel=GENERAL)
    assert await error_of(slack_client.chat_postMessage(channel=GENERAL, text="x")) == "is_archived"
    assert (await slack_client.chat_postMessage(channel=GENERAL, text="x"))["ok"]  # `times=1` used up
    no_token = AsyncWebClient(base_url=slack_fake.base_url)
    assert await error_of(no_token.chat_postMessage(channel=GENERAL, text="x")) == "not_authed"
    wrong = AsyncWebClient(base_url=slack_fake.base_url, token="xoxb-not-ours")
    assert await error_of(wrong.auth_test()) == "invalid_auth"
    app_token = AsyncWebClient(base_url=slack_fake.base_url, token=slack_fake.app.app_token)
    assert await error_of(app_token.chat_postMessage(channel=GENERAL, text="x")) == "not_allowed_token_type"
    slack_fake.revoke_bot_token()
    assert await error_of(slack_client.auth_test()) == "token_revoked"


async def test_people_conversations_and_threads_read_back(slack_fake: FakeSlack, slack_client: AsyncWebClient) -> None:
    mention = slack_fake.events.mention("hi")
    await slack_client.chat_postMessage(channel=GENERAL, text="hello", thread_ts=mention["ts"])
    await slack_client.api_call(
        "chat.postMessage", data={"channel": GENERAL, "text": "form", "thread_ts": mention["ts"]}
    )
    await slack_client.reactions_add(channel=GENERAL, timestamp=mention["ts"], name="eyes")
    ephemeral = await slack_client.chat_postEphemeral(channel=GENERAL, user=ALICE, text="only you")

    admin = (await slack_client.users_info(user=ADMIN))["user"]
    alice = (await slack_client.users_info(user=ALICE))["user"]
    dm = (await slack_client.conversations_info(channel=DM_ALICE))["channel"]
    general = (await slack_client.conversations_info(channel=GENERAL))["channel"]
    replies = await slack_client.conversations_replies(channel=GENERAL, ts=mention["ts"], limit=2)

    assert ephemeral["message_ts"]
    assert (admin["is_admin"], admin["is_owner"], alice["is_admin"]) == (True, False, False)
    assert (alice["profile"]["display_name"], alice["real_name"]) == ("alice", "Alice Example")
    assert (dm["is_im"], dm["user"], general["is_channel"], general["name"]) == (True, ALICE, True, "general")
    assert [m["text"] for m in replies["messages"]] == [mention["text"], "hello"]
    assert replies["messages"][0]["reply_count"] == 2
    assert replies["messages"][0]["reactions"] == [{"name": "eyes", "users": [slack_fake.app.bot_user_id], "count": 1}]
    assert replies["has_more"]
    rest = await slack_client.conversations_replies(
        channel=GENERAL, ts=mention["ts"], cursor=replies["response_metadata"]["next_cursor"]
    )
    assert [m["text"] for m in rest["messages"]] == ["form"]
    assert slack_fake.calls_to("chat.postMessage")[1].content_type == "application/x-www-form-urlencoded"
    assert (await slack_client.chat_delete(channel=GENERAL, ts=rest["messages"][0]["ts"]))["ok"]
    history = await slack_client.conversations_history(channel=GENERAL)
    assert [(m["text"], m.get("reply_count")) for m in history["messages"]] == [(mention["text"], 1)]
    slack_fake.workspace.add_channel(SlackChannel(id="C0NEW0001", name="new", is_member=False))
    with pytest.raises(SlackApiError, match="not_in_channel"):
        await slack_client.conversations_history(channel="C0NEW0001")


async def test_delayed_answers_and_helpful_timeouts(slack_fake: FakeSlack, slack_client: AsyncWebClient) -> None:
    slack_fake.delay("chat.postMessage", 0.05)
    started = time.perf_counter()
    assert (await slack_client.chat_postMessage(channel=GENERAL, text="slow"))["ok"]
    assert time.perf_counter() - started >= 0.05

    with pytest.raises(AssertionError, match=r"(?s)waiting for a chat\.update call.*chat\.postMessage"):
        await slack_fake.wait_for_call("chat.update", timeout=0.05)


# -- uploads, hosted files, streaming --------------------------------------------------
async def test_files_upload_v2_goes_through_the_external_upload_flow(
    slack_fake: FakeSlack, slack_client: AsyncWebClient
) -> None:
    response = await slack_client.files_upload_v2(
        channel=GENERAL, content=b"memory export\n", filename="export.txt", title="Export", initial_comment="here"
    )

    file_id = response["file"]["id"]
    assert [c.method for c in slack_fake.calls] == ["files.getUploadURLExternal", "files.completeUploadExternal"]
    hosted = slack_fake.workspace.files.get(file_id)
    assert (hosted.content, hosted.title, hosted.mimetype) == (b"memory export\n", "Export", "text/plain")
    shared = slack_fake.workspace.bot_messages(GENERAL)[-1]
    assert (shared.text, shared.files[0]["id"]) == ("here", file_id)
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {slack_fake.app.bot_token}"}
        async with http.get(hosted.url_private_download, headers=headers) as download:
            assert await download.read() == b"memory export\n"
        async with http.get(hosted.url_private) as anonymous:  # Slack answers its sign-in page
            assert (anonymous.status, anonymous.content_type) == (200, "text/html")


async def test_chat_stream_starts_appends_and_stops(slack_fake: FakeSlack, slack_client: AsyncWebClient) -> None:
    mention = slack_fake.events.mention("tell me a story")

    stream = await slack_client.chat_stream(
        channel=GENERAL,
        thread_ts=mention["ts"],
        recipient_team_id=slack_fake.app.team_id,
        recipient_user_id=ALICE,
        buffer_size=8,
    )
    await stream.append(markdown_text="Once upon")
    await stream.append(markdown_text=" a ")
    await stream.append(markdown_text="time.")
    await stream.stop()

    assert [c.method for c in slack_fake.calls] == ["chat.startStream", "chat.appendStream", "chat.stopStream"]
    assert stream.ts is not None
    streamed = slack_fake.workspace.message(GENERAL, stream.ts)
    assert (streamed.text, streamed.thread_ts, streamed.stream) == ("Once upon a time.", mention["ts"], "stopped")
    with pytest.raises(SlackApiError) as raised:
        await slack_client.chat_appendStream(channel=GENERAL, ts=stream.ts, markdown_text="more")
    assert raised.value.response["error"] == "message_not_in_streaming_state"


async def test_bolt_say_stream_streams_into_the_mentions_thread(
    slack_fake: FakeSlack, serve_bolt: BoltServer, slack_requests: SenderFactory
) -> None:
    bolt_app = _bolt_app(slack_fake, process_before_response=True)

    @bolt_app.event("app_mention")
    async def answer(say_stream: Any) -> None:
        stream = await say_stream(buffer_size=1)
        await stream.append(markdown_text="Thinking")
        await stream.stop(markdown_text=" done.")

    slack = await _serve(bolt_app, serve_bolt, slack_requests)
    mention = slack_fake.events.mention("summarise")

    assert (await slack.send_event(mention)).status == 200

    start, stop = slack_fake.calls_to("chat.startStream")[0], slack_fake.calls_to("chat.stopStream")[0]
    assert (start.args["channel"], start.args["thread_ts"]) == (GENERAL, mention["ts"])
    assert (start.args["recipient_user_id"], start.args["recipient_team_id"]) == (ALICE, slack_fake.app.team_id)
    assert slack_fake.workspace.message(GENERAL, stop.args["ts"]).text == "Thinking done."


# -- Socket Mode -----------------------------------------------------------------------
async def test_socket_mode_round_trip(slack_fake: FakeSlack, bolt_app: AsyncApp) -> None:
    @bolt_app.event("app_mention")
    async def answer(event: JSON, say: Any) -> None:
        await say(text="over the socket", thread_ts=event["ts"])

    @bolt_app.command("/membot")
    async def membot(ack: Any) -> None:
        await ack("on it")

    handler = AsyncSocketModeHandler(bolt_app, app_token=slack_fake.app.app_token)
    await handler.connect_async()  # type: ignore[no-untyped-call]
    try:
        await slack_fake.socket.wait_for_connection()
        mention = slack_fake.events.mention("hi")

        event_envelope = await slack_fake.socket.send_events_api(slack_fake.events.envelope(mention))
        command_envelope = await slack_fake.socket.send_slash_command(slack_fake.events.slash_command("/membot", "go"))

        assert (await slack_fake.socket.wait_for_ack(event_envelope)).payload is None
        assert (await slack_fake.socket.wait_for_ack(command_envelope)).payload == {"text": "on it"}
        reply = await slack_fake.wait_for_call("chat.postMessage")
        assert reply.args["thread_ts"] == mention["ts"]
        opened = slack_fake.calls_to("apps.connections.open")[0]
        assert opened.token == slack_fake.app.app_token

        await slack_fake.socket.request_reconnect()  # Slack's periodic `disconnect`
        await slack_fake.socket.wait_for_connection(2)
        await slack_fake.socket.drop_connection()  # the network's
        await slack_fake.socket.wait_for_connection(3)
        assert len(slack_fake.calls_to("apps.connections.open")) == 3
    finally:
        await handler.close_async()  # type: ignore[no-untyped-call]
