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

    assert Publisher.__module__ == "ssehub.publisher"
    assert AsyncPublisher.__module__ == "ssehub.publisher"
    assert Subscriber.__module__ == "ssehub.subscriber"
    assert HubClient.__module__ == "ssehub.agent"
    assert SSEClient.__module__ == "ssehub.client"


def test_all_is_sorted_and_every_name_resolves() -> None:
    assert ssehub.__all__ == sorted(ssehub.__all__)
    for name in ssehub.__all__:
        assert getattr(ssehub, name) is not None
    with pytest.raises(AttributeError):
        _ = ssehub.NoSuchThing  # type: ignore[attr-defined]
    assert importlib.import_module("ssehub").__version__


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
