"""Context windows of well-known hosted models: the fallback when neither the settings nor the
endpoint say how many tokens a model takes (`bot.agent.model_info` asks the endpoint)."""

from __future__ import annotations

__all__ = ["DEFAULT_CONTEXT_WINDOW", "context_window_for"]

DEFAULT_CONTEXT_WINDOW = 128_000

# Hosted providers whose /models list carries no window (OpenAI, Anthropic's and Google's
# OpenAI-compatible endpoints). Longest prefix wins; a provider prefix such as "openai/" is
# ignored. Local servers (vLLM, LM Studio, llama.cpp) report their own window instead.
_KNOWN_CONTEXT_WINDOWS: tuple[tuple[str, int], ...] = (
    ("gpt-3.5-turbo", 16_385),
    ("gpt-4", 8_192),
    ("gpt-4-32k", 32_768),
    ("gpt-4-turbo", 128_000),
    ("gpt-4o", 128_000),
    ("gpt-4.1", 1_047_576),
    ("gpt-5", 400_000),
    ("o1", 200_000),
    ("o1-mini", 128_000),
    ("o3", 200_000),
    ("o4-mini", 200_000),
    ("claude-", 200_000),
    ("gemini-2", 1_048_576),
)


def context_window_for(model: str) -> int | None:
    """The context window of a well-known hosted model; None for any other."""
    name = model.rsplit("/", 1)[-1].lower()
    matches = [(len(prefix), window) for prefix, window in _KNOWN_CONTEXT_WINDOWS if name.startswith(prefix)]
    return max(matches)[1] if matches else None
