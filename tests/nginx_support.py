"""Debian's nginx for tests: deploy/nginx.conf run as our own child on a loopback port."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from harness import ROOT, free_port

NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
)
requires_nginx = pytest.mark.skipif(
    NGINX is None,
    reason="NGINX IS NOT INSTALLED: deploy/nginx.conf was NOT tested "
    "(`make test` installs Debian's nginx when run as root; else `apt-get install -y nginx`)",
)


def self_signed(prefix: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files (fullchain.pem, privkey.pem)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    chain, private = prefix / "fullchain.pem", prefix / "privkey.pem"
    chain.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return chain, private


def nginx_config(
    prefix: Path, port: int, hub_ports: list[int], tls_port: int | None = None
) -> Path:
    """A main config for ``prefix`` that includes deploy/nginx.conf with our ports.

    HTTPS listens on ``tls_port`` (a free port when None) with a self-signed certificate
    (``prefix/fullchain.pem``, which clients can trust).
    """
    site = (ROOT / "deploy" / "nginx.conf").read_text()
    for needed in ("127.0.0.1:8001", "127.0.0.1:8002", "listen 80;", "listen 443 ssl;"):
        assert needed in site, needed
    site = site.replace("127.0.0.1:8001", f"127.0.0.1:{hub_ports[0]}")
    site = site.replace("127.0.0.1:8002", f"127.0.0.1:{hub_ports[1]}")
    site = site.replace("listen 80;", f"listen 127.0.0.1:{port};")
    site = site.replace("listen 443 ssl;", f"listen 127.0.0.1:{tls_port or free_port()} ssl;")
    chain, private = self_signed(prefix)
    site = site.replace("/etc/nginx/tls/fullchain.pem", str(chain))
    site = site.replace("/etc/nginx/tls/privkey.pem", str(private))
    (prefix / "ssehub.conf").write_text(site)
    temp = "\n".join(
        f"    {kind}_temp_path {prefix}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    main = f"""
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
{"user root;" if os.geteuid() == 0 else ""}
events {{ worker_connections 256; }}
http {{
    access_log off;
{temp}
    include {prefix}/ssehub.conf;
}}
"""
    path = prefix / "nginx.conf"
    path.write_text(main)
    return path


def start_nginx(prefix: Path, config: Path, port: int) -> subprocess.Popen[bytes]:
    assert NGINX is not None
    args = [NGINX, "-p", str(prefix), "-c", str(config), "-e", str(prefix / "error.log")]
    check = subprocess.run([*args, "-t"], capture_output=True, timeout=20)
    assert check.returncode == 0, check.stderr.decode()
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 15
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited: {process.stderr.read().decode()}")  # type: ignore[union-attr]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise TimeoutError("nginx did not start")
        time.sleep(0.05)


@contextlib.contextmanager
def running_nginx(prefix: Path, port: int, hub_ports: list[int]) -> Iterator[str]:
    """deploy/nginx.conf in front of ``hub_ports`` on ``port``; yields its base URL."""
    prefix.mkdir(parents=True, exist_ok=True)
    process = start_nginx(prefix, nginx_config(prefix, port, hub_ports), port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(15)
