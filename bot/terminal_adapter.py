"""`membot chat`: standard input and output as a third platform, with MemGPT's slash commands.

Works interactively (a prompt, colours) and with piped input (one message per line, plain
text out), so a conversation can be scripted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress

from bot.agent.directory import AgentDirectory
from bot.agent.loop import AgentLoop, TurnResult
from bot.errors import MembotError, StoreError, UserFacingError
from bot.events import InboundMessage, Interrupt, TurnInput
from bot.memory.documents import chunk_text, read_document
from bot.memory.recall import format_message_line
from bot.memory.store import AgentRecord, MemoryStore

__all__ = ["TerminalChat"]

_log = logging.getLogger(__name__)

_ATTACH_BATCH = 16
_HELP = """\
/exit                 leave (memory is saved continuously)
/save                 export a checkpoint file of this agent
/dump [n]             show the last n messages (default 10)
/memory               show core memory, counts and the summary
/pop [n]              delete the last n messages (default 3)
/retry                answer your last message again
/heartbeat            give the agent a heartbeat (a step without a user message)
/memorywarning        send the agent a memory-pressure warning
/attach PATH          load a text, Markdown or PDF file into archival memory
/help                 this list"""


@dataclass(frozen=True, slots=True, kw_only=True)
class _Command:
    run: Callable[[str], Awaitable[bool]]
    takes_argument: bool


class _TerminalSink:
    """Prints replies; the terminal needs no typing indicator."""

    def __init__(self, console: Console, agent_name: str) -> None:
        self._console = console
        self._name = agent_name

    async def send(self, text: str) -> str | None:
        self._console.print(f"[bold cyan]{escape(self._name)}>[/] {escape(text)}")
        return None

    async def typing(self) -> None:
        pass


class _ConsoleObserver:
    def __init__(self, console: Console, *, is_debug: bool) -> None:
        self._console = console
        self._is_debug = is_debug

    def on_thought(self, text: str) -> None:
        self._console.print(f"[dim italic]  (thinking) {escape(text)}[/]")

    def on_function(self, name: str, arguments: str, result: str, *, is_ok: bool) -> None:
        if self._is_debug or not is_ok:
            mark = "[green]ok[/]" if is_ok else "[red]failed[/]"
            self._console.print(f"[dim]  ⚙ {escape(name)}({escape(arguments)}) {mark}: {escape(result)}[/]")

    def on_event(self, text: str) -> None:
        self._console.print(f"[yellow]  [{escape(text)}][/]")


class TerminalChat:
    """One conversation between the terminal user and one agent."""

    def __init__(
        self,
        *,
        agent: AgentRecord,
        loop: AgentLoop,
        directory: AgentDirectory,
        store: MemoryStore,
        checkpoint_dir: Path,
        speaker_name: str = "user",
        is_debug: bool = False,
        console: Console | None = None,
        max_attach_bytes: int = 20_000_000,
    ) -> None:
        self._agent = agent
        self._loop = loop
        self._directory = directory
        self._store = store
        self._checkpoint_dir = checkpoint_dir
        self._speaker = speaker_name
        self._console = console or Console(highlight=False, soft_wrap=True)
        self._sink = _TerminalSink(self._console, agent.name)
        self._observer = _ConsoleObserver(self._console, is_debug=is_debug)
        self._max_attach_bytes = max_attach_bytes
        self._commands: dict[str, _Command] = {
            "/exit": _Command(run=self._exit, takes_argument=False),
            "/quit": _Command(run=self._exit, takes_argument=False),
            "/save": _Command(run=self._save, takes_argument=False),
            "/dump": _Command(run=self._dump, takes_argument=True),
            "/memory": _Command(run=self._memory, takes_argument=False),
            "/pop": _Command(run=self._pop, takes_argument=True),
            "/retry": _Command(run=self._retry, takes_argument=False),
            "/heartbeat": _Command(run=self._heartbeat, takes_argument=False),
            "/memorywarning": _Command(run=self._memory_warning, takes_argument=False),
            "/attach": _Command(run=self._attach, takes_argument=True),
            "/help": _Command(run=self._help, takes_argument=False),
        }

    async def run(self, *, is_user_first: bool) -> None:
        """The read-eval loop; returns on /exit or end of input."""
        is_tty = sys.stdin.isatty()
        if not is_user_first:
            await self._turn([Interrupt(kind="login", reason="the user opened the chat", at=_now())])
        while True:
            line = await asyncio.to_thread(_read_line, "> " if is_tty else None)
            if line is None:
                return
            text = line.strip()
            if not text:
                continue
            if text.startswith("/"):
                if not await self._command(text):
                    return
                continue
            await self._say(text)

    async def _say(self, text: str) -> None:
        message = InboundMessage(
            platform="terminal",
            conversation_key=f"terminal:{self._agent.name}",
            speaker_id=self._speaker,
            speaker_name=self._speaker,
            text=text,
            sent_at=_now(),
        )
        await self._turn([message])

    async def _turn(self, inputs: list[TurnInput]) -> TurnResult | None:
        try:
            with self._console.status("thinking…", spinner="dots") if self._console.is_terminal else _nothing():
                result = await self._loop.run_turn(self._agent.id, inputs, reply=self._sink, observer=self._observer)
        except UserFacingError as exc:
            self._console.print(f"[red]{escape(str(exc))}[/]")
            return None
        except StoreError as exc:
            # The store went away mid-turn: say so and keep the chat open; what was written stays.
            _log.warning("turn failed: %s", exc)
            self._console.print(f"[red]  (the memory store failed: {escape(str(exc))}; try again)[/]")
            return None
        if result.is_failed:
            self._console.print(f"[red]  (turn failed: {escape(result.error or '')})[/]")
        return result

    async def _command(self, text: str) -> bool:
        name, _, argument = text.partition(" ")
        command = self._commands.get(name.lower())
        if command is None:
            self._console.print(f"Unknown command {escape(name)}. /help lists the commands.")
            return True
        try:
            return await command.run(argument.strip())
        except MembotError as exc:
            self._console.print(f"[red]{escape(name)} failed: {escape(str(exc))}[/]")
            return True

    async def _exit(self, _argument: str) -> bool:
        return False

    async def _help(self, _argument: str) -> bool:
        self._console.print(escape(_HELP))
        return True

    async def _save(self, _argument: str) -> bool:
        data = await self._directory.export(self._agent.id)
        self._checkpoint_dir.mkdir(parents=True, exist_ok=True)
        path = self._checkpoint_dir / f"{self._agent.name}-{_now():%Y%m%dT%H%M%SZ}.json"
        path.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
        self._console.print(f"Saved a checkpoint to {escape(str(path))}")
        return True

    async def _dump(self, argument: str) -> bool:
        count = _count_argument(argument, default=10)
        messages = await self._store.get_messages_before(self._agent.id, before_seq=2**62, limit=count)
        for message in messages:
            if message.role == "tool":
                line = f"  ⚙ result of {message.tool_name}: {message.content}"
            elif message.role == "assistant":
                calls = ", ".join(f"{c.name}({c.arguments})" for c in message.tool_calls)
                line = f"  (thinking) {message.content}" + (f" → {calls}" if calls else "")
            else:
                line = format_message_line(message, max_chars=2000)
            self._console.print(f"#{message.seq} {escape(line)}")
        if not messages:
            self._console.print("No messages yet.")
        return True

    async def _memory(self, _argument: str) -> bool:
        agent = await self._directory.require(self._agent.id)
        for block in await self._store.get_blocks(agent.id):
            self._console.print(f"[bold]{escape(block.label)}[/] ({len(block.value)}/{block.limit} chars)")
            self._console.print(escape(block.value) or "(empty)")
        recall = await self._store.count_messages(agent.id)
        archival = await self._store.count_passages(agent.id)
        self._console.print(
            f"recall: {recall} messages ({agent.context_start_seq - 1} summarised out of the context); "
            f"archival: {archival} passages"
        )
        if agent.summary:
            self._console.print(f"[bold]summary[/]\n{escape(agent.summary)}")
        return True

    async def _pop(self, argument: str) -> bool:
        deleted = await self._directory.pop_messages(self._agent.id, _count_argument(argument, default=3))
        self._console.print(f"Deleted {deleted} messages.")
        return True

    async def _retry(self, _argument: str) -> bool:
        recent = await self._store.get_messages_before(self._agent.id, before_seq=2**62, limit=200)
        last_user = next((m for m in reversed(recent) if m.role == "user"), None)
        if last_user is None:
            self._console.print("Nothing to retry: no message of yours in the recent history.")
            return True
        count = recent[-1].seq - last_user.seq + 1
        await self._directory.pop_messages(self._agent.id, count)
        await self._say(last_user.content)
        return True

    async def _heartbeat(self, _argument: str) -> bool:
        await self._turn([Interrupt(kind="heartbeat", reason="a heartbeat sent from the terminal", at=_now())])
        return True

    async def _memory_warning(self, _argument: str) -> bool:
        reason = "memory pressure: save what matters to core or archival memory before older messages are summarised"
        await self._turn([Interrupt(kind="memory_warning", reason=reason, at=_now())])
        return True

    async def _attach(self, argument: str) -> bool:
        if not argument:
            self._console.print("Usage: /attach PATH")
            return True
        path = Path(argument)
        text = await asyncio.to_thread(lambda: read_document(path.expanduser(), max_bytes=self._max_attach_bytes))
        chunks = chunk_text(text)
        with Progress(console=self._console, disable=not self._console.is_terminal) as progress:
            task = progress.add_task(f"attaching {path.name}", total=len(chunks))
            for start in range(0, len(chunks), _ATTACH_BATCH):
                batch = chunks[start : start + _ATTACH_BATCH]
                await self._loop.archival.insert(self._agent.id, batch)
                progress.advance(task, len(batch))
        self._console.print(f"Attached {escape(path.name)}: {len(chunks)} passages in archival memory.")
        return True


def _read_line(prompt: str | None) -> str | None:
    try:
        return input(prompt) if prompt is not None else _readline_plain()
    except EOFError:
        return None


def _readline_plain() -> str | None:
    line = sys.stdin.readline()
    return line if line else None


def _count_argument(argument: str, *, default: int) -> int:
    if not argument:
        return default
    try:
        value = int(argument)
    except ValueError:
        raise UserFacingError(f"{argument!r} is not a number") from None
    if value < 1:
        raise UserFacingError("the count must be at least 1")
    return value


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _now() -> datetime:
    return datetime.now(UTC)
