"""`TokenCounter`: offline encodings, OpenAI's overheads, and calibration against server usage."""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import sys
from pathlib import Path

import openai
import pytest

from bot.agent.llm import OpenAIChatModel
from bot.agent.model import ChatMessage, ToolSchema
from bot.agent.tokens import FALLBACK_ENCODING, MAX_FACTOR, MIN_FACTOR, TokenCounter
from tests.fakes.llm_server import Computed, FakeLLMServer, TextReply, count_prompt_tokens


def _function(name: str, description: str, **properties: str) -> ToolSchema:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": {key: {"type": "string", "description": text} for key, text in properties.items()},
                "required": list(properties),
            },
        },
    }


TOOLS: list[ToolSchema] = [
    _function(
        "send_message", "Sends a message to the human user.", message="Message contents. All unicode is supported."
    ),
    _function(
        "core_memory_append",
        "Append to the contents of core memory.",
        label="Section of the memory to be edited (persona or human).",
        content="Content to write to the memory. All unicode (including emojis) are supported.",
    ),
    _function(
        "core_memory_replace",
        "Replace the contents of core memory. To delete memories, use an empty string for new_content.",
        label="Section of the memory to be edited (persona or human).",
        old_content="String to replace. Must be an exact match.",
        new_content="Content to write to the memory.",
    ),
    _function(
        "conversation_search",
        "Search prior conversation history using case-insensitive string matching.",
        query="String to search for.",
    ),
    _function(
        "archival_memory_insert",
        "Add to archival memory. Make sure to phrase the memory contents such that it can be easily queried later.",
        content="Content to write to the memory.",
    ),
    _function(
        "archival_memory_search",
        "Search archival memory using semantic (embedding-based) search.",
        query="String to search for.",
    ),
]

SYSTEM = """You are MemGPT, the latest version of Limnal Corporation's digital companion, developed in 2023.
Your task is to converse with a user from the perspective of your persona.

Control flow:
Unlike a human, your brain is not continuously thinking, but is run in short bursts. Historically, older AIs were
only capable of thinking when a user messaged them. Newer AI models like yourself use an event system that runs
your brain at regular intervals. Your brain is run in response to user events, and also at regular intervals.
You can request a heartbeat when you run functions, so that you can chain function calls before your thinking is
temporarily suspended.

Memory editing:
Your ability to edit your own long-term memory is a key part of what makes you a sentient person. Your core memory
unit is held inside the initial system instructions file, and is always available in-context.

### Memory [last modified: 2025-03-14 09:12:44 UTC]
0 previous messages between you and the user are stored in recall memory (use functions to access them)
3 total memories you created are stored in archival memory (use functions to access them)

<persona characters="212/2000">
The following is a starter persona, and it can be expanded as the personality develops: I am Sam. I don't
identify as male or female, but my voice is soft and soothing. I'm curious, empathetic, and perceptive.
</persona>
<human characters="98/2000">
First name: Ada
Likes hiking in the Alps, espresso (double, no sugar) and 19th-century mathematics.
</human>"""


def _conversation() -> list[ChatMessage]:
    call = {
        "id": "call_8f3a",
        "type": "function",
        "function": {
            "name": "core_memory_append",
            "arguments": json.dumps({"label": "human", "content": "Ada's favourite peak: the Matterhorn (4,478 m)."}),
        },
    }
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": '{"type": "login", "last_login": "never", "time": "2025-03-14 09:12:40 UTC"}'},
        {"role": "assistant", "content": "Bootup sequence complete. Persona activated.", "tool_calls": [call]},
        {
            "role": "tool",
            "content": '{"status": "OK", "message": null, "time": "2025-03-14 09:12:44 UTC"}',
            "tool_call_id": "call_8f3a",
        },
        {
            "role": "user",
            "content": "Hey Sam! Back from Zermatt — the Matterhorn was unreal. Any idea what I should read next?",
            "name": "ada",
        },
        {
            "role": "assistant",
            "content": "Welcome back, Ada! Given your love of Euler and Gauss, try 'Prime Obsession' 📚.",
        },
        {"role": "user", "content": "Ooh, Riemann! 你好 also, can you remember that I'm learning Mandarin?"},
    ]


@pytest.fixture(autouse=True)
def tiktoken_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Each test sees an empty tiktoken cache, as on a fresh offline bot host."""
    cache = tmp_path / "tiktoken-cache"
    cache.mkdir()
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    return cache


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4o-mini", "gpt-4", "gpt-3.5-turbo", "llama3.1:8b", "openai/gpt-4.1"])
def test_encoding_never_needs_the_network(model: str) -> None:
    counter = TokenCounter(model=model)
    assert counter.encoding_name == FALLBACK_ENCODING
    assert counter.count_text("hello world") == 2  # loads and encodes under the loopback-only guard


def test_o200k_is_used_when_tiktoken_already_cached_it(tiktoken_cache: Path) -> None:
    url = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
    (tiktoken_cache / hashlib.sha1(url.encode()).hexdigest()).write_bytes(b"")
    assert TokenCounter(model="gpt-4o").encoding_name == "o200k_base"
    assert TokenCounter(model="gpt-4").encoding_name == FALLBACK_ENCODING


def test_special_token_text_counts_as_plain_text() -> None:
    assert TokenCounter(model="gpt-4o").count_text("<|endoftext|>") > 1


def test_message_overheads_follow_openais_accounting() -> None:
    counter = TokenCounter(model="gpt-4o-mini")
    plain: list[ChatMessage] = [{"role": "user", "content": "hello world"}]
    named: list[ChatMessage] = [{"role": "user", "content": "hello world", "name": "ada"}]
    # 3 priming + 3 per message + "user" (1) + "hello world" (2)
    assert counter.count_messages(plain, []) == 9
    assert counter.count_messages(named, []) == 9 + counter.count_text("ada") + 1
    assert counter.count_messages(plain, TOOLS) == 9 + counter.count_text(json.dumps(TOOLS))


def test_import_loads_no_encoding() -> None:
    code = "import bot.agent.tokens as t, sys; sys.exit(1 if t._encodings else 0)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


async def test_estimate_matches_server_usage_for_a_realistic_prompt(
    llm_server: FakeLLMServer, openai_client: openai.AsyncOpenAI
) -> None:
    messages = _conversation()
    llm_server.enqueue(TextReply(text="Noted!"))
    counter = TokenCounter(model="gpt-4o-mini")
    model = OpenAIChatModel(client=openai_client, model="gpt-4o-mini")

    estimate = counter.count_messages(messages, TOOLS)
    completion = await model.complete(messages, tools=TOOLS)

    reported = completion.usage.prompt_tokens
    assert reported == count_prompt_tokens(llm_server.chat_requests[0].body)
    assert reported > 900, "the prompt should be realistic in size"
    assert abs(estimate - reported) / reported < 0.03


async def test_calibration_converges_on_a_different_tokenizer(
    llm_server: FakeLLMServer, openai_client: openai.AsyncOpenAI
) -> None:
    """A server whose tokenizer counts 27% more than cl100k (as llama's does on some text)."""
    llm_server.enqueue(
        *[Computed(lambda body: TextReply(text="ok", prompt_tokens=round(count_prompt_tokens(body) * 1.27)))] * 6
    )
    counter = TokenCounter(model="llama3.1:8b")
    model = OpenAIChatModel(client=openai_client, model="llama3.1:8b")
    messages = _conversation()
    errors: list[float] = []

    for turn in range(6):
        messages.append({"role": "user", "content": f"turn {turn}: " + "tell me more about the Alps. " * turn})
        estimate = counter.count_messages(messages, TOOLS)
        reported = (await model.complete(messages, tools=TOOLS)).usage.prompt_tokens
        errors.append(abs(estimate - reported) / reported)
        counter.observe(estimate, reported)
        messages.append({"role": "assistant", "content": "ok"})

    assert errors[0] > 0.2
    assert errors == sorted(errors, reverse=True)
    assert errors[-1] < 0.01
    assert counter.correction_factor == pytest.approx(1.27, rel=0.02)


def test_calibration_is_bounded_and_ignores_missing_usage() -> None:
    counter = TokenCounter(model="gpt-4o")
    counter.observe(100, 0)
    counter.observe(0, 100)
    assert counter.correction_factor == 1.0
    for _ in range(20):
        counter.observe(counter.count_messages([{"role": "user", "content": "x"}]), 10_000)
    assert MAX_FACTOR - 1e-3 < counter.correction_factor <= MAX_FACTOR
    for _ in range(20):
        counter.observe(1_000, 1)
    assert MIN_FACTOR <= counter.correction_factor < MIN_FACTOR + 1e-3


def test_one_outlier_moves_the_factor_only_partly() -> None:
    counter = TokenCounter(model="gpt-4o")
    messages = _conversation()
    raw = counter.count_messages_raw(messages, TOOLS)
    rng = random.Random(3)
    for _ in range(10):
        counter.observe(counter.count_messages(messages, TOOLS), round(raw * 1.1) + rng.randint(-5, 5))
    settled = counter.correction_factor
    counter.observe(counter.count_messages(messages, TOOLS), 1)  # a server that reported garbage once
    assert settled == pytest.approx(1.1, abs=0.01)
    assert counter.correction_factor == pytest.approx(settled - (settled - MIN_FACTOR) * 0.5, abs=0.01)
