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
        *("--seconds", "0.5", "--rates", "1000,2000", "--tokens", "50", "--settle", "0"),
        *("--answers", "3", "--ai-messages", "10"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=170, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {r["scenario"]: r for r in map(json.loads, done.stdout.splitlines()[:7])}
    assert set(rows) == {
        *("hold", "broadcast", "many-channels", "token-stream", "reconnect-storm", "durable"),
        "ai-answers",
    }
    assert rows["hold"]["streams"] == 120 and rows["hold"]["failures"] == 0
    assert rows["broadcast"]["single_loss"] == 0
    assert all(rows[s]["loss"] == 0 for s in ("broadcast", "token-stream", "durable"))
    assert rows["durable"]["target"] == "ssehub-ds" and rows["durable"]["failed_appends"] == 0
    assert all(step["loss"] == 0 for step in rows["many-channels"]["steps"])
    assert rows["reconnect-storm"]["missed"] == 0
    answers = rows["ai-answers"]["steps"][0]
    assert answers["messages"] == 30 and answers["publish_errors"] == 0  # 3 answers x 10
    assert rows["ai-answers"]["loss"] == 0
    assert rows["ai-answers"]["publisher_cpu_us_per_message"] > 0  # the SDK's, start-up excluded
    assert rows["ai-answers"]["hub_cpu_us_per_message"] > 0
    assert all(r["duplicates"] == 0 for r in rows.values() if "duplicates" in r)
    assert all(r["loadgen_cpu_s"] > 0 for r in rows.values())  # measured in the children


@pytest.mark.timeout(120)
def test_publish_cpu_counts_every_publish_once() -> None:
    command = [
        sys.executable,
        str(RUN.with_name("publish_cpu.py")),
        "--targets",
        "floor,ssehub-jwt",
    ]
    command += ["--count", "300", "--warmup", "50", "--connections", "8"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=110, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {r["target"]: r for r in map(json.loads, done.stdout.splitlines()[:2])}
    assert rows["floor"]["publishes"] == rows["ssehub-jwt"]["publishes"] == 300
    assert rows["ssehub-jwt"]["refused"] == rows["ssehub-jwt"]["duplicate_ids"] == 0
    assert rows["ssehub-jwt"]["cpu_us_per_publish"] > 0
