"""`OpenAIEmbedder` against the scripted server's /v1/embeddings, through the real `openai` SDK."""

from __future__ import annotations

import math
import random

import openai
import pytest

from bot.errors import LLMResponseError, LLMUnavailableError
from bot.memory.embeddings import Embedder
from bot.memory.openai_embeddings import OpenAIEmbedder
from tests.fakes.llm_fixtures import SleepRecorder
from tests.fakes.llm_server import FakeLLMServer, embed_text

TEXTS = [
    "Ada loves hiking in the Alps.",
    "Ada went hiking near Zermatt.",
    "The espresso machine is broken.",
    "Riemann's hypothesis is unproven.",
    "Mandarin lessons start on Monday.",
    "Hiking boots need new laces.",
    "The Matterhorn is 4,478 m high.",
]


@pytest.fixture
def embedder(openai_client: openai.AsyncOpenAI, sleeps: SleepRecorder) -> OpenAIEmbedder:
    return OpenAIEmbedder(
        client=openai_client, model="text-embedding-3-small", batch_size=3, sleep=sleeps, rng=random.Random(5)
    )


def _cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / (math.hypot(*a) * math.hypot(*b))


async def test_texts_are_embedded_in_batches_and_in_order(llm_server: FakeLLMServer, embedder: OpenAIEmbedder) -> None:
    vectors = await embedder.embed(TEXTS)

    assert vectors == [embed_text(text) for text in TEXTS]
    sent = llm_server.embedding_requests
    assert [request.body["input"] for request in sent] == [TEXTS[0:3], TEXTS[3:6], TEXTS[6:7]]
    assert {request.body["encoding_format"] for request in sent} == {"float"}
    assert {request.body["model"] for request in sent} == {"text-embedding-3-small"}
    assert all("dimensions" not in request.body for request in sent)


async def test_embeddings_are_deterministic_and_share_words(embedder: OpenAIEmbedder) -> None:
    first = await embedder.embed(TEXTS)
    second = await embedder.embed(list(reversed(TEXTS)))

    assert first == list(reversed(second))
    assert all(len(vector) == 64 and math.hypot(*vector) == pytest.approx(1.0) for vector in first)
    hiking, zermatt, espresso = first[0], first[1], first[2]
    assert _cosine(hiking, zermatt) > 0.3
    assert _cosine(hiking, espresso) < _cosine(hiking, zermatt)


async def test_dimensions_are_learnt_or_requested(openai_client: openai.AsyncOpenAI, llm_server: FakeLLMServer) -> None:
    learnt = OpenAIEmbedder(client=openai_client, model="text-embedding-3-small")
    requested = OpenAIEmbedder(client=openai_client, model="text-embedding-3-small", dimensions=16)
    assert learnt.dimensions is None

    await learnt.embed(["one"])
    [short] = await requested.embed(["one"])

    assert learnt.dimensions == 64
    assert requested.dimensions == 16
    assert len(short) == 16
    assert llm_server.embedding_requests[-1].body["dimensions"] == 16


async def test_nothing_to_embed_sends_nothing(llm_server: FakeLLMServer, embedder: OpenAIEmbedder) -> None:
    assert await embedder.embed([]) == []
    assert llm_server.embedding_requests == []


async def test_empty_text_is_sent_as_a_space(llm_server: FakeLLMServer, embedder: OpenAIEmbedder) -> None:
    [vector] = await embedder.embed([""])

    assert llm_server.embedding_requests[0].body["input"] == [" "]
    assert len(vector) == 64


async def test_transient_failures_are_retried(
    llm_server: FakeLLMServer, embedder: OpenAIEmbedder, sleeps: SleepRecorder
) -> None:
    llm_server.fail_embeddings(503, times=2)

    vectors = await embedder.embed(TEXTS[:2])

    assert vectors == [embed_text(text) for text in TEXTS[:2]]
    jitter = random.Random(5)
    assert sleeps.delays == [jitter.random() * 0.5, jitter.random() * 1.0]
    assert len(llm_server.embedding_requests) == 3


async def test_rate_limit_retry_after_is_honoured(
    llm_server: FakeLLMServer, embedder: OpenAIEmbedder, sleeps: SleepRecorder
) -> None:
    llm_server.fail_embeddings(429, times=1, headers={"Retry-After": "3"})

    await embedder.embed(["one"])

    assert sleeps.delays == [3.0]


async def test_retries_exhausted_raise_unavailable(
    llm_server: FakeLLMServer, openai_client: openai.AsyncOpenAI, sleeps: SleepRecorder
) -> None:
    llm_server.fail_embeddings(500)
    embedder = OpenAIEmbedder(client=openai_client, model="text-embedding-3-small", max_retries=2, sleep=sleeps)

    with pytest.raises(LLMUnavailableError, match=r"^embeddings \(text-embedding-3-small\) failed after 3 attempt"):
        await embedder.embed(["one"])
    assert len(sleeps.delays) == 2


async def test_rejected_input_raises_response_error(
    llm_server: FakeLLMServer, embedder: OpenAIEmbedder, sleeps: SleepRecorder
) -> None:
    llm_server.fail_embeddings(400, times=1)

    with pytest.raises(LLMResponseError, match=r"embeddings rejected \(HTTP 400\)"):
        await embedder.embed(["one"])
    assert sleeps.delays == []


async def test_sdk_default_base64_path_matches_the_float_path(
    llm_server: FakeLLMServer, openai_client: openai.AsyncOpenAI
) -> None:
    """The fake speaks the SDK's default (base64 float32) too, for code that calls the SDK directly."""
    response = await openai_client.embeddings.create(model="text-embedding-3-small", input=["Ada loves hiking"])

    assert llm_server.embedding_requests[0].body["encoding_format"] == "base64"
    assert response.data[0].embedding == pytest.approx(embed_text("Ada loves hiking"), abs=1e-6)
    assert response.usage.prompt_tokens > 0


def test_openai_embedder_satisfies_the_protocol(openai_client: openai.AsyncOpenAI) -> None:
    embedder: Embedder = OpenAIEmbedder(client=openai_client, model="m")
    assert embedder.model_name == "m"
    with pytest.raises(ValueError, match="batch_size"):
        OpenAIEmbedder(client=openai_client, model="m", batch_size=0)
