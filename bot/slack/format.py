"""Markdown, as language models write it, turned into Slack's mrkdwn.

    **bold**, __bold__          ->  *bold*
    *italic*, _italic_          ->  _italic_
    ***both***                  ->  *_both_*
    ~~struck~~                  ->  ~struck~
    [text](url), ![alt](url)    ->  <url|text>
    <https://example.com>       ->  <https://example.com>
    # Heading                   ->  *Heading*
    - item, * item, + item      ->  • item   (indentation kept; "- [ ]" -> "☐", "- [x]" -> "☑")
    ---                         ->  a rule of box-drawing characters
    ```python ... ```           ->  ``` ... ```   (the language tag dropped, the code untouched
                                                   but for a ``` line in a ~~~ block, which
                                                   gets a zero-width space so it cannot close it)
    `code`, > quote, 1. item    ->  unchanged

Slack wants `&`, `<` and `>` escaped everywhere, code included (it shows them as typed); a
quote's leading `>` stays. Slack's own user and channel mentions (`<@U123>`, `<#C123>`) pass
through; broadcast mentions (`<!here>`, `<!channel>`, `<!everyone>`) are escaped, so a model
cannot ping a whole channel. No Slack SDK here: this is text in, text out.
"""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = ["markdown_to_mrkdwn", "mrkdwn_escape"]

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_RULE = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_BULLET = re.compile(r"^([ \t]*)[-*+][ \t]+(?:\[([ xX])\][ \t]+)?(.*)$")
_QUOTE = re.compile(r"^((?:[ \t]*>[ \t]?)+)(.*)$")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")

# Kept whole before escaping: Markdown links and images, autolinks, Slack's own mentions.
_LINK = re.compile(r"!?\[([^\]\n]*)\]\(\s*<?([^()\s>]+(?:\([^()\s]*\))?[^()\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
_AUTOLINK = re.compile(r"<((?:https?|mailto):[^\s<>]+)>")
_SLACK_MENTION = re.compile(r"<(?:@[UW][A-Z0-9]+|#C[A-Z0-9]+)(?:\|[^<>]*)?>")

_BOLD_ITALIC = re.compile(r"\*\*\*(?=\S)(.+?)(?<=\S)\*\*\*")
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*|(?<!\w)__(?=\S)(.+?)(?<=\S)__(?!\w)")
_ITALIC_STAR = re.compile(r"(?<![\w*])\*(?=[^\s*])(.+?)(?<=[^\s*])\*(?![\w*])")
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")

# Stand-ins while a line is rewritten (private-use characters no model writes).
_BOLD_MARK = "\ue000"
_TOKEN = re.compile("\ue001(\\d+)\ue001")
_RULE_TEXT = "\u2500" * 12


def mrkdwn_escape(text: str) -> str:
    """Escape Slack's three control characters (`&`, `<`, `>`)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def markdown_to_mrkdwn(markdown: str) -> str:
    """`markdown` as Slack mrkdwn (see the module docstring for what changes)."""
    lines: list[str] = []
    fence: str | None = None  # the run that closes the open code block
    for line in markdown.splitlines():
        opened = _FENCE.match(line)
        if fence is None and opened is not None:
            fence = opened.group(1)
            # Slack has no syntax highlighting: a language tag would show as the first line.
            lines.append("```")
        elif fence is not None:
            closing = opened is not None and opened.group(1)[0] == fence[0] and len(opened.group(1)) >= len(fence)
            if closing and opened is not None and not opened.group(2).strip():
                fence = None
                lines.append("```")
            else:
                # Slack's blocks are always ```: a ``` line inside a ~~~ block would end it early.
                lines.append(mrkdwn_escape(line).replace("```", "`\u200b``"))
        else:
            lines.append(_convert_line(line))
    if fence is not None:  # an unclosed block runs to the end: close it so Slack renders it
        lines.append("```")
    return "\n".join(lines)


def _convert_line(line: str) -> str:
    if _RULE.match(line):
        return _RULE_TEXT
    if heading := _HEADING.match(line):
        # The whole heading turns bold; bold inside it would end that early.
        title = _convert_inline(re.sub(r"\*\*|__", "", heading.group(1))).strip()
        return f"*{title}*" if title else ""
    if quote := _QUOTE.match(line):
        marks = quote.group(1).replace(" ", "").replace("\t", "")
        return f"{' '.join(marks)} {_convert_line(quote.group(2))}".rstrip()
    if bullet := _BULLET.match(line):
        indent, box, rest = bullet.groups()
        mark = "" if box is None else ("\u2610 " if box == " " else "\u2611 ")
        return f"{indent}\u2022 {mark}{_convert_inline(rest)}"
    return _convert_inline(line)


def _convert_inline(text: str) -> str:
    """One line outside code blocks: code spans untouched, the rest converted."""
    parts: list[str] = []
    position = 0
    for span in _CODE_SPAN.finditer(text):
        parts.append(_convert_prose(text[position : span.start()]))
        parts.append(mrkdwn_escape(span.group(0)))
        position = span.end()
    parts.append(_convert_prose(text[position:]))
    return "".join(parts)


def _convert_prose(text: str) -> str:
    if not text:
        return text
    kept: list[str] = []

    def keep(rendered: str) -> str:
        kept.append(rendered)
        return f"\ue001{len(kept) - 1}\ue001"

    text = _SLACK_MENTION.sub(lambda m: keep(m.group(0)), text)
    text = _AUTOLINK.sub(lambda m: keep(f"<{m.group(1)}>"), text)
    text = _LINK.sub(lambda m: keep(_link(m.group(2), m.group(1))), text)
    text = mrkdwn_escape(text)
    text = _BOLD_ITALIC.sub(lambda m: f"{_BOLD_MARK}_{m.group(1)}_{_BOLD_MARK}", text)
    text = _BOLD.sub(lambda m: f"{_BOLD_MARK}{m.group(1) or m.group(2)}{_BOLD_MARK}", text)
    text = _ITALIC_STAR.sub(lambda m: f"_{m.group(1)}_", text)
    text = _STRIKE.sub(lambda m: f"~{m.group(1)}~", text)
    text = text.replace(_BOLD_MARK, "*")
    return _restore(text, kept.__getitem__)


def _link(url: str, label: str) -> str:
    label = re.sub(r"[*_~`]", "", label).strip()  # Slack shows link labels as plain text
    if not label or label == url:
        return f"<{url}>"
    return f"<{url}|{mrkdwn_escape(label).replace('|', '¦')}>"


def _restore(text: str, token: Callable[[int], str]) -> str:
    return _TOKEN.sub(lambda m: token(int(m.group(1))), text)
