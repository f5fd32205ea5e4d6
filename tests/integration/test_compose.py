"""deploy/compose.yaml and the Dockerfile, checked without a Docker engine.

No engine runs here, so the compose file is validated by `docker-compose config` (the Compose
tool reads, validates and interpolates it without a daemon) when that tool is installed, and its
wiring to deploy/nginx.conf and the Dockerfile is checked by reading the files.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import ROOT
from ssehub.cliutil import open_access_refusal
from ssehub.settings import Settings

DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"


def compose_file() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def compose_tool() -> list[str] | None:
    """`docker-compose`, or `docker compose` when the plugin is there; None when neither is."""
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    return None


def test_compose_config_validates_and_requires_a_secret() -> None:
    tool = compose_tool()
    if tool is None:
        pytest.skip(
            "NO COMPOSE TOOL: `apt-get install docker-compose` to validate deploy/compose.yaml"
        )
    env = {k: v for k, v in os.environ.items() if k != "SSEHUB_JWT_SECRET"}
    ok = subprocess.run(
        [*tool, "-f", str(COMPOSE), "config"],
        env={**env, "SSEHUB_JWT_SECRET": "a-long-random-secret"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    resolved = yaml.safe_load(ok.stdout)
    assert set(resolved["services"]) == {"nginx", "hub-1", "hub-2", "redis"}
    missing = subprocess.run(
        [*tool, "-f", str(COMPOSE), "config"], env=env, capture_output=True, text=True, timeout=60
    )
    assert missing.returncode != 0 and "SSEHUB_JWT_SECRET" in missing.stderr


def test_compose_wires_the_hubs_to_the_tested_nginx_config() -> None:
    services = compose_file()["services"]
    nginx_conf = (DEPLOY / "nginx.conf").read_text()
    upstream_ports = re.findall(r"server 127\.0\.0\.1:(\d+)", nginx_conf)
    hubs = {name: s for name, s in services.items() if name.startswith("hub")}
    assert sorted(h["environment"]["SSEHUB_PORT"] for h in hubs.values()) == upstream_ports
    for hub in hubs.values():
        env = hub["environment"]
        assert hub["network_mode"] == "service:nginx" and env["SSEHUB_HOST"] == "127.0.0.1"
        assert env["SSEHUB_BROKER_URL"] == "redis://redis:6379/0"
        assert env["SSEHUB_JWT_SECRET"].startswith("${SSEHUB_JWT_SECRET:?")
        assert (DEPLOY / hub["build"]["context"] / hub["build"]["dockerfile"]).is_file()
    mounts = services["nginx"]["volumes"]
    assert "./nginx.conf:/etc/nginx/conf.d/default.conf:ro" in mounts
    assert "./tls:/etc/nginx/tls:ro" in mounts
    for path in re.findall(r"ssl_certificate(?:_key)?\s+(\S+);", nginx_conf):
        assert path.startswith("/etc/nginx/tls/")
    assert services["redis"]["healthcheck"]["test"][-1] == "ping"


def dockerfile_env() -> dict[str, str]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    block = re.search(r"^ENV (.+)$", text, re.MULTILINE)
    assert block is not None
    return dict(re.findall(r"(\w+)=(\S+)", block.group(1)))


def test_the_image_refuses_to_serve_open_unless_told() -> None:
    env = dockerfile_env()
    assert env["SSEHUB_HOST"] == "0.0.0.0"
    settings = Settings(_env_file=None, host=env["SSEHUB_HOST"])  # type: ignore[call-arg]
    assert open_access_refusal(settings, env["SSEHUB_HOST"]) is not None
    keyed = settings.model_copy(update={"jwt_secret": "secret"})
    assert open_access_refusal(keyed, env["SSEHUB_HOST"]) is None
    opened = settings.model_copy(update={"open_access": True})
    assert open_access_refusal(opened, env["SSEHUB_HOST"]) is None


def test_the_image_health_check_follows_its_port() -> None:
    check = next(
        line for line in (ROOT / "Dockerfile").read_text().splitlines() if "readyz" in line
    )
    assert "SSEHUB_PORT" in check and "8000" not in check
    assert Path(ROOT / ".dockerignore").is_file()
