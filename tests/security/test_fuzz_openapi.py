"""Schemathesis against the hub's own OpenAPI: every operation, no 500, no hang, documented answers.

The hub runs as a child process. Streams are read up to their first complete event (the
``connected`` frame) or 2 s, so a fuzzed stream request is checked like any other.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis import checks

from harness import HubProcess, start_hub_process
from ssehub.app import create_app
from ssehub.settings import Settings

schema = schemathesis.openapi.from_dict(create_app(Settings(_env_file=None)).openapi())  # type: ignore[call-arg]
schema.config.max_stream_events = 1

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


@pytest.fixture(scope="module")
def fuzzed_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    env = {
        "SSEHUB_OPEN_ACCESS": "true",
        "SSEHUB_HEARTBEAT_SECONDS": "0",
        "SSEHUB_DEMO_PACE_SECONDS": "0",
        "SSEHUB_DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/fuzz.db",
        "SSEHUB_MAX_CONNECTIONS_PER_USER": "1000",
    }
    hub = start_hub_process(tmp, env)
    yield hub
    assert hub.terminate() == 0, hub.log()


@schema.parametrize()
@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
@pytest.mark.slow
def test_every_operation_answers_as_documented(
    case: schemathesis.Case, fuzzed_hub: HubProcess
) -> None:
    case.call_and_validate(base_url=fuzzed_hub.url, checks=CHECKS, timeout=(3, 2))
