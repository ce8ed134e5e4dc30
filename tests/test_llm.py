"""`OpenAIChatModel` against the scripted server, through the real `openai` SDK."""

from __future__ import annotations

import logging
import random
import socket

import httpx2
import openai
import pytest

from bot.agent.llm import OpenAIChatModel, make_openai_client
from bot.agent.model import ChatMessage, ToolCall, ToolSchema
from bot.errors import ContextOverflowError, LLMResponseError, LLMUnavailableError
from tests.fakes.llm_fixtures import SleepRecorder
from tests.fakes.llm_server import (
    CONTEXT_LENGTH_WORDINGS,
    Computed,
    Delayed,
    FakeLLMServer,
    RawReply,
    TextReply,
    ToolCallReply,
    context_length_error,
    count_prompt_tokens,
    http_error,
    rate_limit_error,
    tool_call,
)

TOOLS: list[ToolSchema] = [
    {
        "type": "function",
        "function": {
            "name": "send_message",
            "description": "Send a message to the user.",
            "parameters": {"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "core_memory_append",
            "description": "Append to a core memory block.",
            "parameters": {
                "type": "object",
                "properties": {"label": {"type": "string"}, "content": {"type": "string"}},
                "required": ["label", "content"],
            },
        },
    },
]
MESSAGES: list[ChatMessage] = [
    {"role": "system", "content": "You are Sam, a helpful companion with memory."},
    {"role": "user", "content": "Hi, I'm Ada. I love hiking.", "name": "ada"},
]


@pytest.fixture
def model(openai_client: openai.AsyncOpenAI, sleeps: SleepRecorder) -> OpenAIChatModel:
    return OpenAIChatModel(client=openai_client, model="gpt-4o-mini", sleep=sleeps, rng=random.Random(7))


async def test_tool_calls_are_parsed_with_raw_arguments(llm_server: FakeLLMServer, model: OpenAIChatModel) -> None:
    llm_server.enqueue(
        ToolCallReply(
            calls=(
                tool_call("core_memory_append", {"label": "human", "content": "Ada loves hiking."}, id="call_a"),
                tool_call("send_message", {"message": "Nice to meet you, Ada!"}, id="call_b"),
            )
        )
    )

    completion = await model.complete(MESSAGES, tools=TOOLS)

    assert completion.tool_calls == (
        ToolCall(
            id="call_a", name="core_memory_append", arguments='{"label": "human", "content": "Ada loves hiking."}'
        ),
        ToolCall(id="call_b", name="send_message", arguments='{"message": "Nice to meet you, Ada!"}'),
    )
    assert completion.content is None
    assert completion.finish_reason == "tool_calls"
    assert completion.model == "gpt-4o-mini"
    [sent] = llm_server.chat_requests
    assert sent.body["messages"] == MESSAGES
    assert sent.body["tools"] == TOOLS
    assert "stream" not in sent.body
    assert sent.headers["Authorization"] == "Bearer test-key"
    assert completion.usage.prompt_tokens == count_prompt_tokens(sent.body)
    assert completion.usage.completion_tokens > 0


async def test_plain_reply_without_tools_sends_no_tools_key(llm_server: FakeLLMServer, model: OpenAIChatModel) -> None:
    llm_server.enqueue(TextReply(text="Hello Ada."))

    completion = await model.complete(MESSAGES, tools=[])

    assert completion.content == "Hello Ada."
    assert completion.tool_calls == ()
    assert completion.finish_reason == "stop"
    assert "tools" not in llm_server.chat_requests[0].body


async def test_streaming_assembles_split_tool_call_deltas(
    llm_server: FakeLLMServer, openai_client: openai.AsyncOpenAI, sleeps: SleepRecorder
) -> None:
    llm_server.stream_piece_chars = 3  # every argument string arrives in many deltas
    calls = (
        tool_call("core_memory_append", {"label": "human", "content": "Ada loves hiking."}, id="call_a"),
        tool_call("send_message", '{"message": "Hi Ada', id="call_b"),  # malformed: unterminated
    )
    llm_server.enqueue(
        ToolCallReply(calls=calls, content="Noting that."), TextReply(text="Streaming plain text works.")
    )
    streaming = OpenAIChatModel(client=openai_client, model="gpt-4o-mini", stream=True, sleep=sleeps)

    completion = await streaming.complete(MESSAGES, tools=TOOLS)
    plain = await streaming.complete(MESSAGES, tools=TOOLS)

    assert completion.content == "Noting that."
    assert completion.tool_calls == (
        ToolCall(
            id="call_a", name="core_memory_append", arguments='{"label": "human", "content": "Ada loves hiking."}'
        ),
        ToolCall(id="call_b", name="send_message", arguments='{"message": "Hi Ada'),
    )
    assert completion.finish_reason == "tool_calls"
    assert plain.content == "Streaming plain text works."
    assert plain.tool_calls == ()
    sent = llm_server.chat_requests[0].body
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}
    assert completion.usage.prompt_tokens == count_prompt_tokens(sent)
    assert completion.usage.completion_tokens > 0


async def test_malformed_tool_call_json_passes_through_raw(llm_server: FakeLLMServer, model: OpenAIChatModel) -> None:
    llm_server.enqueue(ToolCallReply(calls=(tool_call("send_message", "{'message': 'single quotes',}", id="c1"),)))

    completion = await model.complete(MESSAGES, tools=TOOLS)

    assert completion.tool_calls == (ToolCall(id="c1", name="send_message", arguments="{'message': 'single quotes',}"),)


async def test_rate_limit_honours_retry_after_headers(
    llm_server: FakeLLMServer, model: OpenAIChatModel, sleeps: SleepRecorder
) -> None:
    llm_server.enqueue(
        rate_limit_error(retry_after="2"),
        rate_limit_error(retry_after_ms="250", retry_after="9"),  # the precise header wins
        TextReply(text="finally"),
    )

    completion = await model.complete(MESSAGES, tools=TOOLS)

    assert completion.content == "finally"
    assert sleeps.delays == [2.0, 0.25]
    assert len(llm_server.chat_requests) == 3


async def test_retry_after_is_capped(
    llm_server: FakeLLMServer, openai_client: openai.AsyncOpenAI, sleeps: SleepRecorder
) -> None:
    llm_server.enqueue(rate_limit_error(retry_after="3600"), TextReply(text="ok"))
    capped = OpenAIChatModel(client=openai_client, model="gpt-4o-mini", max_retry_after=30.0, sleep=sleeps)

    await capped.complete(MESSAGES, tools=TOOLS)

    assert sleeps.delays == [30.0]


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
async def test_transient_statuses_are_retried_with_jittered_backoff(
    llm_server: FakeLLMServer, model: OpenAIChatModel, sleeps: SleepRecorder, status: int
) -> None:
    llm_server.enqueue(http_error(status), http_error(status), TextReply(text="recovered"))

    completion = await model.complete(MESSAGES, tools=TOOLS)

    assert completion.content == "recovered"
    jitter = random.Random(7)
    assert sleeps.delays == [jitter.random() * 0.5, jitter.random() * 1.0]  # full jitter over 0.5 * 2**attempt


async def test_timeout_then_success(
    llm_server: FakeLLMServer, openai_client: openai.AsyncOpenAI, sleeps: SleepRecorder
) -> None:
    llm_server.enqueue(Delayed(seconds=30, then=TextReply(text="too late")), TextReply(text="on time"))
    impatient = OpenAIChatModel(client=openai_client, model="gpt-4o-mini", timeout=0.5, sleep=sleeps)

    completion = await impatient.complete(MESSAGES, tools=TOOLS)

    assert completion.content == "on time"
    assert len(sleeps.delays) == 1
    assert len(llm_server.chat_requests) == 2


async def test_retries_exhausted_raise_llm_unavailable(
    llm_server: FakeLLMServer, openai_client: openai.AsyncOpenAI, sleeps: SleepRecorder
) -> None:
    llm_server.enqueue(http_error(503), http_error(503), http_error(503))
    model = OpenAIChatModel(client=openai_client, model="gpt-4o-mini", max_retries=2, sleep=sleeps)

    with pytest.raises(LLMUnavailableError) as caught:
        await model.complete(MESSAGES, tools=TOOLS)

    assert str(caught.value) == "chat completion (gpt-4o-mini) failed after 3 attempt(s): HTTP 503"
    assert len(sleeps.delays) == 2


async def test_connection_refused_is_retried_then_unavailable(sleeps: SleepRecorder) -> None:
    with socket.socket() as probe:  # a port nobody listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = make_openai_client(f"http://127.0.0.1:{port}/v1", "", 2.0)
    try:
        model = OpenAIChatModel(client=client, model="m", max_retries=1, sleep=sleeps)
        with pytest.raises(LLMUnavailableError, match=r"after 2 attempt.*connection error"):
            await model.complete(MESSAGES, tools=TOOLS)
    finally:
        await client.close()
    assert len(sleeps.delays) == 1


@pytest.mark.parametrize("wording", sorted(CONTEXT_LENGTH_WORDINGS))
async def test_context_length_errors_raise_context_overflow(
    llm_server: FakeLLMServer, model: OpenAIChatModel, sleeps: SleepRecorder, wording: str
) -> None:
    llm_server.enqueue(context_length_error(wording))

    with pytest.raises(ContextOverflowError, match="prompt exceeds the context window"):
        await model.complete(MESSAGES, tools=TOOLS)

    assert sleeps.delays == []  # never retried
    assert len(llm_server.chat_requests) == 1


async def test_token_rate_limit_is_not_mistaken_for_overflow(
    llm_server: FakeLLMServer, model: OpenAIChatModel, sleeps: SleepRecorder
) -> None:
    body = {"error": {"message": "Too many tokens, please wait before trying again.", "type": "tokens"}}
    llm_server.enqueue(http_error(429, body=body, headers={"Retry-After": "1"}), TextReply(text="ok"))

    assert (await model.complete(MESSAGES, tools=TOOLS)).content == "ok"
    assert sleeps.delays == [1.0]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_other_client_errors_raise_response_error_without_retry(
    llm_server: FakeLLMServer, model: OpenAIChatModel, sleeps: SleepRecorder, status: int
) -> None:
    llm_server.enqueue(http_error(status))

    with pytest.raises(LLMResponseError, match=rf"\(HTTP {status}\): fake LLM server: scripted HTTP {status}$"):
        await model.complete(MESSAGES, tools=TOOLS)

    assert sleeps.delays == []


async def test_no_choices_raise_response_error(llm_server: FakeLLMServer, model: OpenAIChatModel) -> None:
    llm_server.enqueue(RawReply(status=200, body={"id": "x", "object": "chat.completion", "model": "m", "choices": []}))

    with pytest.raises(LLMResponseError, match="no choices"):
        await model.complete(MESSAGES, tools=TOOLS)


async def test_missing_usage_reads_as_zero(llm_server: FakeLLMServer, model: OpenAIChatModel) -> None:
    message = {"role": "assistant", "content": "hi"}
    body = {"id": "x", "object": "chat.completion", "created": 0, "model": "local-llama"}
    llm_server.enqueue(
        RawReply(status=200, body=body | {"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]})
    )

    completion = await model.complete(MESSAGES, tools=TOOLS)

    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (0, 0)
    assert completion.model == "local-llama"


async def test_server_rejects_unanswered_tool_calls_like_openai(
    llm_server: FakeLLMServer, model: OpenAIChatModel
) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "send_message", "arguments": "{}"}}
    broken: list[ChatMessage] = [*MESSAGES, {"role": "assistant", "content": None, "tool_calls": [call]}]

    with pytest.raises(
        LLMResponseError, match=r"\(HTTP 400\): An assistant message with 'tool_calls' must be followed"
    ):
        await model.complete(broken, tools=TOOLS)
    assert llm_server.pending_steps == 0


async def test_computed_step_answers_from_the_request(llm_server: FakeLLMServer, model: OpenAIChatModel) -> None:
    llm_server.enqueue(Computed(lambda request: TextReply(text=f"you sent {len(request['messages'])} messages")))

    assert (await model.complete(MESSAGES, tools=TOOLS)).content == "you sent 2 messages"


async def test_logs_never_carry_message_content(
    llm_server: FakeLLMServer, model: OpenAIChatModel, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "my bank PIN is 4921"
    llm_server.enqueue(http_error(500), ToolCallReply(calls=(tool_call("send_message", {"message": secret}),)))
    caplog.set_level(logging.DEBUG, logger="bot")

    await model.complete([{"role": "user", "content": secret}], tools=TOOLS)

    assert caplog.records, "expected retry/debug records"
    assert "4921" not in caplog.text


async def test_output_cap_uses_max_tokens_for_local_servers(
    llm_server: FakeLLMServer, openai_client: openai.AsyncOpenAI
) -> None:
    llm_server.enqueue(TextReply(text="ok"))
    model = OpenAIChatModel(client=openai_client, model="llama3.1:8b", max_output_tokens=512)

    await model.complete(MESSAGES, tools=TOOLS)

    body = llm_server.chat_requests[0].body
    assert (body["max_tokens"], "max_completion_tokens" in body) == (512, False)


async def test_output_cap_uses_max_completion_tokens_for_openai(llm_server: FakeLLMServer) -> None:
    """api.openai.com is reached through the fake acting as a plain HTTP proxy: no network."""
    http = httpx2.AsyncClient(proxy=llm_server.base_url.removesuffix("/v1"))
    client = openai.AsyncOpenAI(base_url="http://api.openai.com/v1", api_key="k", max_retries=0, http_client=http)
    llm_server.enqueue(TextReply(text="ok"))
    try:
        await OpenAIChatModel(client=client, model="gpt-5", max_output_tokens=512).complete(MESSAGES, tools=TOOLS)
    finally:
        await client.close()
        await http.aclose()

    body = llm_server.chat_requests[0].body
    assert (body["max_completion_tokens"], "max_tokens" in body) == (512, False)


async def test_probe_lists_models_or_fails_fast(llm_server: FakeLLMServer, sleeps: SleepRecorder) -> None:
    root = llm_server.base_url.removesuffix("/v1")
    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        dead_port = probe_socket.getsockname()[1]
    clients = [make_openai_client(url, "k", 2.0) for url in (llm_server.base_url, f"{root}/no-models/v1")]
    clients.append(make_openai_client(f"http://127.0.0.1:{dead_port}/v1", "k", 2.0))
    try:
        listed, missing, dead = (OpenAIChatModel(client=c, model="m", sleep=sleeps) for c in clients)
        assert await listed.probe() == ["gpt-4o-mini", "text-embedding-3-small"]
        assert await missing.probe() is None  # a server without /models is not an error
        with pytest.raises(LLMUnavailableError, match=r"no answer from the endpoint \(connection error\)"):
            await dead.probe()
    finally:
        for client in clients:
            await client.close()
    assert sleeps.delays == []  # probing never retries


def test_make_openai_client_turns_sdk_retries_off() -> None:
    client = make_openai_client("http://127.0.0.1:9/v1", "k", 12.5, {"X-Agent": "membot"})
    assert client.max_retries == 0
    assert client.timeout == 12.5
    assert client.default_headers["X-Agent"] == "membot"
    assert str(client.base_url) == "http://127.0.0.1:9/v1/"


async def test_fake_server_reports_unused_steps_and_exhausted_script(sleeps: SleepRecorder) -> None:
    with FakeLLMServer() as server:
        server.enqueue(TextReply(text="never asked for"))
        with pytest.raises(AssertionError, match="1 scripted step"):
            server.assert_all_steps_used()
        client = make_openai_client(server.base_url, "k", 5.0)
        try:
            model = OpenAIChatModel(client=client, model="m", max_retries=0, sleep=sleeps)
            await model.complete(MESSAGES, tools=TOOLS)
            with pytest.raises(LLMUnavailableError, match="HTTP 500"):
                await model.complete(MESSAGES, tools=TOOLS)
            models = await client.models.list()
        finally:
            await client.close()
        with pytest.raises(AssertionError, match="1 request"):
            server.assert_all_steps_used()
    assert [m.id for m in models.data] == ["gpt-4o-mini", "text-embedding-3-small"]
