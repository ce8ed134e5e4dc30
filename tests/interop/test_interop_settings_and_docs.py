"""A2A settings refuse what would be unsafe or unusable; docs/interop.md's examples stay valid Python
whose membot imports exist."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

from bot.config import load_settings
from bot.errors import ConfigError

DOC = Path(__file__).resolve().parents[2] / "docs" / "interop.md"


def test_nothing_is_exposed_by_default_and_loopback_needs_no_token() -> None:
    a2a = load_settings(None, env_file=None).a2a
    assert a2a.agents == () and a2a.host == "127.0.0.1" and a2a.token is None


@pytest.mark.parametrize(
    ("a2a", "expected"),
    [
        (
            {"host": "0.0.0.0"},
            "a bearer token (MEMBOT_A2A__TOKEN or MEMBOT_A2A__CALLERS) is required when the A2A server listens on 0.0.0.0",
        ),
        (
            {"public_url": "https://agents.example.com/membot"},
            "a bearer token (MEMBOT_A2A__TOKEN or MEMBOT_A2A__CALLERS) is required when the A2A server is "
            "published at https://agents.example.com/membot",
        ),
        ({"max_message_parts": 5000}, "a2a.max_message_parts (from the command line): must be between 1 and 1000"),
        ({"agents": ["sam", "a/b"]}, "'a/b' is not an agent name usable in a URL"),
        ({"agents": ["sam", "sam"]}, "lists an agent twice"),
        ({"public_url": "membot.example.com"}, "must be an http:// or https:// URL"),
        ({"max_message_chars": 0}, "a2a.max_message_chars"),
        ({"callers": {"a": "same", "b": "same"}}, "two callers share a token"),
        ({"callers": {"a": "t1"}, "token": "t1"}, "MEMBOT_A2A__TOKEN is also a caller's token"),
        ({"callers": {"": "t1"}}, "caller name '' must be 1 to 100 characters"),
    ],
)
def test_bad_a2a_settings_are_one_clear_line(a2a: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(expected)):
        load_settings(None, env_file=None, overrides={"a2a": a2a})


def test_a_loopback_public_url_needs_no_token() -> None:
    a2a = load_settings(None, env_file=None, overrides={"a2a": {"public_url": "http://localhost:8390"}}).a2a
    assert a2a.public_url == "http://localhost:8390" and not a2a.is_authenticated


def test_named_callers_alone_protect_an_exposed_host() -> None:
    a2a = load_settings(None, env_file=None, overrides={"a2a": {"host": "0.0.0.0", "callers": {"planner": "t"}}}).a2a
    assert a2a.is_authenticated and a2a.token is None


def test_an_exposed_host_with_a_token_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMBOT_A2A__HOST", "0.0.0.0")
    monkeypatch.setenv("MEMBOT_A2A__TOKEN", "s3cret")
    monkeypatch.setenv("MEMBOT_A2A__AGENTS", '["sam", "discord:1:channel:2"]')
    a2a = load_settings(None, env_file=None).a2a
    assert a2a.agents == ("sam", "discord:1:channel:2")
    assert a2a.token is not None and a2a.token.get_secret_value() == "s3cret"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_every_framework_has_an_example_that_compiles_and_imports_real_membot_names() -> None:
    blocks = python_blocks()
    text = "\n".join(blocks)
    for used in ("a2a.client", "ag2.a2a", "GroupChatBuilder", "RoundRobinGroupChat"):
        assert used in text
    for block in blocks:
        tree = ast.parse(block)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bot"):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name), f"{node.module}.{alias.name} is in the docs but not in bot"
