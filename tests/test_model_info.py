"""The context window: the setting, a known hosted model, what the endpoint reports, or the default."""

from __future__ import annotations

import socket

import pytest
from pydantic import SecretStr

from bot.agent.model_info import resolve_context_window, window_in_listing
from bot.config import LLMSettings
from tests.fakes.llm_server import FakeLLMServer


def _settings(base_url: str, model: str, **extra: object) -> LLMSettings:
    return LLMSettings.model_validate({"base_url": base_url, "model": model, **extra})


async def test_a_local_server_s_reported_window_is_used(llm_server: FakeLLMServer) -> None:
    llm_server.models = ("Qwen/Qwen2.5-7B-Instruct",)
    llm_server.model_details["Qwen/Qwen2.5-7B-Instruct"] = {"max_model_len": 32_768}  # vLLM's field
    choice = await resolve_context_window(_settings(llm_server.base_url, "Qwen/Qwen2.5-7B-Instruct"))
    assert (choice.tokens, choice.source) == (32_768, "endpoint")


@pytest.mark.parametrize("key", ["context_length", "context_window", "max_context_length"])
async def test_other_servers_names_for_the_window(llm_server: FakeLLMServer, key: str) -> None:
    llm_server.models = ("local-model", "other")
    llm_server.model_details["other"] = {key: 4096}
    llm_server.model_details["local-model"] = {key: 16_384}
    choice = await resolve_context_window(_settings(llm_server.base_url, "local-model"))
    assert (choice.tokens, choice.source) == (16_384, "endpoint")


async def test_the_setting_and_known_models_need_no_request(llm_server: FakeLLMServer) -> None:
    explicit = await resolve_context_window(_settings(llm_server.base_url, "local-model", context_window=8192))
    known = await resolve_context_window(_settings(llm_server.base_url, "gpt-4o-mini"))
    assert (explicit.tokens, explicit.source) == (8192, "setting")
    assert (known.tokens, known.source) == (128_000, "known model")
    assert llm_server.models_listed == 0


async def test_no_report_means_the_default(llm_server: FakeLLMServer) -> None:
    llm_server.models = ("local-model",)
    llm_server.model_details["local-model"] = {"max_model_len": "lots", "meta": {"n_ctx_train": 131_072}}
    choice = await resolve_context_window(_settings(llm_server.base_url, "local-model"))
    assert (choice.tokens, choice.source) == (128_000, "default")
    assert llm_server.models_listed == 1


async def test_an_unreachable_endpoint_means_the_default() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    choice = await resolve_context_window(_settings(f"http://127.0.0.1:{port}/v1", "local-model"))
    assert (choice.tokens, choice.source) == (128_000, "default")


async def test_the_api_key_is_sent(llm_server: FakeLLMServer) -> None:
    llm_server.models = ("local-model",)
    llm_server.model_details["local-model"] = {"context_length": 8192}
    settings = _settings(llm_server.base_url, "local-model", api_key=SecretStr("sk-local"))
    assert (await resolve_context_window(settings)).tokens == 8192


@pytest.mark.parametrize(
    "listing",
    [
        None,
        [],
        {"data": "nope"},
        {"data": [{"id": "m", "max_model_len": True}]},
        {"data": [{"id": "m", "max_model_len": 0}]},
        {"data": [{"id": "m", "max_model_len": 10**30}]},
        {"data": [{"id": "other", "max_model_len": 4096}]},
        {"data": ["m"]},
    ],
)
def test_misreported_windows_are_ignored(listing: object) -> None:
    assert window_in_listing(listing, "m") is None


def test_a_window_no_larger_than_the_reply_cap_is_refused_by_the_settings() -> None:
    with pytest.raises(ValueError, match="must be smaller than context_window"):
        LLMSettings.model_validate({"model": "gpt-4", "max_output_tokens": 9000})
