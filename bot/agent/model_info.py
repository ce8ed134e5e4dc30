"""How many tokens the configured model takes: the setting, a known hosted model's window, what
the endpoint's `GET /models` reports, or a default, in that order.

Local servers choose the window they load a model with (vLLM's `--max-model-len`, LM Studio's
and llama.cpp's context length) and several say so in their model list, under names of their
own; hosted providers whose list says nothing are in `bot.config.models`. The request uses the
standard library in a thread, not the openai SDK, so it costs start-up a few milliseconds on a
local server and nothing for a known model.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from bot.config import LLMSettings
from bot.config.models import DEFAULT_CONTEXT_WINDOW

__all__ = ["ContextWindowChoice", "reported_context_window", "resolve_context_window"]

_log = logging.getLogger(__name__)

#: Keys servers use for the window a model runs with: vLLM `max_model_len`; OpenRouter, Together,
#: DeepSeek-style lists `context_length`; Groq `context_window`; LM Studio and Mistral
#: `max_context_length`. (llama.cpp's `meta.n_ctx_train` is the training length, not what the
#: server runs with, so it is not used.)
_WINDOW_KEYS = ("max_model_len", "context_length", "context_window", "max_context_length")
#: Largest window believed: a server reporting more is misreporting (settings cap at the same).
_MAX_WINDOW = 10_000_000
_MAX_BODY = 4_000_000

WindowSource = Literal["setting", "known model", "endpoint", "default"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ContextWindowChoice:
    tokens: int
    source: WindowSource


async def resolve_context_window(llm: LLMSettings, *, timeout_s: float = 2.0) -> ContextWindowChoice:
    """The window to budget the prompt against (never raises: an unreachable endpoint means the default)."""
    if llm.context_window is not None:
        return ContextWindowChoice(tokens=llm.context_window, source="setting")
    if llm.known_context_window is not None:
        return ContextWindowChoice(tokens=llm.known_context_window, source="known model")
    key = llm.api_key.get_secret_value() if llm.api_key is not None else None
    reported = await reported_context_window(llm.base_url, key, llm.model, timeout_s=timeout_s)
    if reported is not None and reported > llm.max_output_tokens:
        _log.info("%s: the endpoint reports a context window of %d tokens", llm.model, reported)
        return ContextWindowChoice(tokens=reported, source="endpoint")
    return ContextWindowChoice(tokens=DEFAULT_CONTEXT_WINDOW, source="default")


async def reported_context_window(base_url: str, api_key: str | None, model: str, *, timeout_s: float) -> int | None:
    """The window `GET {base_url}/models` reports for `model`, or None (no such field, an error)."""
    try:
        listing = await asyncio.to_thread(_get_json, f"{base_url}/models", api_key, timeout_s)
    except (OSError, ValueError) as exc:  # URLError and HTTPError are OSErrors; bad JSON is a ValueError
        _log.debug("%s: GET /models gave no context window (%s)", model, exc)
        return None
    return window_in_listing(listing, model)


def window_in_listing(listing: object, model: str) -> int | None:
    """The window of `model` in an OpenAI-style model list (`{"data": [{"id": ..., ...}]}`)."""
    entries = listing.get("data") if isinstance(listing, Mapping) else None
    if not isinstance(entries, list):
        return None
    for entry in entries:
        if isinstance(entry, Mapping) and entry.get("id") == model:
            return _window_of(entry)
    return None


def _window_of(entry: Mapping[str, Any]) -> int | None:
    for key in _WINDOW_KEYS:
        value = entry.get(key)
        # bool is an int: a stray `true` is not a window.
        if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= _MAX_WINDOW:
            return value
    return None


def _get_json(url: str, api_key: str | None, timeout_s: float) -> object:
    if not url.startswith(("http://", "https://")):
        raise ValueError("not an http(s) URL")
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return json.loads(response.read(_MAX_BODY))
