"""A new user's first hour: the CLI and the hub's start-up say what went wrong in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from harness import free_port, start_hub_process
from ssehub import __version__
from ssehub.cli import app
from tokens import SECRET, hs256

runner = CliRunner()
CLI = [sys.executable, "-m", "ssehub.cli"]


def one_line_error(result: object) -> str:
    """The single ``error:`` line a failed command printed (no traceback)."""
    output = result.output  # type: ignore[attr-defined]
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    return lines[0]


def test_version_and_serve_help_show_defaults_and_word_metavars() -> None:
    assert runner.invoke(app, ["--version"]).output.strip() == f"ssehub {__version__}"
    help_text = runner.invoke(app, ["serve", "--help"], terminal_width=200).output
    assert "127.0.0.1" in help_text and "8000" in help_text
    assert "<str>" not in help_text and "<int>" not in help_text
    assert "ADDRESS" in help_text and "PORT" in help_text


def test_publish_to_a_hub_that_is_not_running_prints_one_line() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = runner.invoke(app, ["publish", "demo", "--data", "{}", "--url", url])
    line = one_line_error(result)
    assert result.exit_code == 1
    assert url in line and "--url" in line and "SSEHUB_URL" in line


def test_publish_refuses_invalid_json_and_sends_text_on_request() -> None:
    result = runner.invoke(app, ["publish", "demo", "--data", '{"a":'])
    assert result.exit_code == 2
    assert "--text" in one_line_error(result)
    url = f"http://127.0.0.1:{free_port()}"
    both = runner.invoke(app, ["publish", "demo", "--data", "1", "--text", "x", "--url", url])
    assert both.exit_code == 2


def test_token_validates_sub_and_ttl_as_the_hub_does() -> None:
    env = {"SSEHUB_JWT_SECRET": SECRET}
    bad_sub = runner.invoke(app, ["token", "--sub", "bad sub!"], env=env)
    assert bad_sub.exit_code == 2 and "A-Z a-z 0-9" in bad_sub.output
    no_unit = runner.invoke(app, ["token", "--sub", "alice", "--ttl", "1"], env=env)
    assert no_unit.exit_code == 2 and "unit" in no_unit.output
    ok = runner.invoke(app, ["token", "--sub", "alice", "--ttl", "90s"], env=env)
    assert ok.exit_code == 0 and ok.output.count(".") == 2


@pytest.mark.parametrize(
    ("name", "value"),
    [("SSEHUB_PORT", "eighty"), ("SSEHUB_LOG_FORMAT", "xml"), ("SSEHUB_CORS_ORIGINS", "[")],
)
def test_malformed_setting_prints_one_line_naming_it(name: str, value: str) -> None:
    result = runner.invoke(app, ["serve"], env={name: value})
    assert result.exit_code == 2
    line = one_line_error(result)
    assert name in line and repr(value) in line and "is invalid" in line


def test_serve_refuses_auth_off_on_a_public_address(tmp_path: Path) -> None:
    env = {"SSEHUB_JWT_SECRET": "", "SSEHUB_OPEN_ACCESS": "false"}
    result = runner.invoke(app, ["serve", "--host", "0.0.0.0"], env=env)
    assert result.exit_code == 2
    line = one_line_error(result)
    assert "0.0.0.0" in line and "SSEHUB_OPEN_ACCESS=true" in line
    demo = runner.invoke(app, ["serve", "--demo", "--host", "::"], env={**env, "SSEHUB_DEMO": ""})
    assert demo.exit_code == 2 and "demo mode" in demo.output


@pytest.mark.slow
def test_hub_logs_its_broker_and_the_demo_page_at_start(tmp_path: Path) -> None:
    hub = start_hub_process(tmp_path, {"SSEHUB_JWT_SECRET": SECRET}, args=["--demo"])
    try:
        httpx.get(f"{hub.url}/healthz", timeout=5)
        log = hub.log()
        assert "broker: memory://" in log
        assert f"ready: demo page at {hub.url}/" in log
    finally:
        hub.terminate()


@pytest.mark.slow
def test_unreachable_redis_at_start_is_a_warning_without_the_password(tmp_path: Path) -> None:
    dead = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    env = {"SSEHUB_BROKER_URL": dead, "SSEHUB_REDIS_PREFIX": "fh:"}
    hub = start_hub_process(tmp_path, env)
    try:
        log = hub.log()
        warning = next(line for line in log.splitlines() if "unreachable at start" in line)
        assert " WARNING " in warning and "'fh:'" in warning
        assert ":***@127.0.0.1" in warning and "hunter2" not in log
    finally:
        hub.terminate()


@pytest.mark.slow
def test_listen_explains_refusals_and_retries(tmp_path: Path) -> None:
    hub = start_hub_process(tmp_path, {"SSEHUB_JWT_SECRET": SECRET})
    env = {**os.environ, "SSEHUB_URL": hub.url}
    try:
        for args, status in ((["demo"], "401"), (["bad channel!"], "400")):
            if status == "400":
                env["SSEHUB_TOKEN"] = hs256("alice", subscribe=["*"])
            done = subprocess.run(
                [*CLI, "listen", *args], env=env, capture_output=True, text=True, timeout=30
            )
            lines = done.stderr.strip().splitlines()
            assert done.returncode == 1 and len(lines) == 1, done.stderr
            assert lines[0].startswith("error: ") and f"HTTP {status}" in lines[0]
            assert hub.url in lines[0]
    finally:
        hub.terminate()
    # Nothing listens there now: listen says so, with the URL, each time it retries.
    with subprocess.Popen(
        [*CLI, "listen", "demo", "--url", hub.url], stderr=subprocess.PIPE, text=True
    ) as listen:
        assert listen.stderr is not None
        first = listen.stderr.readline()
        listen.kill()
    assert hub.url in first and "retrying in" in first and "--url" in first
