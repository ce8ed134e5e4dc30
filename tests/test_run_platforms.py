"""A bare `membot run` serves every platform whose credentials are set."""

from __future__ import annotations

import pytest

from bot.cli import main
from bot.commands import configured_platforms
from bot.config import load_settings
from bot.errors import ConfigError


def test_a_bare_run_without_any_token_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run"]) == 2
    assert "no platform to serve: set DISCORD_TOKEN" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ({"DISCORD_TOKEN": "d"}, ("discord",)),
        ({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xapp-1"}, ("slack",)),
        ({"DISCORD_TOKEN": "d", "SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s"}, ("discord", "slack")),
    ],
)
def test_the_platforms_with_credentials_are_served(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], expected: tuple[str, ...]
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert configured_platforms(load_settings(env_file=None)) == expected


def test_no_credentials_raise_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no platform to serve"):
        configured_platforms(load_settings(env_file=None))
