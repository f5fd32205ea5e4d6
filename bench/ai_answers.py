"""N concurrent "LLM answers" publishing through the SDK's own ``AsyncPublisher`` over HTTP.

Each answer is one ``async with Publisher(project, "answer", url=...)`` (its own HTTP client, as
a worker holding one answer has). Every 50 ms (``--rate`` 20/s) it produces ``--tokens`` tokens
at once; the SDK coalesces them into one token message (``coalesce_tokens``), sent when the last
one arrives. That last token is the benchmark marker ``B <time.time()> <seq>``, so a subscriber
measures each message from the moment the SDK sends it. An answer starts with a ``stage_update``
(its run and HTTP connection open there, unmeasured) and ends with ``publish_done`` after
``--messages`` messages. Starts are spread over one period. Prints one JSON line: messages
sent per channel, errors, CPU seconds of this process (``cpu_s``, start-up and imports included)
and of the answers alone (``answers_cpu_s``: what the SDK costs per message).

    python bench/ai_answers.py --url http://127.0.0.1:8000 --answers 50 --prefix ai50x
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
from typing import Any

import uvloop

from ssehub import Publisher

STAGE = "answer"
FILLER = "tok "


def channel_of(project: str) -> str:
    """The stage channel an answer of ``project`` publishes to (the SDK's naming)."""
    return f"ai_story:project:{project}:stage:{STAGE}"


async def answer(project: str, args: argparse.Namespace, sent: dict[str, int]) -> None:
    """One answer: ``args.messages`` coalesced token messages at ``args.rate``/s, then done."""
    loop = asyncio.get_running_loop()
    period = 1.0 / args.rate
    await asyncio.sleep(random.random() * period)
    channel = channel_of(project)
    options: dict[str, Any] = {"coalesce_tokens": args.tokens, "coalesce_seconds": 3600.0}
    async with Publisher(project, STAGE, url=args.url, **options) as pub:
        await pub.publish_stage_update("running")  # opens the run and the HTTP connection
        due = loop.time()
        for seq in range(1, args.messages + 1):
            for _ in range(args.tokens - 1):
                await pub.publish_token(FILLER)
            await pub.publish_token(f"B {time.time():.6f} {seq}")  # fills the batch: sent now
            sent[channel] = seq
            due += period
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        await pub.publish_done()


async def main(args: argparse.Namespace) -> dict[str, Any]:
    sent: dict[str, int] = {}
    projects = [f"{args.prefix}{i}" for i in range(args.answers)]
    start, before = time.perf_counter(), os.times()
    outcomes = await asyncio.gather(
        *(answer(p, args, sent) for p in projects), return_exceptions=True
    )
    errors = [repr(o) for o in outcomes if isinstance(o, BaseException)]
    usage = os.times()
    return {
        "sent": sent,
        "messages": sum(sent.values()),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "seconds": round(time.perf_counter() - start, 2),
        "cpu_s": round(usage.user + usage.system, 2),
        "answers_cpu_s": round(usage.user + usage.system - before.user - before.system, 2),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--answers", type=int, required=True)
    parser.add_argument("--prefix", default="ai")
    parser.add_argument("--messages", type=int, default=100, help="Token messages per answer.")
    parser.add_argument("--rate", type=float, default=20.0, help="Messages/s per answer.")
    parser.add_argument("--tokens", type=int, default=16, help="Tokens per message.")
    return parser.parse_args(argv)


if __name__ == "__main__":
    print(json.dumps(uvloop.run(main(parse_args()))))
