"""Summarise a py-spy ``--format raw`` profile: the functions with most samples, self and total.

``--parts`` instead sorts every sample into the part of a publish it was spent in (the
innermost frame naming a part decides): auth, validation, rate limits, logging, ...
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

# (part, substrings of a frame), tried on each frame from the innermost outwards.
PARTS = (
    ("socket write (kernel, loopback)", ("httptools_impl.py:524)",)),
    ("access log", ("logging/", "Logger.", "ssehub/logs.py:12", "ssehub/logs.py:13")),
    ("auth (JWT)", ("jwt/", "ssehub/auth.py", "ssehub/tickets.py", "get_principal")),
    ("response encoding", ("serialize_response", "dump_json", "responses.py", "Published")),
    ("rate limits", ("check_rate", "take_token", "ssehub/gate.py")),
    ("run lifecycle", ("ssehub/runs",)),
    ("idempotency", ("ssehub/idempotency.py", "uuid")),
    ("metrics", ("ssehub/metrics.py", "prometheus_client/")),
    ("broker publish", ("ssehub/brokers/", "ssehub/hub.py")),
    ("event build", ("ssehub/event.py", "build_event", "ssehub/channels.py")),
    ("body parse + validation", ("pydantic", "request_body_to_args", "ModelField", "json/")),
    ("dependency solving", ("solve_dependencies", "ssehub/routes/deps.py")),
    ("route body", ("ssehub/routes/publish.py",)),
    ("ssehub middleware", ("ssehub/logs.py", "ssehub/bodylimit.py", "ssehub/routes/streams.py")),
    ("FastAPI/Starlette routing + middleware", ("fastapi/", "starlette/")),
    ("uvicorn protocol + httptools", ("uvicorn/", "ssehub/httpguard.py", "ssehub/fastpath.py")),
)


def samples(path: str) -> list[tuple[list[str], int]]:
    out = []
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if stack:
            out.append((stack.split(";"), int(count)))
    return out


def part_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, marks in PARTS:
            if any(mark in frame for mark in marks):
                return name
    return "event loop, other"


def parts(path: str) -> None:
    """Share of samples per part of the request."""
    counts: Counter[str] = Counter()
    for frames, n in samples(path):
        counts[part_of(frames)] += n
    total = sum(counts.values())
    print(f"{total} samples")
    for name, n in counts.most_common():
        print(f"{100 * n / total:5.1f}%  {name}")


def main(path: str, top: int = 25) -> None:
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    count = 0
    for stack, n in samples(path):
        count += n
        frames = [f.split(" (")[0] + " (" + f.rsplit("/", 1)[-1] for f in stack]
        own[frames[-1]] += n
        for frame in set(frames):
            total[frame] += n
    print(f"{count} samples\n-- self")
    for frame, n in own.most_common(top):
        print(f"{100 * n / count:5.1f}%  {frame}")
    print("-- total")
    for frame, n in total.most_common(top):
        print(f"{100 * n / count:5.1f}%  {frame}")


if __name__ == "__main__":
    if sys.argv[1] == "--parts":
        parts(sys.argv[2])
    else:
        main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 25)
