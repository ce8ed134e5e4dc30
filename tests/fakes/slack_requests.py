"""Slack's side of HTTP mode: signed requests posted to the app's Request URL.

`SlackRequestSender` plays Slack delivering to a bot over HTTP: Events API envelopes (with
`X-Slack-Retry-Num`/`X-Slack-Retry-Reason` on redelivery), slash commands and interactivity
as forms, `url_verification`; each signed with the signing secret unless a test asks for a
bad signature. Every send answers a `Delivery` with the status, body and time the app took
(Slack gives up after 3 s and retries).

    async with fake.requests_to(bot_url) as slack:
        delivery = await slack.send_event(fake.events.mention("hello"))
        assert delivery.status == 200 and delivery.elapsed < 3
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import aiohttp

from tests.fakes.slack_events import WorkspaceEvents
from tests.fakes.slack_models import ALICE, GENERAL
from tests.fakes.slack_wire import JSON, AppIdentity, dumps, form_body, signed_headers, url_verification

__all__ = ["Delivery", "Signature", "SlackRequestSender"]

Signature = Literal["valid", "wrong_secret", "stale", "missing"]
"""How to sign: correctly; with another secret; with a timestamp 6 minutes old (Bolt allows 5); not at all."""

_STALE_SECONDS = 6 * 60


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """The app's answer to one request."""

    status: int
    body: str
    headers: dict[str, str]
    elapsed: float
    sent: bytes

    def json(self) -> JSON:
        decoded = json.loads(self.body)
        assert isinstance(decoded, dict), f"expected a JSON object, got {self.body!r}"
        return decoded


class SlackRequestSender:
    """Posts signed requests to one Request URL. Use as an async context manager (or `close()`)."""

    def __init__(self, url: str, *, app: AppIdentity, events: WorkspaceEvents, timeout: float = 10.0) -> None:
        self.url = url
        self.app = app
        self.events = events
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> SlackRequestSender:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- raw ---------------------------------------------------------------------------
    async def post(
        self,
        body: bytes | str,
        *,
        content_type: str,
        signature: Signature = "valid",
        retry_num: int | None = None,
        retry_reason: str | None = None,
    ) -> Delivery:
        """Post `body` signed as asked; returns the app's answer and how long it took."""
        raw = body.encode() if isinstance(body, str) else body
        secret = self.app.signing_secret if signature != "wrong_secret" else "not-the-signing-secret"
        timestamp = int(time.time()) - (_STALE_SECONDS if signature == "stale" else 0)
        headers = signed_headers(
            raw,
            secret=secret,
            content_type=content_type,
            timestamp=timestamp,
            retry_num=retry_num,
            retry_reason=retry_reason,
        )
        if signature == "missing":
            del headers["X-Slack-Signature"], headers["X-Slack-Request-Timestamp"]
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout))
        started = time.perf_counter()
        async with self._session.post(self.url, data=raw, headers=headers) as response:
            text = await response.text()
        return Delivery(
            status=response.status,
            body=text,
            headers=dict(response.headers),
            elapsed=time.perf_counter() - started,
            sent=raw,
        )

    # -- Events API --------------------------------------------------------------------
    async def send_envelope(
        self,
        body: JSON,
        *,
        retry_num: int | None = None,
        retry_reason: str | None = None,
        signature: Signature = "valid",
    ) -> Delivery:
        """Deliver an Events API body; `retry_num`=1..3 marks a redelivery as Slack does."""
        return await self.post(
            dumps(body),
            content_type="application/json",
            signature=signature,
            retry_num=retry_num,
            retry_reason=retry_reason,
        )

    async def send_event(self, event: JSON, *, event_id: str | None = None, signature: Signature = "valid") -> Delivery:
        """Wrap `event` in a fresh `event_callback` and deliver it."""
        return await self.send_envelope(self.events.envelope(event, event_id=event_id), signature=signature)

    async def send_url_verification(self, challenge: str = "fake-challenge-token") -> Delivery:
        return await self.send_envelope(url_verification(challenge))

    # -- slash commands and interactivity ----------------------------------------------
    async def send_form(self, fields: Mapping[str, str], *, signature: Signature = "valid") -> Delivery:
        """Deliver form fields (a slash command: see `fake.events.slash_command`)."""
        return await self.post(form_body(fields), content_type="application/x-www-form-urlencoded", signature=signature)

    async def send_slash_command(
        self,
        command: str,
        text: str = "",
        *,
        user: str = ALICE,
        channel: str = GENERAL,
        signature: Signature = "valid",
    ) -> Delivery:
        """`user` runs `command text` in `channel` (with a fresh `response_url` served by the fake)."""
        form = self.events.slash_command(command, text, user=user, channel=channel)
        return await self.send_form(form, signature=signature)

    async def send_payload(self, payload: JSON, *, signature: Signature = "valid") -> Delivery:
        """Deliver an interactivity payload as Slack does: form field `payload` holding JSON."""
        return await self.send_form({"payload": dumps(payload)}, signature=signature)

    async def send_block_action(
        self, *, message: JSON, action_id: str, value: str = "", user: str = ALICE, channel: str = GENERAL
    ) -> Delivery:
        """`user` clicks the button `action_id` of `message`."""
        payload = self.events.block_action(
            message=message, action_id=action_id, value=value, user=user, channel=channel
        )
        return await self.send_payload(payload)

    async def send_message_shortcut(
        self, *, callback_id: str, message: JSON, user: str = ALICE, channel: str = GENERAL
    ) -> Delivery:
        """`user` runs the message shortcut `callback_id` on `message`."""
        payload = self.events.message_shortcut(callback_id=callback_id, message=message, user=user, channel=channel)
        return await self.send_payload(payload)
