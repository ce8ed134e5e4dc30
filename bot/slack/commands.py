"""`/membot` on Slack's wire: the slash command, its confirmation buttons, the message
shortcut (a modal asking for the subcommand) and `@membot admin ...` in threads.

Every listener acknowledges at once (Slack wants it within 3 s) and runs the request in the
background, on a task the adapter owns. Answers are ephemeral: through the request's
`response_url`, or, where there is none or it has expired, `chat.postEphemeral`. Files
(dumps, exports) go to the admin's DM with the bot through `files_upload_v2`, never into the
channel. Parsing, the admin check and formatting are `bot.slack.admin`'s.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.slack.admin import CANCEL_ACTION, CONFIRM_ACTION, AdminAnswer, AdminRequest, SlackAdmin
from bot.slack.client import SLACK_FAILURES, error_code

__all__ = ["COMMAND", "MODAL_CALLBACK", "SHORTCUT_CALLBACK", "SlackCommands", "Spawn"]

_log = logging.getLogger(__name__)

COMMAND = "/membot"
SHORTCUT_CALLBACK = "membot_admin"
MODAL_CALLBACK = "membot_admin_modal"
_INPUT_BLOCK = "command"
_INPUT_ACTION = "text"

#: Runs a coroutine as a background task the adapter owns (and awaits when it closes).
Spawn = Callable[[Coroutine[Any, Any, None]], None]


class SlackCommands:
    """The admin surface: listeners on the Bolt app, answers through the Web API."""

    def __init__(self, *, client: AsyncWebClient, admin: SlackAdmin, spawn: Spawn) -> None:
        self._client = client
        self._admin = admin
        self._spawn = spawn

    def register(self, app: AsyncApp) -> None:
        app.command(COMMAND)(self._on_command)
        app.action(CONFIRM_ACTION)(self._on_confirm)
        app.action(CANCEL_ACTION)(self._on_cancel)
        app.shortcut(SHORTCUT_CALLBACK)(self._on_shortcut)
        app.view(MODAL_CALLBACK)(self._on_modal)

    async def run_mention(self, request: AdminRequest) -> None:
        """`@membot admin ...` (the adapter's app_mention listener hands these over)."""
        await self._deliver(request, await self._admin.run(request), response_url=None)

    # -- listeners (acknowledge, then work in the background) ---------------------------
    async def _on_command(self, ack: AsyncAck, command: dict[str, Any]) -> None:
        await ack()
        request = AdminRequest(
            team=str(command.get("team_id")),
            user=str(command.get("user_id")),
            channel=str(command.get("channel_id")),
            text=str(command.get("text") or ""),
        )
        self._spawn(self._run(request, response_url=command.get("response_url")))

    async def _on_confirm(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        request = _request_from_interaction(body)
        value = str((body.get("actions") or [{}])[0].get("value") or "")
        self._spawn(self._confirm(request, value, response_url=body.get("response_url")))

    async def _on_cancel(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        request = _request_from_interaction(body)
        answer = AdminAnswer(text="Cancelled; nothing was changed.")
        self._spawn(self._deliver(request, answer, response_url=body.get("response_url"), replace_original=True))

    async def _on_shortcut(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        self._spawn(self._open_modal(body))

    async def _on_modal(self, ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        await ack()  # closes the modal
        where = _metadata(view)
        values = (view.get("state") or {}).get("values") or {}
        text = ((values.get(_INPUT_BLOCK) or {}).get(_INPUT_ACTION) or {}).get("value") or ""
        request = AdminRequest(
            team=str((body.get("team") or {}).get("id")),
            user=str((body.get("user") or {}).get("id")),
            channel=str(where.get("channel")),
            thread_ts=where.get("thread_ts"),
            text=str(text),
        )
        if (where.get("user"), where.get("team")) != (request.user, request.team):
            # Slack lets only the opener submit a view; checked anyway, as the form says whose it is.
            refusal = AdminAnswer(text="This form was opened by someone else; nothing was run.")
            self._spawn(self._deliver(request, refusal, response_url=None))
            return
        self._spawn(self._run(request, response_url=where.get("response_url"), fresh=True))

    # -- work ---------------------------------------------------------------------------
    async def _run(self, request: AdminRequest, *, response_url: str | None, fresh: bool = False) -> None:
        await self._deliver(request, await self._admin.run(request, fresh=fresh), response_url=response_url)

    async def _confirm(self, request: AdminRequest, value: str, *, response_url: str | None) -> None:
        answer = await self._admin.confirm(request, value)
        await self._deliver(request, answer, response_url=response_url, replace_original=True)

    async def _open_modal(self, body: dict[str, Any]) -> None:
        message = body.get("message") or {}
        metadata = {
            # Who may submit it, and where: checked again on submit.
            "user": (body.get("user") or {}).get("id"),
            "team": (body.get("team") or {}).get("id"),
            "channel": (body.get("channel") or {}).get("id"),
            # The thread the message is in, or the one it starts: the command acts on its channel.
            "thread_ts": message.get("thread_ts") or message.get("ts"),
            "response_url": body.get("response_url"),
        }
        view = {
            "type": "modal",
            "callback_id": MODAL_CALLBACK,
            "title": {"type": "plain_text", "text": "Manage membot"},
            "submit": {"type": "plain_text", "text": "Run"},
            "close": {"type": "plain_text", "text": "Cancel"},
            "private_metadata": json.dumps(metadata),
            "blocks": [
                {
                    "type": "input",
                    "block_id": _INPUT_BLOCK,
                    "label": {"type": "plain_text", "text": "/membot subcommand"},
                    "element": {
                        "type": "plain_text_input",
                        "action_id": _INPUT_ACTION,
                        "placeholder": {"type": "plain_text", "text": "show, reset core, pause, help ..."},
                    },
                }
            ],
        }
        try:
            await self._client.views_open(trigger_id=str(body.get("trigger_id")), view=view)
        except SLACK_FAILURES as exc:
            _log.warning("could not open the admin modal: %s", error_code(exc))

    async def _deliver(
        self, request: AdminRequest, answer: AdminAnswer, *, response_url: str | None, replace_original: bool = False
    ) -> None:
        if answer.file is not None:
            try:
                opened = await self._client.conversations_open(users=request.user)
                await self._client.files_upload_v2(
                    channel=str(opened["channel"]["id"]),
                    content=answer.file.content,
                    filename=answer.file.filename,
                    title=answer.file.title,
                    initial_comment=f"{answer.file.title}, as you asked in <#{request.channel}>.",
                )
            except SLACK_FAILURES as exc:
                _log.warning("could not send %s to %s: %s", answer.file.filename, request.user, error_code(exc))
                answer = AdminAnswer(text=f"Could not send the file to your DM ({error_code(exc)}).")
        await self._answer(request, answer, response_url=response_url, replace_original=replace_original)

    async def _answer(
        self, request: AdminRequest, answer: AdminAnswer, *, response_url: str | None, replace_original: bool
    ) -> None:
        """Ephemerally: at `response_url` if it still works, else with chat.postEphemeral."""
        blocks = list(answer.blocks) or None
        if response_url:
            try:
                response = await AsyncWebhookClient(response_url).send(
                    text=answer.text, blocks=blocks, response_type="ephemeral", replace_original=replace_original
                )
                if response.status_code == 200:
                    return
                _log.info(
                    "response_url answered %s (%s); using chat.postEphemeral", response.status_code, response.body
                )
            except SLACK_FAILURES as exc:
                _log.info("response_url failed (%s); using chat.postEphemeral", error_code(exc))
        try:
            await self._client.chat_postEphemeral(
                channel=request.channel, user=request.user, text=answer.text, blocks=blocks, thread_ts=request.thread_ts
            )
        except SLACK_FAILURES as exc:
            _log.warning(
                "could not answer %s's admin command in %s: %s", request.user, request.channel, error_code(exc)
            )


def _metadata(view: dict[str, Any]) -> dict[str, Any]:
    """The modal's `private_metadata` as we wrote it; {} if it is not (then nothing matches)."""
    try:
        found = json.loads(view.get("private_metadata") or "{}")
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def _request_from_interaction(body: dict[str, Any]) -> AdminRequest:
    container = body.get("container") or {}
    return AdminRequest(
        team=str((body.get("team") or {}).get("id")),
        user=str((body.get("user") or {}).get("id")),
        channel=str((body.get("channel") or {}).get("id") or container.get("channel_id")),
        thread_ts=container.get("thread_ts"),
    )
