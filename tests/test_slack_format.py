"""Markdown -> Slack mrkdwn (`bot.slack.format`)."""

from __future__ import annotations

import pytest

from bot.slack.format import markdown_to_mrkdwn, mrkdwn_escape


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("**bold** and __bold__", "*bold* and *bold*"),
        ("*italic* and _italic_", "_italic_ and _italic_"),
        ("***both***", "*_both_*"),
        ("~~gone~~", "~gone~"),
        ("**bold with *italic* inside**", "*bold with _italic_ inside*"),
        ("snake_case_name, 2*3*4 and file_name.py stay", "snake_case_name, 2*3*4 and file_name.py stay"),
        ("a < b & c > d", "a &lt; b &amp; c &gt; d"),
        ("[the docs](https://example.com/a_b?x=1&y=2)", "<https://example.com/a_b?x=1&y=2|the docs>"),
        ("[**bold label**](https://x.org)", "<https://x.org|bold label>"),
        ("![a cat](https://img.example/cat.png)", "<https://img.example/cat.png|a cat>"),
        ("[https://x.org](https://x.org)", "<https://x.org>"),
        ("see <https://slack.com>", "see <https://slack.com>"),
        ("hi <@U0ALICE01> in <#C0GENERAL>", "hi <@U0ALICE01> in <#C0GENERAL>"),
        ("ping <!here> and <!channel>", "ping &lt;!here&gt; and &lt;!channel&gt;"),
        ("`**not bold** <x>`", "`**not bold** &lt;x&gt;`"),
        ("# Title", "*Title*"),
        ("### Plan for **today** ###", "*Plan for today*"),
        ("#hashtag", "#hashtag"),
        ("- one\n  * two\n+ three", "\u2022 one\n  \u2022 two\n\u2022 three"),
        ("- [ ] todo\n- [x] done", "\u2022 \u2610 todo\n\u2022 \u2611 done"),
        ("1. first\n2. second", "1. first\n2. second"),
        ("> quoted *words*", "> quoted _words_"),
        ("---", "\u2500" * 12),
        ("", ""),
    ],
)
def test_markdown_becomes_mrkdwn(markdown: str, mrkdwn: str) -> None:
    assert markdown_to_mrkdwn(markdown) == mrkdwn


def test_code_blocks_are_kept_intact_but_for_the_language_tag_and_escaping() -> None:
    markdown = "Try this:\n\n```python\ndef f(a, b):\n    return a < b and '**no**' # _x_\n```\nDone."
    assert markdown_to_mrkdwn(markdown) == (
        "Try this:\n\n```\ndef f(a, b):\n    return a &lt; b and '**no**' # _x_\n```\nDone."
    )


def test_an_unclosed_code_block_is_closed() -> None:
    assert markdown_to_mrkdwn("```\n# not a heading\n- not a list") == "```\n# not a heading\n- not a list\n```"


def test_tilde_fences_and_longer_backtick_runs_close_only_their_own_block() -> None:
    markdown = "~~~~\n```\n**x**\n~~~~\n**y**"
    assert markdown_to_mrkdwn(markdown) == "```\n`\u200b``\n**x**\n```\n*y*", "the inner fence cannot close it"


def test_escape_handles_slacks_three_characters_only() -> None:
    assert mrkdwn_escape("<a & b> \"c\" 'd'") == "&lt;a &amp; b&gt; \"c\" 'd'"
