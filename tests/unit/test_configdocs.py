"""The configuration reference is generated from Settings and docs/operations.md carries it."""

from __future__ import annotations

import subprocess
import sys

from harness import ROOT
from ssehub import configdocs
from ssehub.settings import Settings


def test_reference_lists_every_setting_with_its_description() -> None:
    table = configdocs.reference()
    for name, field in Settings.model_fields.items():
        row = next(line for line in table.splitlines() if f"`SSEHUB_{name.upper()}`" in line)
        assert (field.description or "").replace("|", "\\|") in row
    assert "`str \\| None`" in table  # a union's bar must not split the Markdown row


def test_operations_doc_is_current() -> None:
    doc = (ROOT / "docs" / "operations.md").read_text()
    assert configdocs.splice(doc) == doc, (
        "docs/operations.md is stale: run `ssehub config-docs --write docs/operations.md`"
    )


def test_cli_prints_the_reference() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "ssehub.cli", "config-docs"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert out == configdocs.reference()
