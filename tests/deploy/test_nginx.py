"""deploy/nginx/keyturn.conf (issue 16 item 6): Debian's nginx checks the shipped site
(`nginx -t`), then serves it in front of a live `keyturn serve`: a signup and a login go
through it over https, and Keyturn records the address nginx saw, not a spoofed one.

The test renders the shipped file and substitutes only its EDIT values (the replicas'
addresses, the listen ports and the certificate paths), each of which must be found
exactly where the file says, so the file tested is the file shipped.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from deploy.platform_checks import DEPLOY, require_tool
from e2e.processes import LOW_ARGON2, STOP_DEADLINE, keyturn_env, spawn_server, wait_healthy
from helpers import PASSWORD, bearer, new_email
from net import free_port, self_signed_certificate

pytestmark = pytest.mark.slow

SITE = DEPLOY / "nginx" / "keyturn.conf"
# Debian's nginx; .ci/run installs it.
NGINX = "/usr/sbin/nginx"
# The client's own loopback address: nginx sees it, Keyturn sees nginx (127.0.0.1).
CLIENT_ADDRESS = "127.0.0.2"
SPOOFED = "203.0.113.9"
TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def ipv6_loopback() -> str:
    """``[::1]`` where this machine has IPv6 on loopback, else 127.0.0.1 (the site's IPv6
    listen lines then parse on a second IPv4 port)."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return "127.0.0.1"
    return "[::1]"


def render_site(keyturn_port: int, ports: dict[str, Any], cert: Path, key: Path) -> str:
    """The shipped site with its EDIT values replaced (each must occur exactly once)."""
    text = SITE.read_text(encoding="utf-8")
    replacements = {
        "server 10.0.0.11:8000 ": f"server 127.0.0.1:{keyturn_port} ",
        # Two upstream entries, one process: enough to prove the block parses and balances.
        "server 10.0.0.12:8000 ": f"server 127.0.0.1:{keyturn_port} ",
        "listen 80;": f"listen 127.0.0.1:{ports['http']};",
        "listen [::]:80;": f"listen {ports['v6host']}:{ports['http6']};",
        "listen 443 ssl http2;": f"listen 127.0.0.1:{ports['https']} ssl http2;",
        "listen [::]:443 ssl http2;": f"listen {ports['v6host']}:{ports['https6']} ssl http2;",
        "/etc/ssl/keyturn/fullchain.pem": str(cert),
        "/etc/ssl/keyturn/privkey.pem": str(key),
    }
    for old, new in replacements.items():
        assert text.count(old) == 1, f"{SITE.name}: {old!r} expected once"
        text = text.replace(old, new)
    return text


def nginx_conf(tmp_path: Path, site: Path) -> Path:
    """A private main config: own pid, logs and temp paths; the site included as is."""
    temp = "\n".join(f"    {name}_temp_path {tmp_path / name};" for name in TEMP_DIRS)
    # As root the workers would drop to `nobody`, who cannot enter pytest's 0700 tmp dirs.
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"{user}daemon off;\nworker_processes 1;\npid {tmp_path / 'nginx.pid'};\n"
        f"error_log {tmp_path / 'error.log'} info;\n"
        "events { worker_connections 64; }\n"
        f"http {{\n    access_log {tmp_path / 'access.log'};\n{temp}\n"
        f"    include {site};\n}}\n",
        encoding="utf-8",
    )
    return conf


def nginx_command(conf: Path, tmp_path: Path, *args: str) -> list[str]:
    return [NGINX, "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c", str(conf), *args]


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path]]:
    """(nginx https URL, keyturn's direct URL, CA file) with both processes running; one
    pair for the module (starting them is most of this file's time)."""
    tmp_path = tmp_path_factory.mktemp("nginx")
    require_tool(NGINX, "the nginx site check (nginx -t and a proxied login)")
    cert, key = self_signed_certificate(tmp_path)
    ports = {
        "http": free_port(),
        "https": free_port(),
        "http6": free_port(),
        "https6": free_port(),
        "v6host": ipv6_loopback(),
    }
    keyturn_port = free_port()
    site = tmp_path / "keyturn.conf"
    site.write_text(render_site(keyturn_port, ports, cert, key), encoding="utf-8")
    conf = nginx_conf(tmp_path, site)
    check = subprocess.run(
        nginx_command(conf, tmp_path, "-t"), capture_output=True, text=True, timeout=30
    )
    assert check.returncode == 0, check.stderr
    assert "test is successful" in check.stderr
    env = keyturn_env(
        tmp_path / "data",
        {
            **LOW_ARGON2,
            # Only nginx's own address is a proxy; the client's headers count for nothing.
            "KEYTURN_TRUSTED_PROXIES": "127.0.0.1",
            "KEYTURN_ISSUER": f"https://localhost:{ports['https']}",
        },
    )
    server = spawn_server(tmp_path, env, port=keyturn_port)
    nginx = subprocess.Popen(
        nginx_command(conf, tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "nginx.stderr").open("wb"),
        stdin=subprocess.DEVNULL,
    )
    try:
        wait_healthy(server)
        wait_listening(nginx, ports["https"], tmp_path, cert)
        yield f"https://127.0.0.1:{ports['https']}", server.base_url, cert
    finally:
        # SIGQUIT: nginx's graceful stop (finish open requests, then exit).
        nginx.send_signal(3)
        try:
            nginx.wait(timeout=STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            nginx.kill()
            nginx.wait(timeout=10)
        server.stop()


def wait_listening(nginx: subprocess.Popen[bytes], port: int, tmp_path: Path, ca: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        assert nginx.poll() is None, (tmp_path / "error.log").read_text(encoding="utf-8")
        try:
            with client(f"https://127.0.0.1:{port}", ca) as probe:
                probe.get("/healthz")
            return
        except httpx.TransportError:
            assert time.monotonic() < deadline, "nginx never listened"
            time.sleep(0.05)


def client(base_url: str, ca: Path) -> httpx.Client:
    trust = ssl.create_default_context(cafile=str(ca))
    transport = httpx.HTTPTransport(local_address=CLIENT_ADDRESS, verify=trust)
    return httpx.Client(base_url=base_url, transport=transport, timeout=30.0)


def test_login_through_nginx_records_the_address_nginx_saw(
    proxied: tuple[str, str, Path],
) -> None:
    nginx_url, _, ca = proxied
    spoof = {"X-Forwarded-For": SPOOFED}
    email = new_email()
    with client(nginx_url, ca) as http:
        signup = http.post(
            "/v1/auth/signup", json={"email": email, "password": PASSWORD}, headers=spoof
        )
        assert signup.status_code == 202, signup.text
        login = http.post(
            "/v1/auth/login", json={"email": email, "password": PASSWORD}, headers=spoof
        )
        assert login.status_code == 200, login.text
        tokens = login.json()
        assert tokens["access_token"]
        assert tokens["refresh_token"]
        # X-Forwarded-Proto reached Keyturn: it sends HSTS only on https, exactly once.
        assert login.headers.get_list("strict-transport-security") != []
        assert len(login.headers.get_list("strict-transport-security")) == 1

        sessions = http.get("/v1/me/sessions", headers=bearer(tokens["access_token"]) | spoof)
        assert sessions.status_code == 200, sessions.text
        # nginx appended 127.0.0.2 after the spoofed value; walking from the right,
        # Keyturn trusts 127.0.0.1 (nginx) and stops at 127.0.0.2, never reaching 203.0.113.9.
        assert [item["ip"] for item in sessions.json()["items"]] == [CLIENT_ADDRESS]


def test_nginx_keeps_metrics_and_oversize_bodies_away(proxied: tuple[str, str, Path]) -> None:
    nginx_url, direct_url, ca = proxied
    with httpx.Client(timeout=30.0) as direct:
        # Without KEYTURN_METRICS_PORT the replica itself still serves /metrics...
        assert direct.get(f"{direct_url}/metrics").status_code == 200
    with client(nginx_url, ca) as http:
        # ...but the public proxy never does.
        assert http.get("/metrics").status_code == 404
        # client_max_body_size is KEYTURN_MAX_BODY_BYTES (64 KiB).
        oversize = http.post(
            "/v1/auth/login",
            content=b"x" * 70_000,
            headers={"content-type": "application/json"},
        )
        assert oversize.status_code == 413
        assert http.get("/healthz").status_code == 200
