"""The console's settings: off without a token, a short token refused at start-up in one line,
the token a secret like the others (hidden in descriptions, redacted from logs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import load_settings
from bot.errors import ConfigError
from bot.ops.logging import Redactor, settings_secrets
from tests.console.world import TOKEN


def test_no_token_no_console() -> None:
    settings = load_settings(env_file=None)
    assert settings.console.token is None
    assert settings.console.session_hours == 12.0


def test_a_short_token_stops_start_up_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMBOT_CONSOLE__TOKEN", "hunter2")
    with pytest.raises(ConfigError) as raised:
        load_settings(env_file=None)
    text = str(raised.value)
    assert "MEMBOT_CONSOLE__TOKEN" in text and "at least 16 characters" in text
    assert "hunter2" not in text
    assert "\n" not in text


def test_the_token_is_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMBOT_CONSOLE__TOKEN", TOKEN)
    monkeypatch.setenv("MEMBOT_CONSOLE__SESSION_HOURS", "2")
    settings = load_settings(env_file=None)
    assert settings.console.token is not None and settings.console.token.get_secret_value() == TOKEN
    assert settings.console.session_hours == 2
    assert settings.describe()["console"]["token"] == "***"
    assert Redactor(settings_secrets(settings))(f"login with {TOKEN} failed") == "login with *** failed"


def test_the_docs_show_one_small_screenshot_of_each_page() -> None:
    root = Path(__file__).resolve().parents[2]
    docs = (root / "docs" / "console.md").read_text(encoding="utf-8")
    for name in ("login", "agents", "agent", "cost", "audit"):
        image = root / "docs" / "images" / f"console-{name}.png"
        assert f"](images/console-{name}.png)" in docs, name
        assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert image.stat().st_size < 200_000, name
    assert "docs/console.md" in (root / "README.md").read_text(encoding="utf-8")
