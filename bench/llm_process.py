"""The scripted LLM server in a process of its own, so a timed benchmark does not share
its GIL with the server: `python -m bench.llm_process` prints the base URL, then serves
a send_message reply (or a summary) to every request until killed."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from typing import Any

from tests.fakes.llm_server import Computed, Delayed, FakeLLMServer, TextReply, ToolCallReply, tool_call


def answer(body: dict[str, Any]) -> TextReply | ToolCallReply:
    if "tools" not in body:
        return TextReply(text="Summary: the user and the agent talked about daily life.")
    return ToolCallReply(calls=(tool_call("send_message", {"message": "Sure, noted."}),))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    latency = parser.parse_args().latency
    server = FakeLLMServer(validate_requests=False)
    server.start()
    if latency > 0:
        server.enqueue(*[Computed(lambda body: Delayed(seconds=latency, then=answer(body))) for _ in range(200_000)])
    else:
        server.enqueue(*[Computed(answer) for _ in range(200_000)])
    print(server.base_url, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    server.allow_unused_steps()
    server.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
