"""An operator's templates folder for tests: real `.txt` files the real `Templates` reads."""

from __future__ import annotations

from pathlib import Path

from bot.agent.templates import Templates

__all__ = ["make_templates"]


def make_templates(root: Path, *, block_limit: int = 2000) -> Templates:
    """`root/personas/{sam,assistant,pirate}.txt` and `root/humans/basic.txt`, each text naming
    its kind and name ("persona template sam"), so a test sees which one an agent started from."""
    for kind, names in (("persona", ("sam", "assistant", "pirate")), ("human", ("basic",))):
        folder = root / f"{kind}s"
        folder.mkdir(parents=True, exist_ok=True)
        for name in names:
            (folder / f"{name}.txt").write_text(f"{kind} template {name}")
    return Templates(root=root, block_limit=block_limit)
