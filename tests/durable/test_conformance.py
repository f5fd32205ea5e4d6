"""The official Durable Streams server conformance suite against a live hub, on both stores.

``@durable-streams/server-conformance-tests`` (pinned in js/package.json) runs under vitest
against ``ssehub serve``: once on the embedded store (SQLite, memory broker), once on the shared
store (PostgreSQL, Redis broker). Readers and writers on different processes are covered by
test_processes.py.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from ds_support import JS_DIR, MOUNT, hub_env, node_modules, shared_store_env, sqlite_hub

from harness import start_hub_process

# Opt-in parts of the suite (its `subscriptions` option): webhook and pull-wake subscriptions,
# which this hub does not serve. Every other test must pass.
OPT_IN = "Reserved subscription APIs"
SUITE_TESTS = 338

pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]


def run_suite(base_url: str, tmp_path: Path) -> None:
    """Run the suite; fail with the names and messages of failing tests."""
    node_modules()
    report = tmp_path / "conformance.json"
    env = {
        **os.environ,
        "CONFORMANCE_TEST_URL": base_url + MOUNT,
        "CONFORMANCE_LONG_POLL_MS": "2000",
    }
    done = subprocess.run(
        ["node", "node_modules/vitest/vitest.mjs", "run", "--reporter=json",
         f"--outputFile={report}"],
        cwd=JS_DIR, env=env, capture_output=True, text=True, timeout=800,
    )  # fmt: skip
    assert report.exists(), f"vitest wrote no report:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    results = [
        test
        for file in json.loads(report.read_text())["testResults"]
        for test in file["assertionResults"]
    ]
    failed = {t["fullName"]: t["failureMessages"][:1] for t in results if t["status"] == "failed"}
    skipped = [t["fullName"] for t in results if t["status"] in ("skipped", "pending", "todo")]
    assert not failed, json.dumps(failed, indent=1)[:6000]
    assert all(name.startswith(OPT_IN) for name in skipped), skipped
    assert len(results) == SUITE_TESTS
    assert sum(t["status"] == "passed" for t in results) == SUITE_TESTS - len(skipped)


def test_conformance_on_the_embedded_store(tmp_path: Path) -> None:
    with sqlite_hub(tmp_path) as hub:
        run_suite(hub.url, tmp_path)


@pytest.mark.redis
def test_conformance_on_the_shared_store(tmp_path: Path) -> None:
    with shared_store_env() as shared:
        hub = start_hub_process(tmp_path, hub_env(**shared), start_timeout=60)
        try:
            run_suite(hub.url, tmp_path)
        finally:
            hub.kill()
