"""Answers on Slack: where (a `ReplyRoute`, stored as the inbox entry's `reply_route`) and how.

    short reply  ─> chat.postMessage (mrkdwn), in the thread of the triggering message
    long reply   ─> chat.startStream / appendStream / stopStream: one message, Markdown as
                    written (Slack renders streamed Markdown itself), up to 12,000 characters each
                 └> where streaming is refused (an older workspace, a token without it, a
                    top-level DM), chat.postMessage in parts below 3,500 characters, code
                    fences kept balanced (`bot.text_split`); never chat.update (`msg_too_long`)

Slack's refusals are logged, never raised into the agent loop: the turn is recorded and
closed, not retried forever. A channel that refuses us (`channel_not_found`,
`not_in_channel`, `is_archived`, ...) is logged once per channel.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

from slack_sdk.web.async_client import AsyncWebClient

from bot.events import ReplySink
from bot.slack.client import SLACK_FAILURES, error_code
from bot.slack.format import markdown_to_mrkdwn
from bot.text_split import split_message

__all__ = ["MESSAGE_LIMIT", "STREAM_MESSAGE_LIMIT", "STREAM_PIECE", "ReplyRoute", "SlackReplies"]

_log = logging.getLogger(__name__)

#: Characters per posted message: well below Slack's 4,000 for text, so no message is cut.
MESSAGE_LIMIT = 3500
#: Characters per streamed message, and per appendStream call (Slack's limits: 12,000 per call).
STREAM_MESSAGE_LIMIT = 12_000
STREAM_PIECE = 3500

#: Errors that mean "this conversation will not take our messages", whatever we send.
_CHANNEL_REFUSALS = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "restricted_action",
        "restricted_action_read_only_channel",
        "restricted_action_thread_only_channel",
        "restricted_action_non_threadable_channel",
        "cannot_reply_to_message",
        "team_access_not_granted",
        "ekm_access_denied",
    }
)


#: Errors of chat.startStream that mean streaming is not available to this app at all.
_STREAMING_UNAVAILABLE = frozenset(
    {"unknown_method", "method_deprecated", "not_allowed_token_type", "missing_scope", "feature_not_enabled"}
)
#: Streams take Markdown as written (no mrkdwn conversion), so broadcast mentions are defused here.
_BROADCAST = re.compile(r"<!(here|channel|everyone)")


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplyRoute:
    """Where one answer goes: the conversation, the thread (None: top level) and whom it answers."""

    channel: str
    thread_ts: str | None = None
    team: str | None = None
    #: The person answered (streaming to a channel needs them); None for a proactive post.
    user: str | None = None

    def to_json(self) -> str:
        return json.dumps({"channel": self.channel, "thread_ts": self.thread_ts, "team": self.team, "user": self.user})

    @classmethod
    def from_json(cls, text: str) -> ReplyRoute:
        """Also reads the runtime's proactive route `{"channel": id, "proactive": true}`."""
        data = json.loads(text)
        return cls(
            channel=str(data["channel"]), thread_ts=data.get("thread_ts"), team=data.get("team"), user=data.get("user")
        )


class SlackReplies:
    """Posts answers through one Web API client; remembers what Slack refused."""

    def __init__(self, client: AsyncWebClient, *, is_streaming_enabled: bool) -> None:
        self._client = client
        self._is_streaming_enabled = is_streaming_enabled
        #: Conversations that refused a post, logged once each.
        self._refusing_channels: set[str] = set()

    def sink(self, route: ReplyRoute) -> ReplySink:
        return _SlackSink(self, route)

    async def post(self, route: ReplyRoute, markdown: str) -> str | None:
        """Deliver `markdown`; the ts of the (first) message posted, None when nothing was."""
        text = markdown.strip()
        if not text:
            return None
        if len(text) > MESSAGE_LIMIT and self._can_stream(route):
            is_handled, first_ts = await self._stream(route, text)
            if is_handled:
                return first_ts
        return await self._post_parts(route, split_message(markdown_to_mrkdwn(text), limit=MESSAGE_LIMIT))

    def _can_stream(self, route: ReplyRoute) -> bool:
        # Streams answer someone, inside a thread: Slack refuses them anywhere else.
        return self._is_streaming_enabled and route.thread_ts is not None and route.user is not None

    async def _stream(self, route: ReplyRoute, text: str) -> tuple[bool, str | None]:
        """Stream `text` as one message per 12,000 characters: (False, None) when streaming is
        refused before anything was shown (the caller posts instead), else (True, the first ts)."""
        assert route.thread_ts is not None
        first_ts: str | None = None
        messages = split_message(_BROADCAST.sub("<\u200b!\\1", text), limit=STREAM_MESSAGE_LIMIT)
        for number, message in enumerate(messages):
            pieces = [message[i : i + STREAM_PIECE] for i in range(0, len(message), STREAM_PIECE)]
            try:
                started = await self._client.chat_startStream(
                    channel=route.channel,
                    thread_ts=route.thread_ts,
                    markdown_text=pieces[0],
                    recipient_team_id=route.team,
                    recipient_user_id=route.user,
                )
            except SLACK_FAILURES as exc:
                if self._is_refusal(route, exc):
                    return True, first_ts
                if first_ts is None:
                    self._stop_streaming(exc)
                    return False, None
                return True, await self._post_rest(route, messages[number:], first_ts, exc)
            ts = str(started["ts"])
            first_ts = first_ts or ts
            for index, piece in enumerate(pieces[1:], start=1):
                try:
                    await self._client.chat_appendStream(channel=route.channel, ts=ts, markdown_text=piece)
                except SLACK_FAILURES as exc:
                    await self._end_stream(route, ts)
                    rest = ["".join(pieces[index:]), *messages[number + 1 :]]
                    return True, await self._post_rest(route, rest, first_ts, exc)
            await self._end_stream(route, ts)
        return True, first_ts

    async def _end_stream(self, route: ReplyRoute, ts: str) -> None:
        try:
            await self._client.chat_stopStream(channel=route.channel, ts=ts)
        except SLACK_FAILURES as exc:
            # What was appended stays shown; Slack ends an abandoned stream by itself.
            _log.info("chat.stopStream in %s failed (%s); the streamed text stays", route.channel, error_code(exc))

    async def _post_rest(self, route: ReplyRoute, rest: Sequence[str], first_ts: str, exc: BaseException) -> str:
        _log.warning(
            "streaming a reply in %s broke off (%s); posting the rest as messages", route.channel, error_code(exc)
        )
        parts = [part for text in rest for part in split_message(markdown_to_mrkdwn(text), limit=MESSAGE_LIMIT)]
        await self._post_parts(route, parts)
        return first_ts

    def _stop_streaming(self, exc: BaseException) -> None:
        if error_code(exc) in _STREAMING_UNAVAILABLE and self._is_streaming_enabled:
            # Not available to this app or workspace: stop asking.
            self._is_streaming_enabled = False
            _log.warning(
                "Slack refused chat.startStream (%s); long replies are posted as several messages", error_code(exc)
            )
        else:
            _log.info("chat.startStream failed (%s); posting this reply as messages", error_code(exc))

    async def _post_parts(self, route: ReplyRoute, parts: Sequence[str]) -> str | None:
        first_ts: str | None = None
        for number, part in enumerate(parts):
            try:
                posted = await self._client.chat_postMessage(
                    channel=route.channel, text=part, thread_ts=route.thread_ts, unfurl_links=False, unfurl_media=False
                )
            except SLACK_FAILURES as exc:
                if not self._is_refusal(route, exc):
                    _log.warning(
                        "posting a reply in %s failed (%s); %d of %d parts were delivered",
                        route.channel,
                        error_code(exc),
                        number,
                        len(parts),
                    )
                return first_ts
            first_ts = first_ts or str(posted["ts"])
        return first_ts

    def _is_refusal(self, route: ReplyRoute, exc: BaseException) -> bool:
        """Whether `exc` says the conversation refuses us; logged once per conversation."""
        code = error_code(exc)
        if code not in _CHANNEL_REFUSALS:
            return False
        if route.channel not in self._refusing_channels:
            self._refusing_channels.add(route.channel)
            _log.warning(
                "Slack conversation %s refuses the bot's messages (%s): invite the bot or check the channel; "
                "not retrying",
                route.channel,
                code,
            )
        return True


class _SlackSink:
    """The runtime's reply capability for one conversation."""

    def __init__(self, replies: SlackReplies, route: ReplyRoute) -> None:
        self._replies = replies
        self._route = route

    async def send(self, text: str) -> str | None:
        return await self._replies.post(self._route, text)

    async def typing(self) -> None:
        # Slack has no typing indicator for bots outside assistant threads.
        return None
