"""Templates named by platform admins: an installed name whose text fits a core memory block, never
a path. `/memory persona` on Discord and `/membot persona` on Slack, end to end through the
emulators: host files (the process environment, /etc/passwd, a `.env` in the working directory,
`../` paths, symlinks out of the templates folder) never become a persona, are never shown back,
and never reach the LLM."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from bot.agent.templates import load_template
from tests.fakes.discord_bot import DiscordBot
from tests.fakes.discord_server import FakeInteraction, RecordedRequest
from tests.fakes.slack_api import ADMIN
from tests.fakes.slack_bot import SlackBot, reply

SECRET = "sekrit-token-from-dotenv-4711"
HUGE_CHARS = 2500  # the harness's core block limit is 2,000
SAM = load_template("persona", "sam", user_dir=None)

#: What admins type, each naming a host file one way or another; none may be accepted.
REFUSED = [
    "/proc/self/environ",
    "/etc/passwd",
    "../../../../../../etc/passwd",
    "../.env",
    ".env",
    "./.env",
    "~/.env",
    "escape",  # templates/personas/escape.txt -> the .env in the working directory
    "passwd",  # templates/personas/passwd.txt -> /etc/passwd
    "huge",  # an installed template longer than a core memory block
]


@pytest.fixture
def bot_templates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The operator's templates folder, with one good template and traps around it."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(f"DISCORD_TOKEN={SECRET}\nOPENAI_API_KEY={SECRET}\n")
    home = Path(os.environ["HOME"])
    (home / ".env").write_text(f"SLACK_BOT_TOKEN={SECRET}\n")
    root = tmp_path / "templates"
    personas = root / "personas"
    personas.mkdir(parents=True)
    (personas / "pirate.txt").write_text("I am a pirate. Arr.\n")
    (personas / "huge.txt").write_text("x" * HUGE_CHARS)
    (personas / "escape.txt").symlink_to(tmp_path / ".env")
    (personas / "passwd.txt").symlink_to("/etc/passwd")
    return root


def _leaks(text: str) -> bool:
    return SECRET in text or "root:x:" in text or "PATH=" in text


# -- Discord -------------------------------------------------------------------------------
async def _discord_answer(bot: DiscordBot, interaction: FakeInteraction) -> str:
    def about(r: RecordedRequest) -> bool:
        return r.params.get("token") == interaction.token

    await bot.fake.wait_for_request(about)
    body: Any = bot.fake.responses_to(interaction)[0].json or {}
    return str(body.get("data", body).get("content") or "")


async def test_discord_persona_never_names_a_host_file(discord_bot: DiscordBot) -> None:
    bot = discord_bot
    scope = f"discord:{bot.guild.id}"
    for value in REFUSED:
        for where in ("server", "channel"):
            asked = await bot.fake.dispatch_command(
                bot.general, bot.fake.owner, "memory persona", {"template": value, "where": where}
            )
            answer = await _discord_answer(bot, asked)
            assert "start as persona" not in answer, value
            assert not _leaks(answer), value
            assert "/templates/" not in answer, "no host path is shown to a server admin"
    assert await bot.store.get_policy(scope, None) is None
    assert await bot.store.get_policy(scope, str(bot.general.id)) is None

    bot.llm.enqueue(reply("hello"))
    await bot.fake.dispatch_message(bot.general, bot.alice, f"{bot.fake.bot.mention} hi")
    await bot.fake.wait_for_message(bot.general)
    await bot.settle()
    agent_id = await bot.agent_for(bot.channel_key)
    blocks = {b.label: b for b in await bot.store.get_blocks(agent_id)}
    assert blocks["persona"].value == SAM
    assert blocks["persona"].limit == 2000, "the block limit never grows to fit a template"
    assert not any(_leaks(str(r.body)) for r in bot.llm.chat_requests)


async def test_discord_persona_accepts_an_installed_template(discord_bot: DiscordBot) -> None:
    bot = discord_bot
    asked = await bot.fake.dispatch_command(bot.general, bot.fake.owner, "memory persona", {"template": "pirate"})
    assert "start as persona **pirate**" in await _discord_answer(bot, asked)
    bot.llm.enqueue(reply("arr"))
    await bot.fake.dispatch_message(bot.general, bot.alice, f"{bot.fake.bot.mention} hi")
    await bot.fake.wait_for_message(bot.general)
    await bot.settle()
    blocks = {b.label: b.value for b in await bot.store.get_blocks(await bot.agent_for(bot.channel_key))}
    assert blocks["persona"] == "I am a pirate. Arr."


# -- Slack ---------------------------------------------------------------------------------
async def test_slack_persona_never_names_a_host_file(slack_bot: SlackBot) -> None:
    bot = slack_bot
    scope = f"slack:{bot.fake.app.team_id}"
    count = 0
    for value in REFUSED:
        for suffix in (" server", ""):
            await bot.slack.send_slash_command("/membot", f"persona {value}{suffix}", user=ADMIN)
            count += 1
            answer = str((await bot.fake.wait_for_response_url_posts(count))[-1].body["text"])
            assert "New agents here start from persona" not in answer, value
            assert not _leaks(answer), value
            assert "/templates/" not in answer, "no host path is shown to a workspace admin"
    assert await bot.store.get_policy(scope, None) is None

    bot.llm.enqueue(reply("hello"))
    await bot.slack.send_event(bot.fake.events.mention("hi"))
    await bot.fake.wait_for_call("chat.postMessage")
    await bot.settle()
    from tests.fakes.slack_api import GENERAL

    blocks = {b.label: b for b in await bot.store.get_blocks(await bot.agent_for(bot.channel_key(GENERAL)))}
    assert blocks["persona"].value == SAM
    assert blocks["persona"].limit == 2000
    assert not any(_leaks(str(r.body)) for r in bot.llm.chat_requests)

    shown = await bot.slack.send_slash_command("/membot", "dump", user=ADMIN)
    assert shown.status == 200
    await bot.adapter.wait_requests_done()
    uploads = [c for c in bot.fake.calls if c.method.startswith("files.")]
    assert not any(_leaks(str(c.args)) for c in uploads)


async def test_slack_persona_accepts_an_installed_template(slack_bot: SlackBot) -> None:
    bot = slack_bot
    await bot.slack.send_slash_command("/membot", "persona pirate", user=ADMIN)
    answer = (await bot.fake.wait_for_response_url_post()).body["text"]
    assert "New agents here start from persona `pirate`" in answer
