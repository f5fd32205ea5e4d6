"""Node packages of the test tree, installed once per lock file even when test workers race."""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from filelock import FileLock

STAMP = ".ssehub-lock-sha256"


@contextlib.contextmanager
def exclusive(path: Path, timeout: float = 900) -> Iterator[None]:
    """Hold a lock on ``path`` shared by every test process of this machine (xdist workers)."""
    key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    with FileLock(Path(tempfile.gettempdir()) / f"ssehub-tests-{key}.lock", timeout=timeout):
        yield


def require_node(needed_by: str) -> str:
    """The ``npm`` executable; skips loudly, naming what is not run, when Node or npm is missing."""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        pytest.skip(f"NO NODE: {needed_by} NOT run (needs node and npm: apt install nodejs npm)")
    return npm


def npm_packages(project: Path, *command: str, needed_by: str) -> Path:
    """Run ``npm <command>`` in ``project`` unless its package-lock.json is installed already.

    One process installs while the others wait; a stamp in node_modules names the installed
    lock file, so a changed lock file installs again. Returns the node_modules directory.
    """
    npm = require_node(needed_by)
    node_modules = project / "node_modules"
    digest = hashlib.sha256((project / "package-lock.json").read_bytes()).hexdigest()
    stamp = node_modules / STAMP
    with exclusive(project):
        if not stamp.is_file() or stamp.read_text() != digest:
            subprocess.run(
                [npm, *command, "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=project,
                check=True,
                timeout=600,
            )
            stamp.write_text(digest)
    return node_modules
