"""Every command in README.md and docs/*.md runs in a test, as a reader would copy it.

Commands are the lines of ```sh blocks (a trailing ``\\`` continues a line, ``  # ...`` is a
comment, as is a line that starts with ``#``). ``COMMANDS`` says which test below runs each
one; a documented command no pattern covers fails ``test_every_documented_command_is_run``.
Addresses are adapted the way the README tells a reader on another port to adapt them:
another port, and ``--url`` for ``ssehub``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import jwt
import pytest

from harness import ROOT, free_port, running_hub
from npm_support import npm_packages
from redis_support import shared_redis_url
from ssehub.settings import Settings
from tokens import SECRET

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BIN = Path(sys.executable).parent
NODE_PROJECT = ROOT / "tests" / "docs"

# Documented command (regex) -> the test that runs it.
COMMANDS = {
    r"make run": "test_readme_quick_start",
    r"curl -N http://127\.0\.0\.1:8000/api/v1/sse/stream/demo": "test_readme_quick_start",
    r"\.venv/bin/ssehub publish demo --event task\.progress --data .*": "test_readme_quick_start",
    r"make test": "none: it runs this suite (`.ci/run` runs it on every submission)",
    r"SSEHUB_BROKER_URL=redis://127\.0\.0\.1:6379/0 \.venv/bin/ssehub serve --port 800[12] &": (
        "test_redis_multi_process_commands"
    ),
    r"curl -N localhost:8001/.*": "test_redis_multi_process_commands",
    r"curl -X POST localhost:8002/.*": "test_redis_multi_process_commands",
    r"make bench.*": "test_benchmark_commands_parse",
    r"\.venv/bin/python bench/\w+\.py .*": "test_benchmark_commands_parse",
    r"mkdir -p deploy/tls && openssl req .*": "test_deploy_commands",
    r"export SSEHUB_JWT_SECRET=\$\(openssl rand -hex 32\)": "test_deploy_commands",
    r"ssehub serve --port 8000 &": "test_durable_streams_walkthrough",
    r"B=http://127\.0\.0\.1:8000/ds": "test_durable_streams_walkthrough",
    r"curl .*\$B/.*": "test_durable_streams_walkthrough",
    r"docker compose -f deploy/compose\.yaml up --build -d": (
        "none: needs a Docker engine; tests/integration/test_compose.py validates the file"
    ),
}


def fenced_blocks(path: Path) -> list[tuple[str, str]]:
    """(language, text) of every fenced block of a Markdown file."""
    blocks, language, lines = [], None, []
    for line in path.read_text().splitlines():
        fence = re.match(r"\s*```(\S*)", line)
        if fence and language is None:
            language, lines = fence.group(1), []
        elif fence:
            blocks.append((language, "\n".join(lines)))
            language = None
        elif language is not None:
            lines.append(line.strip())
    return blocks


def shell_commands(path: Path) -> list[str]:
    """The commands of a file's ```sh blocks, continuations joined, comments dropped."""
    commands = []
    for language, text in fenced_blocks(path):
        if language != "sh":
            continue
        for command in re.sub(r"\\\n\s*", " ", text).splitlines():
            command = re.split(r"\s{2,}# ", command)[0].strip()
            if command and not command.startswith("#"):
                commands.append(command)
    return commands


def documented(pattern: str) -> list[str]:
    """Every documented command matching ``pattern``, from all files."""
    found = [c for doc in DOCS for c in shell_commands(doc) if re.fullmatch(pattern, c)]
    assert found, f"no documented command matches {pattern}"
    return found


def test_every_fence_names_its_language() -> None:
    for doc in DOCS:
        for language, text in fenced_blocks(doc):
            assert language, f"{doc.name}: a fenced block without a language: {text[:60]!r}"


def test_every_documented_command_is_run() -> None:
    for doc in DOCS:
        for command in shell_commands(doc):
            runners = [p for p in COMMANDS if re.fullmatch(p, command)]
            assert len(runners) == 1, f"{doc.name}: no test runs {command!r}"


def shell(command: str, **kwargs: object) -> subprocess.Popen[str]:
    """``command`` in bash from the repository root, its venv first on PATH, own process group."""
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", **kwargs.pop("env", {})}  # type: ignore[dict-item]
    return subprocess.Popen(
        ["bash", "-c", command],
        cwd=kwargs.pop("cwd", ROOT),  # type: ignore[arg-type]
        env=env,
        stdout=subprocess.PIPE,
        stderr=kwargs.pop("stderr", subprocess.STDOUT),  # type: ignore[arg-type]
        text=True,
        start_new_session=True,
    )


class Lines:
    """A background process's output lines, read as they come, waited on with a timeout."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.seen: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        assert process.stdout is not None
        stream = process.stdout
        threading.Thread(target=lambda: [self._queue.put(x) for x in stream], daemon=True).start()

    def wait_for(self, predicate: object, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.2).rstrip("\n")
            except queue.Empty:
                continue
            self.seen.append(line)
            if predicate(line):  # type: ignore[operator]
                return line
        raise AssertionError(f"not seen in {timeout} s; output so far:\n" + "\n".join(self.seen))


@contextmanager
def background(command: str, **kwargs: object) -> Iterator[Lines]:
    process = shell(command, **kwargs)
    try:
        yield Lines(process)
    finally:
        with_group = os.getpgid(process.pid)
        os.killpg(with_group, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(with_group, signal.SIGKILL)
            process.wait(10)


def run(command: str, **kwargs: object) -> str:
    process = shell(command, **kwargs)
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 0, f"{command!r} failed:\n{out}"
    return out


def sample_output() -> list[str]:
    """The README's sample curl output (the ```text block after the publish command)."""
    blocks = fenced_blocks(ROOT / "README.md")
    return next(text for language, text in blocks if "event: task.progress" in text).splitlines()


@pytest.mark.slow
def test_readme_quick_start() -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    (make_run,) = documented(r"make run")
    with background(f"{make_run} PORT={port}") as hub:
        hub.wait_for(lambda line: f"ready: demo page at {base}/" in line, timeout=300)
        assert "demo" in httpx.get(f"{base}/", timeout=10).text
        (curl,) = documented(r"curl -N http://127\.0\.0\.1:8000/api/v1/sse/stream/demo")
        adapted = curl.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
        with background(adapted, stderr=subprocess.DEVNULL) as stream:
            stream.wait_for(lambda line: line == "event: connected")
            (publish,) = documented(r"\.venv/bin/ssehub publish demo .*")
            published = run(f"{publish} --url {base}")  # the README's note for another port
            event_id = httpx.Response(200, content=published).json()["id"]
            stream.wait_for(lambda line: line == f"id: {event_id}")
    got = [line for line in stream.seen if line]
    expected = [line for line in sample_output() if line]
    # Same fields in the same order; ids and client ids differ per run.
    assert [line.split(":")[0] for line in got] == [line.split(":")[0] for line in expected]
    assert got[0] == expected[0] and got[1] == expected[1]  # event: connected, retry:
    assert got[-3:-1] == expected[-3:-1]  # the published event's type and data
    assert got[-1] == f"id: {event_id}"


def test_redis_multi_process_commands() -> None:
    redis = shared_redis_url()
    ports = {"8001": str(free_port()), "8002": str(free_port())}

    def adapt(command: str) -> str:
        command = command.replace("redis://127.0.0.1:6379/0", redis).rstrip("& ")
        for documented_port, port in ports.items():
            command = command.replace(documented_port, port)
        return command

    env = {"SSEHUB_REDIS_PREFIX": f"doc-{uuid.uuid4().hex[:8]}:"}
    serve = sorted(set(documented(r"SSEHUB_BROKER_URL=.* serve --port 800[12] &")))
    with background(adapt(serve[0]), env=env) as first, background(adapt(serve[1]), env=env):
        first.wait_for(lambda line: "ready on" in line)
        for port in ports.values():
            wait_healthy(f"http://127.0.0.1:{port}")
        assert any("broker: " in line and "key prefix" in line for line in first.seen)
        (curl,) = set(documented(r"curl -N localhost:8001/.*"))
        with background(adapt(curl), stderr=subprocess.DEVNULL) as stream:
            stream.wait_for(lambda line: line == "event: connected")
            (post,) = set(documented(r"curl -X POST localhost:8002/.*"))
            answer = run(adapt(post), stderr=subprocess.DEVNULL)
            assert '"id"' in answer, answer
            stream.wait_for(lambda line: line == "event: token")
            stream.wait_for(lambda line: line == 'data: {"content":"Hi"}')


def wait_healthy(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not become healthy")


def test_benchmark_commands_parse() -> None:
    """Benchmarks take minutes (test_bench.py runs them small): check each command's options."""
    helps: dict[str, str] = {}
    for command in documented(r"make bench.*") + documented(r"\.venv/bin/python bench/\w+\.py .*"):
        script = re.search(r"bench/\w+\.py", command)
        path = script.group(0) if script else "bench/run.py"
        options = re.findall(r"(?<![\w-])--[a-z][\w-]*", command.split(path)[-1])
        if not options:  # positional arguments only (a profile file made by the command before)
            run(f"python -m py_compile {path}")
            continue
        if path not in helps:
            helps[path] = run(f"python {path} --help")
        for option in options:
            assert option in helps[path], f"{command!r}: {path} has no {option}"
        for pattern in re.findall(r"\S*\*\S*\.json", command):
            assert list(ROOT.glob(pattern)), f"{command!r}: nothing matches {pattern}"
    assert "bench/run.py" in run("make -n bench")


def test_deploy_commands(tmp_path: Path) -> None:
    if not shutil.which("openssl"):
        pytest.skip("NO OPENSSL: the certificate commands of docs/deploy.md were NOT run")
    (certificate,) = documented(r"mkdir -p deploy/tls && openssl req .*")
    run(certificate, cwd=tmp_path)
    assert (tmp_path / "deploy/tls/fullchain.pem").read_text().startswith("-----BEGIN CERT")
    assert "PRIVATE KEY" in (tmp_path / "deploy/tls/privkey.pem").read_text()
    (secret,) = documented(r"export SSEHUB_JWT_SECRET=.*")
    printed = run(f'{secret} && echo "$SSEHUB_JWT_SECRET"').strip()
    assert re.fullmatch(r"[0-9a-f]{64}", printed)


def doc_block(name: str, language: str) -> str:
    (text,) = [t for lang, t in fenced_blocks(ROOT / "docs" / name) if lang == language]
    return text


@pytest.fixture(scope="module")
def node_project() -> Path:
    """tests/docs with its locked npm packages installed (npm ci), for the Node examples."""
    npm_packages(NODE_PROJECT, "ci", needed_by="the Node example of docs/tokens.md")
    return NODE_PROJECT


def test_token_examples_mint_tokens_the_hub_accepts(tmp_path: Path, node_project: Path) -> None:
    env = {**os.environ, "SSEHUB_JWT_SECRET": SECRET}
    python = subprocess.run(
        [sys.executable, "-c", doc_block("tokens.md", "python")],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    script = node_project / f"mint-{uuid.uuid4().hex[:8]}.mjs"
    script.write_text(doc_block("tokens.md", "js"))
    try:
        node = subprocess.run(
            ["node", str(script)], env=env, capture_output=True, text=True, timeout=60, check=True
        )
    finally:
        script.unlink()
    asyncio.run(check_tokens([python.stdout.strip(), node.stdout.strip()]))


async def check_tokens(tokens: list[str]) -> None:
    """Each token streams its user's channel and publishes to project 1 only."""
    async with running_hub(Settings(_env_file=None, jwt_secret=SECRET)) as hub:  # type: ignore[call-arg]
        for token in tokens:
            claims = jwt.decode(token, SECRET, algorithms=["HS256"])
            assert claims["sub"] == "alice" and claims["exp"] - claims["iat"] == 900
            auth = {"Authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(base_url=hub.url, headers=auth, timeout=10) as client:
                async with client.stream("GET", "/api/v1/sse/stream/user:alice:inbox") as stream:
                    assert stream.status_code == 200
                sent = await client.post("/api/v1/publish/project:1:a", json={"data": 1})
                assert sent.is_success
                denied = await client.post("/api/v1/publish/project:2:a", json={"data": 1})
                assert denied.status_code == 403


def test_cli_synopsis_matches_the_cli() -> None:
    """The README's CLI synopsis: every command and option it shows exists."""
    (synopsis,) = [t for lang, t in fenced_blocks(ROOT / "README.md") if "ssehub serve [" in t]
    for line in synopsis.splitlines():
        words = line.split()
        if words[1].startswith("--"):
            assert run(f"ssehub {words[1]}").startswith("ssehub ")
            continue
        command = [w for w in words[1:3] if re.fullmatch(r"[a-z][a-z-]*", w)]
        help_text = run(f"COLUMNS=200 ssehub {' '.join(command)} --help")
        for option in re.findall(r"--[a-z][\w-]*", line):
            assert option in help_text, f"{line!r}: no {option}"


@pytest.mark.slow
def test_durable_streams_walkthrough(tmp_path: Path) -> None:
    """docs/durable-streams.md's curl walk-through, line by line, against ``ssehub serve``."""
    port = free_port()
    (serve,) = documented(r"ssehub serve --port 8000 &")
    env = {
        "SSEHUB_OPEN_ACCESS": "true",
        "SSEHUB_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'ds.db'}",
    }
    with background(serve.rstrip("& ").replace("8000", str(port)), env=env):
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            assert time.monotonic() < deadline, "the hub did not start"
            time.sleep(0.1)
        (define,) = documented(r"B=http://127\.0\.0\.1:8000/ds")
        prelude = define.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
        outputs = {}
        for curl in documented(r"curl .*\$B/.*"):
            live = "live=sse" in curl  # an SSE read never ends by itself
            command = curl.replace("curl ", "curl -sS --max-time 3 ", 1) if live else curl
            process = shell(f"{prelude}; {command}", stderr=subprocess.DEVNULL)
            out, _ = process.communicate(timeout=60)
            assert process.returncode == (28 if live else 0), f"{command!r}:\n{out}"
            if not live:
                status = out.split("\n", 1)[0]
                assert re.match(r"HTTP/1\.1 2\d\d", status), f"{command!r}: {status}"
            outputs[curl] = out
    catch_up = next(out for curl, out in outputs.items() if 'offset=-1"' in curl)
    assert '[{"role":"user","text":"hi"},{"t":"Hel"},{"t":"lo"}]' in catch_up
    sse = next(out for curl, out in outputs.items() if "live=sse" in curl)
    assert "event: data" in sse and "event: control" in sse
