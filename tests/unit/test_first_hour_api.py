"""What a new user imports and configures: SDK exports, list settings, example stages."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import pytest

import ssehub
from harness import ROOT
from ssehub.settings import SettingsProblem, load_settings


def test_sdk_classes_import_from_the_package() -> None:
    from ssehub import AsyncPublisher, HubClient, Publisher, SSEClient, Subscriber

    assert Publisher.__module__ == "ssehub.sdk.publisher"
    assert AsyncPublisher.__module__ == "ssehub.sdk.publisher"
    assert Subscriber.__module__ == "ssehub.sdk.subscriber"
    assert HubClient.__module__ == "ssehub.sdk.agent"
    assert SSEClient.__module__ == "ssehub.sdk.client"


def test_all_is_sorted_and_every_name_resolves() -> None:
    assert ssehub.__all__ == sorted(ssehub.__all__)
    for name in ssehub.__all__:
        assert getattr(ssehub, name) is not None
    with pytest.raises(AttributeError):
        _ = ssehub.NoSuchThing  # type: ignore[attr-defined]
    assert importlib.import_module("ssehub").__version__


def test_all_names_every_sdk_export_and_each_comes_from_the_sdk() -> None:
    assert set(ssehub.__all__) == {*ssehub._EXPORTS, "__version__"}
    for name, module in ssehub._EXPORTS.items():
        assert getattr(ssehub, name).__module__ == f"ssehub.sdk.{module}"


SDK_MODULES = ["agent", "client", "parser", "publisher", "subscriber", "transport"]

# A fresh interpreter, so the old path is the first import of each module.
OLD_PATHS = """
import importlib, sys
for name in {names!r}:
    old = importlib.import_module("ssehub." + name)
    assert old is importlib.import_module("ssehub.sdk." + name), name
    assert getattr(sys.modules["ssehub"], name) is old, name
from ssehub.publisher import Publisher, openai_delta
from ssehub.client import Backoff, SSEClient
from ssehub.transport import HttpTransport, PublishFailed
from ssehub.agent import HubClient, StreamingAgent, streaming_task
import ssehub.sdk.publisher
assert Publisher is ssehub.sdk.publisher.Publisher
"""


def test_old_sdk_import_paths_are_the_sdk_modules() -> None:
    done = subprocess.run(
        [sys.executable, "-c", OLD_PATHS.format(names=SDK_MODULES)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def test_importing_ssehub_does_not_load_the_sdk() -> None:
    code = "import sys, ssehub; print(sorted(m for m in sys.modules if m.startswith('ssehub')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "['ssehub']", done.stderr


@pytest.mark.parametrize(
    "value", ["examples.stages", " examples.stages , other.mod", '["examples.stages"]']
)
def test_list_settings_take_json_or_commas(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSEHUB_STAGE_MODULES", value)
    assert load_settings(_env_file=None).stage_modules[0] == "examples.stages"


def test_a_malformed_json_list_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSEHUB_ANONYMOUS_SUBSCRIBE", '["a",')
    with pytest.raises(SettingsProblem, match=r"SSEHUB_ANONYMOUS_SUBSCRIBE=.*JSON list"):
        load_settings(_env_file=None)


LOAD_EXAMPLES = (
    "from ssehub.settings import load_settings; from ssehub.tasks import STAGES, load_modules; "
    "load_modules(load_settings().stage_modules); print(sorted(STAGES))"
)


@pytest.mark.parametrize("value", ["examples.stages", '["examples.stages"]'])
def test_example_stages_load_from_the_repository_root(value: str) -> None:
    # -P: no working directory on sys.path, as for the installed `ssehub` command.
    done = subprocess.run(
        [sys.executable, "-P", "-c", LOAD_EXAMPLES],
        cwd=ROOT,
        env={**os.environ, "SSEHUB_STAGE_MODULES": value},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "storyboard" in done.stdout and "image_generation" in done.stdout


def test_sdk_readers_load_none_of_the_hubs_modules() -> None:
    code = "import sys, ssehub.sdk.client, ssehub.sdk.subscriber; print(*sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    loaded = set(done.stdout.split())
    assert "ssehub.sdk.subscriber" in loaded
    assert not loaded & {"ssehub.hub", "ssehub.connection", "ssehub.runs", "ssehub.brokers"}
