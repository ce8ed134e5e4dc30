"""HTML built in Python with escaping by construction: the console's templating.

Every stored text the console shows (block values, messages, agent names, audit details) came
from a platform user, an admin or the model, and is untrusted. Here a plain `str` is always
escaped where it lands; only `Html`, which these functions make, passes through as markup. So a
page cannot carry a stored text as markup unless code wraps it in `Html` on purpose, and nothing
does (`tests/console/test_console_escaping.py` feeds it `<script>` and attribute breakouts).

    el("a", "<b>", href="/x?a=1&b=2", class_="nav")  ->  <a href="/x?a=1&amp;b=2" class="nav">&lt;b&gt;</a>
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from typing import Final

__all__ = ["Child", "Html", "el", "esc", "join", "void"]


class Html(str):
    """Markup that is safe to emit as it is (made by this module, never from stored text)."""

    __slots__ = ()


#: What an element may hold: markup, text (escaped), numbers, nothing (None/False), or a list of them.
type Child = Html | str | int | float | bool | Iterable[Child] | None

_VOID: Final = frozenset({"br", "hr", "img", "input", "link", "meta", "rect", "line", "circle", "path"})


def esc(text: object) -> Html:
    """`text` as HTML text or attribute value: & < > " ' escaped."""
    return Html(html.escape(str(text), quote=True))


def join(children: Iterable[Child]) -> Html:
    return Html("".join(_render(child) for child in children))


def _render(child: Child) -> str:
    if isinstance(child, Html):
        return child
    if child is None or child is False or child is True:
        return ""
    if isinstance(child, str):
        return esc(child)
    if isinstance(child, int | float):
        return esc(child)
    return "".join(_render(c) for c in child)


def _attributes(attrs: dict[str, object]) -> str:
    """`class_` -> class, `aria_label` -> aria-label; True: the bare name; None/False: left out."""
    parts = []
    for key, value in attrs.items():
        name = key.rstrip("_").replace("_", "-")
        if value is None or value is False:
            continue
        parts.append(f" {name}" if value is True else f' {name}="{esc(value)}"')
    return "".join(parts)


def el(tag: str, *children: Child, **attrs: object) -> Html:
    """One element; its text children are escaped, its attribute values too."""
    opening = f"<{tag}{_attributes(attrs)}"
    if tag in _VOID and not children:
        return Html(opening + (" />" if tag in {"rect", "line", "circle", "path"} else ">"))
    return Html(f"{opening}>{join(children)}</{tag}>")


def void(tag: str, **attrs: object) -> Html:
    """An element without content (`<input>`, `<meta>`)."""
    return el(tag, **attrs)
