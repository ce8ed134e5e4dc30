"""`AgentOptions` with the shipped prompts: one place that knows how the composition root,
the benches and the test harnesses turn a context window into a turn's options."""

from __future__ import annotations

from typing import Any

from bot.agent.context import ContextWindow
from bot.agent.loop import AgentOptions
from bot.agent.templates import load_prompt

__all__ = ["shipped_options", "summary_word_limit"]


def summary_word_limit(context_window: int) -> int:
    """Words the recursive summary may use: ~1/40 of the window, between 100 and 600."""
    return max(100, min(600, context_window // 40))


def shipped_options(
    *,
    context_window: int,
    max_output_tokens: int,
    warning_fraction: float = 0.75,
    summary_words: int | None = None,
    **overrides: Any,
) -> AgentOptions:
    """Options with the shipped system and summary prompts; `overrides` are AgentOptions fields."""
    words = summary_words if summary_words is not None else summary_word_limit(context_window)
    return AgentOptions(
        window=ContextWindow(
            context_window=context_window, max_output_tokens=max_output_tokens, warning_fraction=warning_fraction
        ),
        instructions=load_prompt("system"),
        summarize_instructions=load_prompt("summarize").format(word_limit=words),
        **overrides,
    )
