"""Downloading LoCoMo: pinned file checked by size and SHA-256, licence shown, anything else refused.
A loopback server stands in for GitHub (tests never leave the machine)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from aiohttp import web

from bot.cli import main
from bot.errors import ConfigError
from bot.eval.download import LICENCE_NOTICE, ensure_locomo
from tests.fakes.loopback import LoopbackServer

FIXTURE = Path(__file__).with_name("locomo_mini.json")


class FileServer(LoopbackServer):
    """Serves `body` at /data/locomo10.json (or `status`), counting requests."""

    label = "file server"

    def __init__(self, body: bytes, status: int = 200) -> None:
        super().__init__()
        self.body, self.status, self.requests = body, status, 0

    def _add_routes(self, app: web.Application) -> None:
        app.router.add_get("/data/locomo10.json", self._serve_file)

    async def _serve_file(self, request: web.Request) -> web.Response:
        self.requests += 1
        return web.Response(body=self.body, status=self.status)

    @property
    def url(self) -> str:
        return f"{self.origin}/data/locomo10.json"


async def test_the_pinned_file_is_downloaded_once_with_the_licence_shown(tmp_path: Path) -> None:
    body = FIXTURE.read_bytes()
    notes: list[str] = []
    with FileServer(body) as server:
        pinned = {"sha256": hashlib.sha256(body).hexdigest(), "size": len(body)}
        path = await ensure_locomo(tmp_path, url=server.url, notify=notes.append, **pinned)
        assert path == tmp_path / "eval" / "locomo10.json"
        assert path.read_bytes() == body
        again = await ensure_locomo(tmp_path, url=server.url, notify=notes.append, **pinned)
        assert (again, server.requests) == (path, 1)  # the second time from the data directory
    assert notes[0] == LICENCE_NOTICE and "CC BY-NC 4.0" in LICENCE_NOTICE
    assert notes.count(LICENCE_NOTICE) == 2


async def test_a_download_that_is_not_the_pinned_file_is_refused_and_removed(tmp_path: Path) -> None:
    refused = pytest.raises(ConfigError, match=r"the download is not the pinned LoCoMo file .* refused")
    with FileServer(FIXTURE.read_bytes()) as server, refused:  # not LoCoMo's real file: its checksum differs
        await ensure_locomo(tmp_path, url=server.url, notify=lambda _: None)
    assert list((tmp_path / "eval").iterdir()) == []  # neither the file nor a partial one stays


async def test_an_http_error_is_one_clear_error(tmp_path: Path) -> None:
    refused = pytest.raises(ConfigError, match="HTTP 404 while downloading LoCoMo")
    with FileServer(b"Not Found", status=404) as server, refused:
        await ensure_locomo(tmp_path, url=server.url, notify=lambda _: None)


async def test_a_changed_local_copy_is_refused(tmp_path: Path) -> None:
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "locomo10.json").write_text("[]", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"is not the pinned LoCoMo file .* delete it"):
        await ensure_locomo(tmp_path, url="http://127.0.0.1:9/never", notify=lambda _: None)


def test_the_command_downloads_when_no_data_is_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with FileServer(b'[{"sample_id": "tampered"}]') as server:
        monkeypatch.setenv("MEMBOT_DATA_DIR", str(tmp_path / "data"))
        monkeypatch.setenv("MEMBOT_EVAL__LOCOMO_URL", server.url)
        code = main(["eval", "locomo", "--out", str(tmp_path / "run")])
    captured = capsys.readouterr()
    assert code == 2
    assert "CC BY-NC 4.0" in captured.out
    assert "the download is not the pinned LoCoMo file" in captured.err
    assert not (tmp_path / "data" / "eval" / "locomo10.json").exists()
