"""The npm packages of the protocol tests (pinned in tests/e2e/protocols) and the pages built
from them: installed on first use with ``npm ci``, bundled by esbuild only when a source changed
(one test process builds while the others wait)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path

from playwright.async_api import Page, Request, Route

from npm_support import exclusive, npm_packages

PACKAGES = Path(__file__).resolve().parent / "e2e" / "protocols"
NODE_MODULES = PACKAGES / "node_modules"
DIST = PACKAGES / "dist"


def ensure_packages() -> Path:
    """``npm ci`` into tests/e2e/protocols unless the lock file's packages are there already."""
    return npm_packages(PACKAGES, "ci", needed_by="the protocol tests")


def build_page(source: str) -> Path:
    """Bundle ``source`` (a file in tests/e2e/protocols) for the browser; cached by mtime."""
    ensure_packages()
    entry = PACKAGES / source
    out = DIST / (entry.stem + ".js")
    with exclusive(out):
        if out.is_file() and out.stat().st_mtime >= max(
            entry.stat().st_mtime, (PACKAGES / "package-lock.json").stat().st_mtime
        ):
            return out
        subprocess.run(
            [
                str(NODE_MODULES / ".bin" / "esbuild"),
                str(entry),
                "--bundle",
                "--format=esm",
                "--minify",
                "--jsx=automatic",
                "--define:process.env.NODE_ENV='production'",
                f"--outfile={out}",
                "--log-level=warning",
            ],
            check=True,
            timeout=120,
        )
    return out


async def serve_page(page: Page, base: str, bundle: Path, path: str = "/test-app") -> str:
    """Serve ``bundle`` at ``base + path`` (same origin as the hub) and return that URL."""
    html = (
        '<!doctype html><meta charset="utf-8"><div id="root"></div>'
        f'<script type="module" src="{path}.js"></script>'
    )
    script = await asyncio.to_thread(bundle.read_bytes)

    async def fulfil(route: Route, request: Request) -> None:
        if request.url.split("?")[0].endswith(".js"):
            await route.fulfill(body=script, content_type="text/javascript")
        else:
            await route.fulfill(body=html, content_type="text/html")

    await page.route(f"{base}{path}*", fulfil)
    return f"{base}{path}"


def run_node(script: str, env: dict[str, str], timeout: float = 90) -> dict[str, object]:
    """Run a Node script of tests/e2e/protocols; its last stdout line is its JSON result."""
    ensure_packages()
    done = subprocess.run(
        ["node", str(PACKAGES / script)],
        cwd=PACKAGES,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"{script} failed:\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]
