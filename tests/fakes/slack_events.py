"""Events API event bodies, and what people do in the fake workspace as the events Slack
would send about it.

The `*_event` functions build the `event` of an `event_callback` as Slack documents it
(`app_mention`, `message` in channels, DMs and threads with `channel_type`, `thread_ts`,
`files`, and the `message_changed`/`message_deleted`/`bot_message` subtypes).

`WorkspaceEvents` (`fake.events`) plays the people: each method changes the workspace first
(a message is stored before its event exists, as in Slack, so `conversations.replies` sees
it) and returns the body, ready for `SlackRequestSender` (HTTP) or `SocketModeServer`
(Socket Mode). Slash commands, button clicks and shortcuts come with a fresh `response_url`
served by the fake.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tests.fakes.slack_models import ALICE, DM_ALICE, GENERAL
from tests.fakes.slack_wire import (
    JSON,
    ChannelType,
    block_actions_payload,
    event_callback,
    message_shortcut_payload,
    slash_command_form,
    view_submission_payload,
)
from tests.fakes.slack_workspace import Workspace

__all__ = [
    "WorkspaceEvents",
    "app_mention_event",
    "bot_message_event",
    "message_changed_event",
    "message_deleted_event",
    "message_event",
]


def _message_fields(
    *,
    text: str,
    user: str,
    channel: str,
    ts: str,
    team_id: str,
    thread_ts: str | None,
    parent_user_id: str | None,
    files: Sequence[JSON],
) -> JSON:
    fields: JSON = {
        "user": user,
        "text": text,
        "ts": ts,
        "channel": channel,
        "event_ts": ts,
        "team": team_id,
        "client_msg_id": f"fake-{ts}",
        "blocks": [
            {
                "type": "rich_text",
                "block_id": f"b{ts.replace('.', '')[-6:]}",
                "elements": [{"type": "rich_text_section", "elements": [{"type": "text", "text": text}]}],
            }
        ],
    }
    if thread_ts is not None:
        fields["thread_ts"] = thread_ts
        if parent_user_id is not None:
            fields["parent_user_id"] = parent_user_id
    if files:
        fields["files"] = list(files)
        fields["upload"] = False
    return fields


def app_mention_event(
    *,
    text: str,
    user: str,
    channel: str,
    ts: str,
    team_id: str,
    thread_ts: str | None = None,
    parent_user_id: str | None = None,
    files: Sequence[JSON] = (),
) -> JSON:
    """An `app_mention` event (no `channel_type`: Slack leaves it out of this one)."""
    fields = _message_fields(
        text=text,
        user=user,
        channel=channel,
        ts=ts,
        team_id=team_id,
        thread_ts=thread_ts,
        parent_user_id=parent_user_id,
        files=files,
    )
    return {"type": "app_mention", **fields}


def message_event(
    *,
    text: str,
    user: str,
    channel: str,
    channel_type: ChannelType,
    ts: str,
    team_id: str,
    thread_ts: str | None = None,
    parent_user_id: str | None = None,
    files: Sequence[JSON] = (),
) -> JSON:
    """A user's `message` event; with `files` it carries subtype `file_share` as Slack's does."""
    fields = _message_fields(
        text=text,
        user=user,
        channel=channel,
        ts=ts,
        team_id=team_id,
        thread_ts=thread_ts,
        parent_user_id=parent_user_id,
        files=files,
    )
    event: JSON = {"type": "message", **fields, "channel_type": channel_type}
    if files:
        event["subtype"] = "file_share"
    return event


def bot_message_event(
    *,
    text: str,
    bot_id: str,
    channel: str,
    channel_type: ChannelType,
    ts: str,
    user: str | None = None,
    app_id: str | None = None,
    username: str | None = None,
    thread_ts: str | None = None,
    legacy_subtype: bool = True,
) -> JSON:
    """A message posted by a bot: subtype `bot_message` (legacy integrations) or an app's plain
    message carrying `bot_id` + `user` (`legacy_subtype=False`, what our own posts echo back as)."""
    event: JSON = {
        "type": "message",
        "text": text,
        "ts": ts,
        "event_ts": ts,
        "channel": channel,
        "channel_type": channel_type,
        "bot_id": bot_id,
    }
    if legacy_subtype:
        event["subtype"] = "bot_message"
        event["username"] = username or "a-bot"
    if user is not None:
        event["user"] = user
    if app_id is not None:
        event["app_id"] = app_id
        event["bot_profile"] = {"id": bot_id, "app_id": app_id, "name": username or "a-bot", "deleted": False}
    if thread_ts is not None:
        event["thread_ts"] = thread_ts
    return event


def message_changed_event(
    *,
    channel: str,
    channel_type: ChannelType,
    user: str,
    original_ts: str,
    previous_text: str,
    new_text: str,
    event_ts: str,
    thread_ts: str | None = None,
) -> JSON:
    """The hidden `message_changed` event Slack sends when a message is edited."""
    message: JSON = {
        "type": "message",
        "user": user,
        "text": new_text,
        "ts": original_ts,
        "edited": {"user": user, "ts": event_ts},
    }
    previous: JSON = {"type": "message", "user": user, "text": previous_text, "ts": original_ts}
    if thread_ts is not None:
        message["thread_ts"] = previous["thread_ts"] = thread_ts
    return {
        "type": "message",
        "subtype": "message_changed",
        "hidden": True,
        "channel": channel,
        "channel_type": channel_type,
        "ts": event_ts,
        "event_ts": event_ts,
        "message": message,
        "previous_message": previous,
    }


def message_deleted_event(
    *,
    channel: str,
    channel_type: ChannelType,
    user: str,
    deleted_ts: str,
    previous_text: str,
    event_ts: str,
    thread_ts: str | None = None,
) -> JSON:
    """The hidden `message_deleted` event Slack sends when a message is removed."""
    previous: JSON = {"type": "message", "user": user, "text": previous_text, "ts": deleted_ts}
    if thread_ts is not None:
        previous["thread_ts"] = thread_ts
    return {
        "type": "message",
        "subtype": "message_deleted",
        "hidden": True,
        "channel": channel,
        "channel_type": channel_type,
        "ts": event_ts,
        "event_ts": event_ts,
        "deleted_ts": deleted_ts,
        "previous_message": previous,
    }


class WorkspaceEvents:
    """Request bodies for people's actions, bound to one workspace."""

    def __init__(self, workspace: Workspace, *, new_response_url: Callable[[str, str], str]) -> None:
        self._workspace = workspace
        self._new_response_url = new_response_url

    def envelope(self, event: JSON, *, event_id: str | None = None) -> JSON:
        """The `event_callback` body for `event` (keep it to redeliver the very same body)."""
        return event_callback(event, app=self._workspace.app, event_id=event_id)

    @property
    def bot_mention(self) -> str:
        """How a mention of the bot looks in message text: "<@U0MEMBOT1>"."""
        return f"<@{self._workspace.app.bot_user_id}>"

    def _parent_user(self, channel: str, thread_ts: str | None) -> str | None:
        if thread_ts is None:
            return None
        parent = [m for m in self._workspace.messages(channel) if m.ts == thread_ts]
        return parent[0].user if parent else None

    def mention(
        self,
        text: str,
        *,
        user: str = ALICE,
        channel: str = GENERAL,
        thread_ts: str | None = None,
        files: Sequence[JSON] = (),
    ) -> JSON:
        """`user` mentions the bot in `channel` (the mention is put in front of `text` unless there)."""
        if self.bot_mention not in text:
            text = f"{self.bot_mention} {text}"
        stored = self._workspace.post_user_message(
            channel=channel, user=user, text=text, thread_ts=thread_ts, files=files
        )
        return app_mention_event(
            text=text,
            user=user,
            channel=channel,
            ts=stored.ts,
            team_id=self._workspace.app.team_id,
            thread_ts=thread_ts,
            parent_user_id=self._parent_user(channel, thread_ts),
            files=files,
        )

    def message(
        self,
        text: str,
        *,
        user: str = ALICE,
        channel: str = DM_ALICE,
        thread_ts: str | None = None,
        files: Sequence[JSON] = (),
    ) -> JSON:
        """`user` writes `text` in `channel` (a DM with the bot unless told otherwise)."""
        stored = self._workspace.post_user_message(
            channel=channel, user=user, text=text, thread_ts=thread_ts, files=files
        )
        return message_event(
            text=text,
            user=user,
            channel=channel,
            channel_type=self._workspace.channel(channel).type,
            ts=stored.ts,
            team_id=self._workspace.app.team_id,
            thread_ts=thread_ts,
            parent_user_id=self._parent_user(channel, thread_ts),
            files=files,
        )

    def edit(self, channel: str, ts: str, new_text: str) -> JSON:
        """The author edits a stored message: it changes, and `message_changed` is the event."""
        before = self._workspace.message(channel, ts)
        self._workspace.replace_text(channel, ts, new_text)
        return message_changed_event(
            channel=channel,
            channel_type=self._workspace.channel(channel).type,
            user=before.user,
            original_ts=ts,
            previous_text=before.text,
            new_text=new_text,
            event_ts=self._workspace.new_ts(),
            thread_ts=before.thread_ts,
        )

    def delete(self, channel: str, ts: str) -> JSON:
        """The author deletes a stored message: it goes, and `message_deleted` is the event."""
        before = self._workspace.message(channel, ts)
        self._workspace.remove_message(channel, ts)
        return message_deleted_event(
            channel=channel,
            channel_type=self._workspace.channel(channel).type,
            user=before.user,
            deleted_ts=ts,
            previous_text=before.text,
            event_ts=self._workspace.new_ts(),
            thread_ts=before.thread_ts,
        )

    def bot_message(
        self,
        text: str,
        *,
        channel: str = GENERAL,
        bot_id: str = "B0OTHER01",
        username: str = "other-bot",
        thread_ts: str | None = None,
    ) -> JSON:
        """Another integration posts: the legacy `bot_message` subtype."""
        return bot_message_event(
            text=text,
            bot_id=bot_id,
            channel=channel,
            channel_type=self._workspace.channel(channel).type,
            ts=self._workspace.new_ts(),
            username=username,
            thread_ts=thread_ts,
        )

    def own_message_echo(self, channel: str, ts: str) -> JSON:
        """The `message` event Slack sends back about one of the bot's own posts (`bot_id` + `user`)."""
        posted = self._workspace.message(channel, ts)
        app = self._workspace.app
        return bot_message_event(
            text=posted.text,
            bot_id=app.bot_id,
            user=app.bot_user_id,
            app_id=app.app_id,
            username=app.bot_name,
            channel=channel,
            channel_type=self._workspace.channel(channel).type,
            ts=posted.ts,
            thread_ts=posted.thread_ts,
            legacy_subtype=False,
        )

    # -- slash commands and interactivity ----------------------------------------------
    def _names(self, user: str, channel: str) -> tuple[str, str]:
        slack_channel = self._workspace.channel(channel)
        channel_name = "directmessage" if slack_channel.type == "im" else slack_channel.name
        return self._workspace.user(user).name, channel_name

    def slash_command(
        self,
        command: str,
        text: str = "",
        *,
        user: str = ALICE,
        channel: str = GENERAL,
        response_url: str | None = None,
        trigger_id: str | None = None,
    ) -> dict[str, str]:
        """`user` runs `command text` in `channel`: the form fields Slack posts."""
        user_name, channel_name = self._names(user, channel)
        return slash_command_form(
            app=self._workspace.app,
            command=command,
            text=text,
            user_id=user,
            user_name=user_name,
            channel_id=channel,
            channel_name=channel_name,
            response_url=response_url or self._new_response_url(channel, user),
            trigger_id=trigger_id,
        )

    def block_action(
        self,
        *,
        message: JSON,
        action_id: str,
        value: str = "",
        user: str = ALICE,
        channel: str = GENERAL,
        block_id: str = "actions",
    ) -> JSON:
        """`user` clicks a button of `message` (a wire message, e.g. `chat.postMessage`'s `message`)."""
        user_name, channel_name = self._names(user, channel)
        return block_actions_payload(
            app=self._workspace.app,
            user_id=user,
            user_name=user_name,
            channel_id=channel,
            channel_name=channel_name,
            message=message,
            action_id=action_id,
            value=value,
            response_url=self._new_response_url(channel, user),
            block_id=block_id,
        )

    def message_shortcut(self, *, callback_id: str, message: JSON, user: str = ALICE, channel: str = GENERAL) -> JSON:
        """`user` runs the message shortcut `callback_id` on `message`."""
        user_name, channel_name = self._names(user, channel)
        return message_shortcut_payload(
            app=self._workspace.app,
            callback_id=callback_id,
            user_id=user,
            user_name=user_name,
            channel_id=channel,
            channel_name=channel_name,
            message=message,
            response_url=self._new_response_url(channel, user),
        )

    def view_submission(self, *, view: JSON, values: JSON, user: str = ALICE) -> JSON:
        """`user` submits the modal `view` (as `views.open` got it) with input `values`."""
        return view_submission_payload(
            app=self._workspace.app,
            user_id=user,
            user_name=self._workspace.user(user).name,
            view=view,
            values=values,
        )
