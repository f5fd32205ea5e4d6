"""Plot broadcast latency against subscribers from saved results (``bench/results/*.json``).

python bench/plot.py bench/results/*.json -o docs/performance-latency.png
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def points(paths: list[Path], key: str) -> dict[str, list[tuple[int, float]]]:
    """``target -> [(subscribers, value)]`` from the broadcast rows of the files (last wins)."""
    found: dict[str, dict[int, float]] = defaultdict(dict)
    for path in sorted(paths):
        for row in json.loads(path.read_text())["results"]:
            if row["scenario"] == "broadcast" and row.get(key) is not None:
                found[row["target"]][row["streams"]] = row[key]
    return {t: sorted(v.items()) for t, v in found.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("-o", "--output", type=Path, default=Path("docs/performance-latency.png"))
    args = parser.parse_args()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    titles = {
        "single_p99_ms": "one broadcast to all: p99 (ms)",
        "p99_ms": "sustained broadcast: p99 (ms)",
    }
    for ax, (key, title) in zip(axes, titles.items(), strict=True):
        for target, series in points(args.files, key).items():
            xs, ys = zip(*series, strict=True)
            ax.plot(xs, ys, marker="o", label=target)
        ax.set_xlabel("subscribers of the channel")
        ax.set_ylabel("ms")
        ax.set_yscale("log")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.output, dpi=110)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
