"""A real membot (`open_app`: SQLite store, agent loop, OpenAI SDK) answering through the
scripted LLM server, for the framework integrations; and a runtime over it for A2A."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.app import App, open_app
from bot.config import Settings, load_settings
from bot.memory.store import StoredMessage
from tests.fakes.llm_server import FakeLLMServer, ToolCallReply, tool_call


def reply(text: str) -> ToolCallReply:
    """One step: the agent answers with `text` and ends its turn."""
    return ToolCallReply(calls=(tool_call("send_message", {"message": text}),))


def search(query: str) -> ToolCallReply:
    """One step: the agent searches its recall and asks for another step."""
    return ToolCallReply(calls=(tool_call("conversation_search", {"query": query, "request_heartbeat": True}),))


def settings_for(server: FakeLLMServer, tmp_path: Path, **sections: Any) -> Settings:
    return load_settings(
        None,
        env_file=None,
        overrides={
            "llm": {"base_url": server.base_url, "api_key": "test-key", "max_retries": 0},
            "store": {"sqlite_path": str(tmp_path / "membot.sqlite3")},
            "data_dir": str(tmp_path / "data"),
            **sections,
        },
    )


@dataclass
class Membot:
    app: App
    server: FakeLLMServer

    async def agent_id(self, name: str) -> str:
        agent = await self.app.directory.by_name(name)
        assert agent is not None
        return agent.id

    async def create(self, name: str) -> str:
        agent = await self.app.directory.create(
            name=name,
            persona=f"I am {name}.",
            human="First name: unknown",
            persona_template="sam",
            human_template="basic",
            model="gpt-4o-mini",
        )
        return agent.id

    async def said_to(self, name: str) -> list[tuple[str | None, str]]:
        """Every user message in the agent's recall, in order, with its speaker."""
        messages: list[StoredMessage] = await self.app.store.get_messages(await self.agent_id(name))
        return [(m.speaker_name, m.content) for m in messages if m.role == "user"]

    def tool_results(self, index: int = -1) -> list[str]:
        body = self.server.chat_requests[index].body
        return [str(m["content"]) for m in body["messages"] if m["role"] == "tool"]

    def prompt_users(self, index: int = -1) -> list[str]:
        body = self.server.chat_requests[index].body
        return [str(m["content"]) for m in body["messages"] if m["role"] == "user"]


@pytest.fixture
async def membot(llm_server: FakeLLMServer, tmp_path: Path) -> AsyncIterator[Membot]:
    async with open_app(settings_for(llm_server, tmp_path)) as app:
        yield Membot(app=app, server=llm_server)
