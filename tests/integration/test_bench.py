"""The benchmark suite runs from a fresh clone: every scenario, two load generator processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

RUN = Path(__file__).resolve().parents[2] / "bench" / "run.py"


@pytest.mark.timeout(180)
@pytest.mark.slow
def test_every_scenario_runs_against_ssehub_with_zero_loss() -> None:
    command = [
        *(sys.executable, str(RUN), "--n", "120", "--targets", "ssehub", "--loadgen-procs", "2"),
        *("--seconds", "0.5", "--rates", "1000,2000", "--tokens", "50"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=170, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {r["scenario"]: r for r in map(json.loads, done.stdout.splitlines()[:6])}
    assert set(rows) == {
        *("hold", "broadcast", "many-channels", "token-stream", "reconnect-storm", "durable")
    }
    assert rows["hold"]["streams"] == 120 and rows["hold"]["failures"] == 0
    assert rows["broadcast"]["single_loss"] == 0
    assert all(rows[s]["loss"] == 0 for s in ("broadcast", "token-stream", "durable"))
    assert rows["durable"]["target"] == "ssehub-ds" and rows["durable"]["failed_appends"] == 0
    assert all(step["loss"] == 0 for step in rows["many-channels"]["steps"])
    assert rows["reconnect-storm"]["missed"] == 0
    assert all(r["duplicates"] == 0 for r in rows.values() if "duplicates" in r)
    assert all(r["loadgen_cpu_s"] > 0 for r in rows.values())  # measured in the children
