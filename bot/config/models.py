"""Context windows of well-known hosted models: the fallback when an endpoint does not report one."""

from __future__ import annotations

__all__ = ["DEFAULT_CONTEXT_WINDOW", "context_window_for"]

DEFAULT_CONTEXT_WINDOW = 128_000

# Longest prefix wins; a provider prefix such as "openai/" is ignored. Local servers
# (Ollama, LM Studio, vLLM) choose their own window, so their models are not listed.
_KNOWN_CONTEXT_WINDOWS: tuple[tuple[str, int], ...] = (
    ("gpt-3.5-turbo", 16_385),
    ("gpt-4", 8_192),
    ("gpt-4-32k", 32_768),
    ("gpt-4-turbo", 128_000),
    ("gpt-4o", 128_000),
    ("gpt-4.1", 1_047_576),
    ("gpt-4.5", 128_000),
    ("gpt-5", 400_000),
    ("o1", 200_000),
    ("o1-mini", 128_000),
    ("o1-preview", 128_000),
    ("o3", 200_000),
    ("o4-mini", 200_000),
    ("claude-", 200_000),
    ("gemini-1.5-flash", 1_048_576),
    ("gemini-1.5-pro", 2_097_152),
    ("gemini-2", 1_048_576),
)


def context_window_for(model: str) -> int:
    """The context window of a well-known hosted model, else `DEFAULT_CONTEXT_WINDOW`."""
    name = model.rsplit("/", 1)[-1].lower()
    matches = [(len(prefix), window) for prefix, window in _KNOWN_CONTEXT_WINDOWS if name.startswith(prefix)]
    return max(matches)[1] if matches else DEFAULT_CONTEXT_WINDOW
