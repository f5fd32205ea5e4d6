"""A serving hub's first migration loads no library: importing one runs on the event loop."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROBE = """
import asyncio, sys
import ssehub.app
from ssehub.store.database import Store

async def main():
    store = Store("sqlite+aiosqlite:///{db}")
    await store.start()
    before = set(sys.modules)
    await store.migrate()
    await store.close()
    new = sorted(name for name in set(sys.modules) - before if not name.startswith("_"))
    print(" ".join(new))

asyncio.run(main())
"""


def test_first_migration_imports_nothing(tmp_path: Path) -> None:
    probe = PROBE.format(db=tmp_path / "store.db")
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = [name for name in done.stdout.split() if not name.startswith("ssehub")]
    assert loaded == [], f"loaded while migrating: {loaded[:10]}"
