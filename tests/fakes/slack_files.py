"""Files in the fake workspace: ones people shared (downloadable at `url_private` with the bot
token, as on files.slack.com) and the bot's uploads through Slack's external-upload flow
(`files.getUploadURLExternal` -> POST the bytes to `upload_url` -> `files.completeUploadExternal`),
which is what slack_sdk's `files_upload_v2` drives.
"""

from __future__ import annotations

import itertools
import mimetypes
import secrets
import threading
import time
from dataclasses import dataclass

from tests.fakes.slack_wire import JSON

__all__ = ["FileStore", "HostedFile", "PendingUpload"]


@dataclass(frozen=True, slots=True, kw_only=True)
class HostedFile:
    id: str
    name: str
    title: str
    mimetype: str
    content: bytes
    user: str
    created: int
    url_private: str
    url_private_download: str

    def to_wire(self) -> JSON:
        """The file object of message events and `files.info`."""
        filetype = self.name.rsplit(".", 1)[-1].lower() if "." in self.name else "binary"
        return {
            "id": self.id,
            "created": self.created,
            "timestamp": self.created,
            "name": self.name,
            "title": self.title,
            "mimetype": self.mimetype,
            "filetype": filetype,
            "pretty_type": filetype.upper(),
            "user": self.user,
            "size": len(self.content),
            "mode": "hosted",
            "is_external": False,
            "is_public": False,
            "url_private": self.url_private,
            "url_private_download": self.url_private_download,
            "permalink": f"{self.url_private}?permalink",
        }


@dataclass(slots=True, kw_only=True)
class PendingUpload:
    """A `files.getUploadURLExternal` answer waiting for its bytes and its completion."""

    file_id: str
    filename: str
    length: int
    alt_txt: str | None
    url: str
    content: bytes | None = None


class FileStore:
    """Hosted files and uploads in progress. `root_url` is set by the server once it listens."""

    def __init__(self, *, team_id: str) -> None:
        self.team_id = team_id
        self.root_url = "http://127.0.0.1:0"
        self._lock = threading.Lock()
        self._files: dict[str, HostedFile] = {}
        self._uploads: dict[str, PendingUpload] = {}  # by upload token
        self._ids = itertools.count(1)

    def _new_id(self) -> str:
        return f"F0FAKE{next(self._ids):05d}"

    def add(self, *, name: str, content: bytes, mimetype: str, user: str, title: str | None = None) -> HostedFile:
        return self._host(self._new_id(), name=name, content=content, mimetype=mimetype, user=user, title=title)

    def _host(
        self, file_id: str, *, name: str, content: bytes, mimetype: str, user: str, title: str | None
    ) -> HostedFile:
        base = f"{self.root_url}/files-pri/{self.team_id}-{file_id}"
        hosted = HostedFile(
            id=file_id,
            name=name,
            title=title or name,
            mimetype=mimetype,
            content=content,
            user=user,
            created=int(time.time()),
            url_private=f"{base}/{name}",
            url_private_download=f"{base}/download/{name}",
        )
        with self._lock:
            self._files[file_id] = hosted
        return hosted

    def get(self, file_id: str) -> HostedFile:
        """A hosted file by id (KeyError when there is none)."""
        with self._lock:
            return self._files[file_id]

    def all(self) -> list[HostedFile]:
        with self._lock:
            return list(self._files.values())

    def by_path_key(self, key: str) -> HostedFile | None:
        """The file behind a `/files-pri/{team}-{file}/...` path segment."""
        file_id = key.removeprefix(f"{self.team_id}-")
        with self._lock:
            return self._files.get(file_id)

    def begin_upload(self, *, filename: str, length: int, alt_txt: str | None) -> PendingUpload:
        token = secrets.token_urlsafe(12)
        upload = PendingUpload(
            file_id=self._new_id(),
            filename=filename,
            length=length,
            alt_txt=alt_txt,
            url=f"{self.root_url}/upload/v1/{token}",
        )
        with self._lock:
            self._uploads[token] = upload
        return upload

    def receive(self, token: str, content: bytes) -> bool:
        """Store the bytes POSTed to an upload URL; False for an unknown URL."""
        with self._lock:
            upload = self._uploads.get(token)
            if upload is None:
                return False
            upload.content = content
            return True

    def complete(self, file_id: str, *, title: str | None, user: str) -> HostedFile:
        """Turn an uploaded file into a hosted one (KeyError when no bytes arrived for it)."""
        with self._lock:
            found = [(t, u) for t, u in self._uploads.items() if u.file_id == file_id and u.content is not None]
            if not found:
                raise KeyError(file_id)
            token, upload = found[0]
            del self._uploads[token]
        assert upload.content is not None
        mimetype = mimetypes.guess_type(upload.filename)[0] or "application/octet-stream"
        return self._host(
            file_id, name=upload.filename, content=upload.content, mimetype=mimetype, user=user, title=title
        )
