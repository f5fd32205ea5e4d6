"""Summarise a py-spy ``--format raw`` profile: the functions with most samples, self and total."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path


def main(path: str, top: int = 25) -> None:
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack:
            continue
        n = int(count)
        samples += n
        frames = [f.split(" (")[0] + " (" + f.rsplit("/", 1)[-1] for f in stack.split(";")]
        own[frames[-1]] += n
        for frame in set(frames):
            total[frame] += n
    print(f"{samples} samples\n-- self")
    for frame, n in own.most_common(top):
        print(f"{100 * n / samples:5.1f}%  {frame}")
    print("-- total")
    for frame, n in total.most_common(top):
        print(f"{100 * n / samples:5.1f}%  {frame}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 25)
