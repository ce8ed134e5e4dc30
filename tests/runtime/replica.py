"""One runtime replica in a process of its own, for `test_runtime_faults`.

    python -m tests.runtime.replica --uri URI --database DB --llm BASE_URL --owner NAME \\
        --events EVENTS.json --out RECORDS.jsonl [--transactions auto|always|never]

It builds the real stack (`MongoStore`, `OpenAIChatModel` through `make_openai_client`,
`AgentLoop`, `Runtime`), prints "ready", and waits for a line on stdin so that the test
starts every replica at once. Then it submits its events in order, waits until it is idle
and the shared inbox holds nothing pending, stops the runtime and exits. Everything the test
checks is appended to RECORDS as JSON lines: each submit (new or a duplicate), each reply
the platform delivered, and each turn's wall-clock span (`time.time()`, comparable across
processes on one machine).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TextIO, TypedDict

from bot.agent.context import ContextWindow
from bot.agent.llm import OpenAIChatModel, make_openai_client
from bot.agent.loop import AgentLoop, AgentOptions, TurnObserver, TurnResult
from bot.agent.model import ChatModel
from bot.agent.templates import load_prompt
from bot.agent.tokens import TokenCounter
from bot.events import InboundMessage, ReplySink, TurnInput
from bot.memory.mongo import MongoStore
from bot.runtime import Runtime, RuntimeOptions

__all__ = [
    "MODEL",
    "PLATFORM",
    "EventSpec",
    "Replica",
    "ReplyRecord",
    "SubmitRecord",
    "TurnRecord",
    "main",
    "read_records",
    "spawn_replica",
]

_ROOT = Path(__file__).resolve().parents[2]
MODEL = "gpt-4o-mini"
PLATFORM = "test"
#: Pause between two submits, so the replicas' events interleave with each other's turns.
SUBMIT_PACE_S = 0.02
#: How long a replica waits for its work and the shared inbox to drain before it gives up.
DRAIN_TIMEOUT_S = 30.0


class EventSpec(TypedDict):
    """One platform event as the test hands it to a replica (the inbox key is `test:<msg_id>`)."""

    agent_id: str
    msg_id: str
    text: str
    conversation: str


class SubmitRecord(TypedDict):
    kind: Literal["submit"]
    owner: str
    msg_id: str
    is_new: bool


class ReplyRecord(TypedDict):
    kind: Literal["reply"]
    owner: str
    conversation: str
    text: str


class TurnRecord(TypedDict):
    kind: Literal["turn"]
    owner: str
    agent: str
    start: float
    end: float


class _Records:
    """Appends one JSON object a line, flushed at once (a crash keeps what was written)."""

    def __init__(self, out: TextIO) -> None:
        self._out = out

    def write(self, record: SubmitRecord | ReplyRecord | TurnRecord) -> None:
        self._out.write(json.dumps(record) + "\n")
        self._out.flush()


class _TimedLoop(AgentLoop):
    """The real agent loop, recording when each of its turns starts and ends."""

    def __init__(self, *, store: MongoStore, model: ChatModel, records: _Records, owner: str) -> None:
        super().__init__(
            store=store,
            model=model,
            counter=TokenCounter(model=MODEL),
            embedder=None,
            options=AgentOptions(
                window=ContextWindow(context_window=16_000, max_output_tokens=1_000, warning_fraction=0.75),
                instructions=load_prompt("system"),
                summarize_instructions=load_prompt("summarize").format(word_limit=200),
            ),
        )
        self._records = records
        self._owner = owner

    async def run_turn(
        self,
        agent_id: str,
        inputs: Sequence[TurnInput],
        *,
        reply: ReplySink,
        observer: TurnObserver | None = None,
        is_shared: bool = False,
        is_reply_owed: bool | None = None,
    ) -> TurnResult:
        start = time.time()
        try:
            return await super().run_turn(
                agent_id, inputs, reply=reply, observer=observer, is_shared=is_shared, is_reply_owed=is_reply_owed
            )
        finally:
            self._records.write(
                {"kind": "turn", "owner": self._owner, "agent": agent_id, "start": start, "end": time.time()}
            )


class _RecordingPlatform:
    """A platform whose sink factory rebuilds a sink from the message, as a real adapter does."""

    def __init__(self, records: _Records, owner: str) -> None:
        self._records = records
        self._owner = owner
        self._sent = 0

    def sink(self, message: InboundMessage) -> ReplySink:
        platform = self
        conversation = message.reply_route or message.conversation_key

        class _Sink:
            async def send(self, text: str) -> str | None:
                platform._sent += 1
                platform._records.write(
                    {"kind": "reply", "owner": platform._owner, "conversation": conversation, "text": text}
                )
                return f"{platform._owner}-reply-{platform._sent}"

            async def typing(self) -> None:
                pass

        return _Sink()


def _message(event: EventSpec) -> InboundMessage:
    return InboundMessage(
        platform=PLATFORM,
        conversation_key=event["conversation"],
        speaker_id="ada",
        speaker_name="Ada",
        text=event["text"],
        sent_at=datetime.now(UTC),
        platform_message_id=event["msg_id"],
        reply_route=event["conversation"],
    )


async def _drained(store: MongoStore) -> None:
    """Return once no replica has an entry pending in the shared inbox (the store is the only
    one who knows, so it is polled)."""
    while True:
        if not await store.inbox_pending(limit=1):
            return
        await asyncio.sleep(0.05)


async def _run(args: argparse.Namespace, events: list[EventSpec], records: _Records) -> None:
    store = MongoStore(args.uri, database=args.database, connect_timeout_s=5.0, transactions=args.transactions)
    await store.open()
    client = make_openai_client(args.llm, "test-key", 10.0)
    try:
        loop = _TimedLoop(
            store=store,
            model=OpenAIChatModel(client=client, model=MODEL, max_retries=1),
            records=records,
            owner=args.owner,
        )
        platform = _RecordingPlatform(records, args.owner)
        runtime = Runtime(
            store=store,
            loop=loop,
            sinks={PLATFORM: platform.sink},
            options=RuntimeOptions(owner=args.owner, lease_retry_s=0.05),
        )
        await runtime.start()
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        try:
            for event in events:
                is_new = await runtime.submit(event["agent_id"], _message(event), keys=[f"test:{event['msg_id']}"])
                records.write({"kind": "submit", "owner": args.owner, "msg_id": event["msg_id"], "is_new": is_new})
                await asyncio.sleep(SUBMIT_PACE_S)
            async with asyncio.timeout(DRAIN_TIMEOUT_S):
                await runtime.wait_idle()
                # Entries this replica stored may be run by the other one, and the reverse.
                await _drained(store)
                await runtime.wait_idle()
        finally:
            await runtime.stop(deadline_s=5)
    finally:
        await client.close()
        await store.close()


# -- the test's side -------------------------------------------------------------------------
@dataclass
class Replica:
    """A replica process the test started, and where it writes its records."""

    owner: str
    process: asyncio.subprocess.Process
    records: Path
    log: Path

    def failure(self, what: str) -> str:
        return f"{self.owner} {what}; its log:\n{self.log.read_text(encoding='utf-8')}"


async def spawn_replica(
    tmp_path: Path, owner: str, events: list[EventSpec], *, uri: str, database: str, llm: str, transactions: str
) -> Replica:
    """Start `python -m tests.runtime.replica` for `owner`; it prints "ready" and waits for a line on stdin."""
    events_path = tmp_path / f"{owner}-events.json"
    events_path.write_text(json.dumps(events), encoding="utf-8")
    records, log = tmp_path / f"{owner}.jsonl", tmp_path / f"{owner}.log"
    with log.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.runtime.replica",
            *("--uri", uri, "--database", database, "--llm", llm, "--owner", owner),
            *("--events", str(events_path), "--out", str(records), "--transactions", transactions),
            cwd=_ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
        )
    return Replica(owner=owner, process=process, records=records, log=log)


def read_records(replicas: Sequence[Replica]) -> list[dict[str, Any]]:
    lines = [
        line for r in replicas if r.records.exists() for line in r.records.read_text(encoding="utf-8").splitlines()
    ]
    return [json.loads(line) for line in lines]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.runtime.replica")
    parser.add_argument("--uri", required=True)
    parser.add_argument("--database", required=True)
    parser.add_argument("--llm", required=True, help="the scripted LLM server's base URL")
    parser.add_argument("--owner", required=True)
    parser.add_argument("--events", required=True, help="a JSON list of events to submit")
    parser.add_argument("--out", required=True, help="where to append the JSON-line records")
    parser.add_argument("--transactions", choices=["auto", "always", "never"], default="auto")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format=f"{args.owner} %(levelname)s %(name)s: %(message)s"
    )
    events: list[EventSpec] = json.loads(Path(args.events).read_text(encoding="utf-8"))
    with Path(args.out).open("a", encoding="utf-8") as out:
        asyncio.run(_run(args, events, _Records(out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
