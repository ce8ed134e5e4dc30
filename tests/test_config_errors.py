"""Every bad setting is one line naming it, never a traceback: invalid JSON in any JSON-valued
variable, absurd numbers in any numeric one (every number has a sane upper bound), a data
folder that cannot be created; and `membot run discord` against an unreachable Discord API
ends with one line, as Slack's does. (conftest empties the environment.)"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import types
import typing
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from bot.cli import main
from bot.config import Settings, load_settings
from bot.config.settings import env_name
from bot.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _work_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # load_settings reads ./.env


def _leaves(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """(location, annotation) of every setting, found from the models themselves."""
    found: list[tuple[tuple[str, ...], Any]] = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found += _leaves(annotation, (*prefix, name))
        else:
            found.append(((*prefix, name), annotation))
    return found


def _types(annotation: Any) -> set[Any]:
    """The types an annotation allows, `X | None` and `Annotated` unwrapped."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return {t for arg in typing.get_args(annotation) if arg is not type(None) for t in _types(arg)}
    if typing.get_origin(annotation) is typing.Annotated:
        return _types(typing.get_args(annotation)[0])
    origin = typing.get_origin(annotation)
    return {origin if origin is not None else annotation}


LEAVES = _leaves(Settings)
JSON_VALUED = [loc for loc, annotation in LEAVES if _types(annotation) & {tuple, list, dict, set, frozenset}]
NUMERIC = [loc for loc, annotation in LEAVES if _types(annotation) & {int, float} and not _types(annotation) & {bool}]


def _one_line_error(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> str:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings(env_file=None)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_the_json_valued_settings_are_found() -> None:
    named = {"MEMBOT_A2A__AGENTS", "MEMBOT_A2A__CALLERS", "MEMBOT_DISCORD__FREE_RESPONSE_CHANNELS"}
    named |= {"MEMBOT_SLACK__ADMIN_USERS", "MEMBOT_DISCORD__SHARD_IDS", "MEMBOT_DISCORD__BLOCKED_ROLES"}
    assert named <= {env_name(loc) for loc in JSON_VALUED}
    assert len(NUMERIC) > 30


@pytest.mark.parametrize("loc", JSON_VALUED, ids=env_name)
@pytest.mark.parametrize("value", ["[bad", '{"a": ', "[1, 2,]", "not json"])
def test_invalid_json_is_one_line_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, loc: tuple[str, ...], value: str
) -> None:
    message = _one_line_error(monkeypatch, env_name(loc), value)
    assert message.startswith(f"{env_name(loc)} (from the environment): ")
    assert "JSON" in message


def test_invalid_json_in_the_dotenv_file_names_the_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("MEMBOT_SLACK__ADMIN_USERS=[U1,\n")
    with pytest.raises(ConfigError, match=r"^MEMBOT_SLACK__ADMIN_USERS \(from \.env\): is not valid JSON"):
        load_settings()


ABSURD = [
    (loc, value)
    for loc in NUMERIC
    for value in (str(10**30), *(("1e300", "inf", "nan") if float in _types(dict(LEAVES)[loc]) else ()))
]


@pytest.mark.parametrize(("loc", "value"), ABSURD, ids=[f"{env_name(loc)}={value[:6]}" for loc, value in ABSURD])
def test_absurd_numbers_are_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, loc: tuple[str, ...], value: str
) -> None:
    message = _one_line_error(monkeypatch, env_name(loc), value)
    assert message.startswith(env_name(loc)), message


@pytest.mark.parametrize("data_dir", ["/proc/1/x", "/dev/null/membot"])
def test_a_data_folder_that_cannot_be_made_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], data_dir: str
) -> None:
    monkeypatch.setenv("MEMBOT_DATA_DIR", data_dir)
    assert main(["agents", "list"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"MEMBOT_DATA_DIR ({data_dir})" in err


def test_a_read_only_data_folder_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    monkeypatch.setenv("MEMBOT_DATA_DIR", str(folder))
    assert main(["agents", "list"]) == 2
    assert "is not writable" in capsys.readouterr().err


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_run_discord_against_an_unreachable_api_is_one_line(tmp_path: Path) -> None:
    port = _closed_port()
    environment = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "DISCORD_TOKEN": "MTAx.fake.token",
        "MEMBOT_DISCORD__API_BASE_URL": f"http://127.0.0.1:{port}/api/v10",
        "MEMBOT_DISCORD__GATEWAY_URL": f"ws://127.0.0.1:{port}/",
        "MEMBOT_DATA_DIR": str(tmp_path / "data"),
        "MEMBOT_OPS__HTTP_PORT": "0",
        "OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1",
        "OPENAI_API_KEY": "test-key",
        "MEMBOT_LOG_FORMAT": "text",
    }
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "run", "discord"],
        env=environment,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert errors == [
        f"error: cannot reach Discord's API at http://127.0.0.1:{port}/api/v10 (connection refused); "
        "check MEMBOT_DISCORD__API_BASE_URL and the network"
    ], done.stderr


@pytest.mark.parametrize(
    "section", [env_name((name,)) for name in Settings.model_fields if (name,) not in dict(LEAVES)]
)
def test_a_whole_section_of_invalid_json_is_one_line(monkeypatch: pytest.MonkeyPatch, section: str) -> None:
    message = _one_line_error(monkeypatch, section, "{bad")
    assert message.startswith(f"{section} (from the environment): is not valid JSON")
