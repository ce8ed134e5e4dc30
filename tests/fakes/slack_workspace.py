"""The workspace behind the fake Slack: its state and the Web API methods that read and
change it, answering as Slack does (`{"ok": false, "error": ...}`).

`Workspace.call(method, args)` is the whole Web API surface, free of HTTP: `tests.fakes.slack_api`
authenticates, records and serves it. Tests seed it (`add_user`, `add_channel`,
`post_user_message`, `host_file`) and inspect it (`messages`, `thread`, `message`, `files`).
A fresh workspace holds the people and conversations of `tests.fakes.slack_models`.
"""

from __future__ import annotations

import itertools
import json
import mimetypes
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import replace

from tests.fakes.slack_files import FileStore, HostedFile
from tests.fakes.slack_models import (
    MAX_POST_TEXT,
    MAX_STREAM_TEXT,
    MAX_UPDATE_TEXT,
    ApiError,
    SlackChannel,
    SlackUser,
    StoredMessage,
    default_channels,
    default_users,
)
from tests.fakes.slack_wire import JSON, AppIdentity

__all__ = ["Workspace"]


class Workspace:
    """The state and the Web API methods. Thread-safe: one lock around every read and write."""

    def __init__(
        self,
        *,
        app: AppIdentity,
        max_update_text: int = MAX_UPDATE_TEXT,
        max_post_text: int = MAX_POST_TEXT,
    ) -> None:
        self.app = app
        self.max_update_text = max_update_text
        self.max_post_text = max_post_text
        self.files = FileStore(team_id=app.team_id)
        self._lock = threading.RLock()
        self._users: dict[str, SlackUser] = {u.id: u for u in default_users()}
        self._users[app.bot_user_id] = SlackUser(
            id=app.bot_user_id, name=app.bot_name, real_name=app.bot_name, display_name=app.bot_name, is_bot=True
        )
        self._channels: dict[str, SlackChannel] = {c.id: c for c in default_channels()}
        self._messages: dict[str, list[StoredMessage]] = {}
        self._views: list[JSON] = []
        self._base_second = int(time.time())
        self._ts_counter = itertools.count(1)
        self._ids = itertools.count(1)
        self._methods: dict[str, Callable[[JSON], JSON]] = {
            "api.test": lambda args: {"ok": True, "args": args},
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.delete": self._delete,
            "chat.postEphemeral": self._post_ephemeral,
            "chat.startStream": self._start_stream,
            "chat.appendStream": self._append_stream,
            "chat.stopStream": self._stop_stream,
            "users.info": self._users_info,
            "conversations.info": self._conversations_info,
            "conversations.open": self._conversations_open,
            "conversations.replies": self._replies,
            "conversations.history": self._history,
            "files.getUploadURLExternal": self._get_upload_url,
            "files.completeUploadExternal": self._complete_upload,
            "files.info": self._files_info,
            "views.open": self._views_open,
            "reactions.add": self._reactions_add,
            "reactions.remove": self._reactions_remove,
        }

    # -- seeding and inspection (tests) ------------------------------------------------
    def new_ts(self) -> str:
        """A fresh message timestamp: this second, then one microsecond later each time."""
        return f"{self._base_second}.{next(self._ts_counter):06d}"

    def add_user(self, user: SlackUser) -> SlackUser:
        with self._lock:
            self._users[user.id] = user
        return user

    def add_channel(self, channel: SlackChannel) -> SlackChannel:
        with self._lock:
            self._channels[channel.id] = channel
        return channel

    def user(self, user_id: str) -> SlackUser:
        with self._lock:
            return self._users[user_id]

    def channel(self, channel_id: str) -> SlackChannel:
        with self._lock:
            return self._channels[channel_id]

    def post_user_message(
        self, *, channel: str, user: str, text: str, thread_ts: str | None = None, files: Iterable[JSON] = ()
    ) -> StoredMessage:
        """Store a message a person wrote (what Slack has done before it sends the event)."""
        with self._lock:
            self._channel_or_fail(channel, need_member=False)
            message = StoredMessage(
                channel=channel, ts=self.new_ts(), text=text, user=user, thread_ts=thread_ts, files=list(files)
            )
            self._messages.setdefault(channel, []).append(message)
            return replace(message)

    def messages(self, channel: str) -> list[StoredMessage]:
        """Every message in `channel` (threads included), oldest first (copies)."""
        with self._lock:
            return [replace(m) for m in self._messages.get(channel, [])]

    def bot_messages(self, channel: str) -> list[StoredMessage]:
        return [m for m in self.messages(channel) if m.bot_id == self.app.bot_id]

    def thread(self, channel: str, thread_ts: str) -> list[StoredMessage]:
        """The parent (if stored) and its replies, oldest first (copies)."""
        return [m for m in self.messages(channel) if thread_ts in (m.ts, m.thread_ts)]

    def message(self, channel: str, ts: str) -> StoredMessage:
        with self._lock:
            return replace(self._message_or_fail(channel, ts))

    def replace_text(self, channel: str, ts: str, text: str) -> None:
        """A person edits their message."""
        with self._lock:
            message = self._message_or_fail(channel, ts)
            message.text = text
            message.edited_ts = self.new_ts()

    def remove_message(self, channel: str, ts: str) -> None:
        """A person deletes their message."""
        with self._lock:
            self._messages[channel].remove(self._message_or_fail(channel, ts))

    def end_stream(self, channel: str, ts: str) -> None:
        """Make a stream end server-side (as Slack does after ~5 minutes or on the user's Stop)."""
        with self._lock:
            self._message_or_fail(channel, ts).stream = "stopped"

    @property
    def opened_views(self) -> list[JSON]:
        with self._lock:
            return list(self._views)

    def host_file(
        self, *, name: str, content: bytes, user: str, mimetype: str | None = None, title: str | None = None
    ) -> JSON:
        """Host a file a person shared; returns its wire object for an event's `files`."""
        guessed = mimetype or mimetypes.guess_type(name)[0] or "application/octet-stream"
        return self.files.add(name=name, content=content, mimetype=guessed, user=user, title=title).to_wire()

    # -- the Web API -------------------------------------------------------------------
    def call(self, method: str, args: JSON) -> JSON:
        """Run one Web API method; raises `ApiError` for Slack's error answers."""
        handler = self._methods.get(method)
        if handler is None:
            raise ApiError("unknown_method", extra={"req_method": method})
        with self._lock:
            return handler(args)

    def _auth_test(self, args: JSON) -> JSON:
        app = self.app
        reply: JSON = {
            "ok": True,
            "url": f"https://{app.team_domain}.slack.com/",
            "team": app.team_name,
            "user": app.bot_name,
            "team_id": app.team_id,
            "user_id": app.bot_user_id,
            "bot_id": app.bot_id,
            "is_enterprise_install": False,
        }
        if app.enterprise_id is not None:
            reply["enterprise_id"] = app.enterprise_id
        return reply

    def _channel_or_fail(self, channel_id: str, *, need_member: bool) -> SlackChannel:
        if channel_id.startswith(("U", "W")) and channel_id in self._users:
            return self._dm_with(channel_id)
        channel = self._channels.get(channel_id)
        if channel is None:
            raise ApiError("channel_not_found")
        if need_member and not channel.is_member:
            raise ApiError("not_in_channel")
        if need_member and channel.is_archived:
            raise ApiError("is_archived")
        return channel

    def _dm_with(self, user_id: str) -> SlackChannel:
        for channel in self._channels.values():
            if channel.type == "im" and channel.user == user_id:
                return channel
        return self.add_channel(SlackChannel(id=f"D0{user_id[2:]}", type="im", user=user_id))

    def _message_or_fail(self, channel: str, ts: str) -> StoredMessage:
        for message in self._messages.get(channel, []):
            if message.ts == ts:
                return message
        raise ApiError("message_not_found")

    def _bot_message(self, *, channel: str, text: str, thread_ts: str | None, args: JSON) -> StoredMessage:
        message = StoredMessage(
            channel=channel,
            ts=self.new_ts(),
            text=text,
            user=self.app.bot_user_id,
            bot_id=self.app.bot_id,
            thread_ts=thread_ts,
            blocks=_json_list(args.get("blocks")),
            metadata=_json_object(args.get("metadata")),
        )
        self._messages.setdefault(channel, []).append(message)
        return message

    def _post_message(self, args: JSON) -> JSON:
        channel = self._channel_or_fail(_text(args, "channel", "channel_not_found"), need_member=True)
        text = str(args.get("text") or "")
        if not text and not args.get("blocks") and not args.get("attachments"):
            raise ApiError("no_text")
        thread_ts = _optional(args, "thread_ts")
        message = self._bot_message(channel=channel.id, text=text[: self.max_post_text], thread_ts=thread_ts, args=args)
        return {"ok": True, "channel": channel.id, "ts": message.ts, "message": message.to_wire(self.app)}

    def _own_message(self, args: JSON, refusal: str) -> StoredMessage:
        channel = self._channel_or_fail(_text(args, "channel", "channel_not_found"), need_member=False)
        message = self._message_or_fail(channel.id, _text(args, "ts", "message_not_found"))
        if message.bot_id != self.app.bot_id:
            raise ApiError(refusal)
        return message

    def _update(self, args: JSON) -> JSON:
        message = self._own_message(args, "cant_update_message")
        text = args.get("text")
        if text is not None and len(str(text)) > self.max_update_text:
            raise ApiError("msg_too_long")
        if text is not None:
            message.text = str(text)
        if args.get("blocks") is not None:
            message.blocks = _json_list(args.get("blocks"))
        message.edited_ts = self.new_ts()
        wire = message.to_wire(self.app)
        return {"ok": True, "channel": message.channel, "ts": message.ts, "text": message.text, "message": wire}

    def _delete(self, args: JSON) -> JSON:
        message = self._own_message(args, "cant_delete_message")
        self._messages[message.channel].remove(message)
        return {"ok": True, "channel": message.channel, "ts": message.ts}

    def _post_ephemeral(self, args: JSON) -> JSON:
        self._channel_or_fail(_text(args, "channel", "channel_not_found"), need_member=True)
        if _text(args, "user", "user_not_found") not in self._users:
            raise ApiError("user_not_found")
        if not args.get("text") and not args.get("blocks"):
            raise ApiError("no_text")
        return {"ok": True, "message_ts": self.new_ts()}

    # -- streaming ---------------------------------------------------------------------
    def _stream_text(self, args: JSON, message: StoredMessage) -> None:
        pieces: list[str] = []
        if (markdown := args.get("markdown_text")) is not None:
            pieces.append(str(markdown))
        for chunk in _json_list(args.get("chunks")):
            if chunk.get("type") == "markdown_text":
                pieces.append(str(chunk.get("text", "")))
            else:
                message.chunks.append(chunk)
        if any(len(piece) > MAX_STREAM_TEXT for piece in pieces):
            raise ApiError("msg_too_long")
        message.text += "".join(pieces)

    def _start_stream(self, args: JSON) -> JSON:
        channel = self._channel_or_fail(_text(args, "channel", "channel_not_found"), need_member=True)
        message = StoredMessage(
            channel=channel.id,
            ts=self.new_ts(),
            text="",
            user=self.app.bot_user_id,
            bot_id=self.app.bot_id,
            thread_ts=_optional(args, "thread_ts"),
            stream="streaming",
        )
        self._stream_text(args, message)
        self._messages.setdefault(channel.id, []).append(message)
        return {"ok": True, "channel": channel.id, "ts": message.ts}

    def _streaming_message(self, args: JSON) -> StoredMessage:
        message = self._own_message(args, "message_not_owned_by_app")
        if message.stream != "streaming":
            raise ApiError("message_not_in_streaming_state")
        return message

    def _append_stream(self, args: JSON) -> JSON:
        message = self._streaming_message(args)
        self._stream_text(args, message)
        return {"ok": True, "channel": message.channel, "ts": message.ts}

    def _stop_stream(self, args: JSON) -> JSON:
        message = self._streaming_message(args)
        self._stream_text(args, message)
        if args.get("blocks") is not None:
            message.blocks = _json_list(args.get("blocks"))
        message.metadata = _json_object(args.get("metadata")) or message.metadata
        message.stream = "stopped"
        return {"ok": True, "channel": message.channel, "ts": message.ts, "message": message.to_wire(self.app)}

    # -- people and conversations ------------------------------------------------------
    def _users_info(self, args: JSON) -> JSON:
        user = self._users.get(_text(args, "user", "user_not_found"))
        if user is None:
            raise ApiError("user_not_found")
        return {"ok": True, "user": user.to_wire(self.app.team_id)}

    def _conversations_info(self, args: JSON) -> JSON:
        channel = self._channels.get(_text(args, "channel", "channel_not_found"))
        if channel is None:
            raise ApiError("channel_not_found")
        return {"ok": True, "channel": channel.to_wire()}

    def _conversations_open(self, args: JSON) -> JSON:
        user = _text(args, "users", "users_list_not_supplied").split(",")[0]
        if user not in self._users:
            raise ApiError("user_not_found")
        return {"ok": True, "channel": {"id": self._dm_with(user).id}}

    def _replies_of(self, channel: str, ts: str) -> list[StoredMessage]:
        return [m for m in self._messages.get(channel, []) if m.thread_ts == ts and m.ts != ts]

    def _replies(self, args: JSON) -> JSON:
        channel = self._channel_or_fail(_text(args, "channel", "channel_not_found"), need_member=True)
        ts = _text(args, "ts", "thread_not_found")
        parent = next((m for m in self._messages.get(channel.id, []) if m.ts == ts), None)
        if parent is None:
            raise ApiError("thread_not_found")
        replies = self._replies_of(channel.id, ts)
        thread = [parent.to_wire(self.app, replies)] + [r.to_wire(self.app) for r in replies]
        return _page(_within(thread, args), args, default_limit=1000)

    def _history(self, args: JSON) -> JSON:
        channel = self._channel_or_fail(_text(args, "channel", "channel_not_found"), need_member=True)
        tops = [m for m in self._messages.get(channel.id, []) if not m.is_reply]
        wire = [m.to_wire(self.app, self._replies_of(channel.id, m.ts)) for m in reversed(tops)]
        return _page(_within(wire, args), args, default_limit=100)

    # -- files, views, reactions -------------------------------------------------------
    def _get_upload_url(self, args: JSON) -> JSON:
        filename = _text(args, "filename", "invalid_arguments")
        length = _int(_text(args, "length", "invalid_arguments"), "invalid_arguments")
        upload = self.files.begin_upload(filename=filename, length=length, alt_txt=_optional(args, "alt_txt"))
        return {"ok": True, "upload_url": upload.url, "file_id": upload.file_id}

    def _complete_upload(self, args: JSON) -> JSON:
        channel_id = _optional(args, "channel_id") or (_optional(args, "channels") or "").split(",")[0] or None
        channel = self._channel_or_fail(channel_id, need_member=True) if channel_id else None
        done: list[HostedFile] = []
        for item in _json_list(args.get("files")):
            try:
                done.append(
                    self.files.complete(str(item.get("id")), title=item.get("title"), user=self.app.bot_user_id)
                )
            except KeyError:
                raise ApiError("file_not_found") from None
        if channel is not None:
            text = _optional(args, "initial_comment") or ""
            message = self._bot_message(channel=channel.id, text=text, thread_ts=_optional(args, "thread_ts"), args={})
            message.files = [f.to_wire() for f in done]
        return {"ok": True, "files": [{"id": f.id, "title": f.title} for f in done]}

    def _files_info(self, args: JSON) -> JSON:
        try:
            hosted = self.files.get(_text(args, "file", "file_not_found"))
        except KeyError:
            raise ApiError("file_not_found") from None
        return {"ok": True, "file": hosted.to_wire()}

    def _views_open(self, args: JSON) -> JSON:
        _text(args, "trigger_id", "invalid_arguments")
        view = _json_object(args.get("view"))
        if view is None or "type" not in view:
            raise ApiError("invalid_arguments")
        opened = {**view, "id": f"V0FAKE{next(self._ids):04d}", "team_id": self.app.team_id, "state": {"values": {}}}
        self._views.append(opened)
        return {"ok": True, "view": opened}

    def _reacted_message(self, args: JSON) -> tuple[StoredMessage, str]:
        channel = self._channel_or_fail(_text(args, "channel", "channel_not_found"), need_member=True)
        message = self._message_or_fail(channel.id, _text(args, "timestamp", "message_not_found"))
        return message, _text(args, "name", "invalid_name")

    def _reactions_add(self, args: JSON) -> JSON:
        message, name = self._reacted_message(args)
        users = message.reactions.setdefault(name, [])
        if self.app.bot_user_id in users:
            raise ApiError("already_reacted")
        users.append(self.app.bot_user_id)
        return {"ok": True}

    def _reactions_remove(self, args: JSON) -> JSON:
        message, name = self._reacted_message(args)
        users = message.reactions.get(name, [])
        if self.app.bot_user_id not in users:
            raise ApiError("no_reaction")
        users.remove(self.app.bot_user_id)
        if not users:
            del message.reactions[name]
        return {"ok": True}


# -- argument helpers ------------------------------------------------------------------
def _text(args: JSON, name: str, error: str) -> str:
    value = args.get(name)
    if value is None or value == "":
        raise ApiError(error)
    return str(value)


def _int(value: object, error: str) -> int:
    try:
        return int(str(value))
    except ValueError:
        raise ApiError(error) from None


def _optional(args: JSON, name: str) -> str | None:
    value = args.get(name)
    return None if value is None or value == "" else str(value)


def _json_list(value: object) -> list[JSON]:
    """A list argument, sent as JSON (the SDK's `json=`) or as a JSON string (form and query)."""
    if value is None or value == "":
        return []
    decoded = json.loads(value) if isinstance(value, str) else value
    if not isinstance(decoded, list):
        raise ApiError("invalid_arguments")
    return [dict(item) for item in decoded]


def _json_object(value: object) -> JSON | None:
    if value is None or value == "":
        return None
    decoded = json.loads(value) if isinstance(value, str) else value
    if not isinstance(decoded, dict):
        raise ApiError("invalid_arguments")
    return dict(decoded)


def _within(messages: list[JSON], args: JSON) -> list[JSON]:
    oldest, latest = float(args.get("oldest") or 0), float(args.get("latest") or "inf")
    return [m for m in messages if oldest <= float(m["ts"]) <= latest]


def _page(messages: list[JSON], args: JSON, *, default_limit: int) -> JSON:
    """Cursor pagination as Slack does it: `limit`, an opaque `next_cursor`, `has_more`."""
    start = _int(str(args.get("cursor") or "c0")[1:], "invalid_cursor")
    limit = _int(args.get("limit") or default_limit, "invalid_limit")
    page = messages[start : start + limit]
    has_more = start + limit < len(messages)
    cursor = f"c{start + limit}" if has_more else ""
    return {"ok": True, "messages": page, "has_more": has_more, "response_metadata": {"next_cursor": cursor}}
