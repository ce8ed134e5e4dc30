"""A scripted OpenAI-compatible server on loopback, for tests that go through the real `openai` SDK.

It plays the model: a test enqueues steps (see `tests.fakes.llm_wire`, re-exported here),
each POST /v1/chat/completions consumes one. It runs in a thread with its own event loop,
so it serves async tests and subprocesses (`membot chat`) alike. Unlike a mock it behaves
like the wire: OpenAI's JSON and SSE shapes, `usage` counted by the server itself,
OpenAI's validation of tool-call ordering, and a loud HTTP 500 "script exhausted" when the
code under test calls more often than the test expected.

    server = FakeLLMServer(); server.start()
    server.enqueue(ToolCallReply(calls=(tool_call("send_message", {"message": "hi"}),)))
    ... point the code under test at server.base_url ...
    server.assert_all_steps_used(); server.stop()
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import struct
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aiohttp import web

from tests.fakes.llm_wire import (
    CONTEXT_LENGTH_WORDINGS,
    JSON,
    Computed,
    Delayed,
    RawReply,
    Step,
    TextReply,
    ToolCallReply,
    ToolCallSpec,
    completion_body,
    completion_chunks,
    context_length_error,
    count_prompt_tokens,
    count_tokens,
    embed_text,
    error_body,
    http_error,
    rate_limit_error,
    tool_call,
    validation_problem,
)
from tests.fakes.loopback import LoopbackServer

__all__ = [
    "CONTEXT_LENGTH_WORDINGS",
    "Computed",
    "Delayed",
    "FakeLLMServer",
    "RawReply",
    "RecordedRequest",
    "Step",
    "TextReply",
    "ToolCallReply",
    "ToolCallSpec",
    "context_length_error",
    "count_prompt_tokens",
    "embed_text",
    "http_error",
    "rate_limit_error",
    "tool_call",
]

_BAD_JSON = "We could not parse the JSON body of your request."


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordedRequest:
    """One request as the server received it."""

    path: str
    body: JSON
    headers: dict[str, str]


class FakeLLMServer(LoopbackServer):
    """The scripted server. Thread-safe: tests enqueue from any thread while it serves."""

    def __init__(
        self,
        *,
        models: Sequence[str] = ("gpt-4o-mini", "text-embedding-3-small"),
        embedding_dimensions: int = 64,
        validate_requests: bool = True,
        stream_piece_chars: int = 5,
    ) -> None:
        self.models = tuple(models)
        #: Extra fields per model id in GET /v1/models (a local server's `max_model_len`, ...).
        self.model_details: dict[str, dict[str, object]] = {}
        self.models_listed = 0
        self.embedding_dimensions = embedding_dimensions
        self.validate_requests = validate_requests
        self.stream_piece_chars = stream_piece_chars
        self._lock = threading.Lock()
        self._steps: deque[Step] = deque()
        self._requests: list[RecordedRequest] = []
        self._exhausted_calls = 0
        self._embedding_failure: tuple[int, dict[str, str], int | None] | None = None
        self._ids = itertools.count(1)
        self._check_unused = True
        self._stopping: asyncio.Event | None = None
        super().__init__()

    # -- lifecycle ---------------------------------------------------------------------
    label = "fake LLM server"

    def start(self) -> None:
        count_tokens("warm up")  # load the encoding now, not inside the first (timed) answer
        super().start()

    def _add_routes(self, app: web.Application) -> None:
        self._stopping = asyncio.Event()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_get("/v1/models", self._models)

    async def _on_stopping(self) -> None:
        if self._stopping is not None:
            self._stopping.set()

    @property
    def base_url(self) -> str:
        """What to give the SDK: "http://127.0.0.1:PORT/v1"."""
        return f"{self.origin}/v1"

    # -- script ------------------------------------------------------------------------
    def enqueue(self, *steps: Step) -> None:
        """Append steps; each chat completion request consumes the oldest one."""
        with self._lock:
            self._steps.extend(steps)

    @property
    def pending_steps(self) -> int:
        with self._lock:
            return len(self._steps)

    def fail_embeddings(
        self, status: int | None, *, times: int | None = None, headers: Mapping[str, str] | None = None
    ) -> None:
        """Make /v1/embeddings answer `status` (the next `times` calls, or until cleared with None)."""
        with self._lock:
            self._embedding_failure = None if status is None else (status, dict(headers or {}), times)

    def allow_unused_steps(self) -> None:
        """Opt this test out of the `llm_server` fixture's `assert_all_steps_used()` at teardown."""
        self._check_unused = False

    @property
    def checks_unused_steps(self) -> bool:
        return self._check_unused

    def assert_all_steps_used(self) -> None:
        """Fail when steps remain queued or when any request found the script empty."""
        with self._lock:
            left, exhausted = len(self._steps), self._exhausted_calls
        assert left == 0, f"fake LLM server: {left} scripted step(s) never requested"
        assert exhausted == 0, f"fake LLM server: {exhausted} request(s) arrived after the script ran out"

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received, oldest first (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    @property
    def embedding_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/embeddings")]

    # -- handlers ----------------------------------------------------------------------
    async def _read(self, request: web.Request) -> JSON | None:
        try:
            body = await request.json()
        except ValueError:
            return None
        if not isinstance(body, dict):
            return None
        with self._lock:
            self._requests.append(RecordedRequest(path=request.path, body=body, headers=dict(request.headers)))
        return body

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._read(request)
        if body is None:
            return _json(400, error_body(_BAD_JSON, type="invalid_request_error"))
        if self.validate_requests and (problem := validation_problem(body)):
            return _json(400, error_body(problem, type="invalid_request_error", param="messages"))
        with self._lock:
            step = self._steps.popleft() if self._steps else None
            if step is None:
                self._exhausted_calls += 1
        if step is None:
            message = "fake LLM server: script exhausted (no step queued for this request)"
            return _json(500, error_body(message, type="server_error", code="script_exhausted"))
        return await self._play(step, body, request)

    async def _play(self, step: Step, body: JSON, request: web.Request) -> web.StreamResponse:
        match step:
            case Computed(respond=respond):
                return await self._play(respond(body), body, request)
            case Delayed(seconds=seconds, then=then):
                if self._stopping is not None:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), seconds)
                return await self._play(then, body, request)
            case RawReply(status=status, body=raw, headers=headers):
                if isinstance(raw, str):
                    return web.Response(status=status, text=raw, headers=headers)
                return _json(status, raw, headers)
            case TextReply() | ToolCallReply() if body.get("stream"):
                return await self._stream(completion_chunks(step, body, self._ids, self.stream_piece_chars), request)
            case TextReply() | ToolCallReply():
                return _json(200, completion_body(step, body, self._ids))

    async def _stream(self, chunks: list[JSON], request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            for chunk in chunks:
                await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        return response

    def _take_embedding_failure(self) -> tuple[int, dict[str, str]] | None:
        with self._lock:
            failure = self._embedding_failure
            if failure is None:
                return None
            status, headers, times = failure
            if times is not None:
                self._embedding_failure = (status, headers, times - 1) if times > 1 else None
            return status, headers

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        body = await self._read(request)
        if body is None:
            return _json(400, error_body(_BAD_JSON, type="invalid_request_error"))
        if (failure := self._take_embedding_failure()) is not None:
            status, headers = failure
            return _json(
                status, error_body(f"fake LLM server: embeddings fail with {status}", type="server_error"), headers
            )
        raw = body.get("input")
        texts = [raw] if isinstance(raw, str) else raw
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t for t in texts):
            problem = "'$.input' is invalid. Please check the API reference."
            return _json(400, error_body(problem, type="invalid_request_error", param="input"))
        dimensions = int(body.get("dimensions") or self.embedding_dimensions)
        data = []
        for index, text in enumerate(texts):
            vector: object = embed_text(text, dimensions)
            if body.get("encoding_format") == "base64":
                vector = base64.b64encode(struct.pack(f"<{dimensions}f", *embed_text(text, dimensions))).decode()
            data.append({"object": "embedding", "index": index, "embedding": vector})
        tokens = sum(count_tokens(text) for text in texts)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return _json(200, {"object": "list", "data": data, "model": body.get("model"), "usage": usage})

    async def _models(self, request: web.Request) -> web.StreamResponse:
        self.models_listed += 1
        data = [
            {
                "id": m,
                "object": "model",
                "created": 1_700_000_000,
                "owned_by": "membot-fake",
                **self.model_details.get(m, {}),
            }
            for m in self.models
        ]
        return _json(200, {"object": "list", "data": data})


def _json(status: int, body: object, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json", headers=headers)
