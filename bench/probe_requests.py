"""Requests straight into the ASGI app, no server, no socket: the app's own cost per request.

``python -m bench.probe_requests [--requests 2000] [--route me]`` builds the app on the
embedded default (SQLite file in a temporary folder, in-process stores, cheap hashing),
makes an admin, a confidential client and one of its access tokens, then sends
``--requests`` requests to one route (``me``, ``healthz``, ``jwks``, ``login``, ``token``:
client_credentials, ``introspect``) through the app's ASGI callable one after another, and
prints the process CPU per request. uvicorn, the sockets, PostgreSQL and Redis are left
out: what a change to the app's own code saves shows without them. On a shared VM, run a
before and an after alternately, a few times each. Numbers, never a pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from asgi_lifespan import LifespanManager

from bench.harness.oauth_probe import CLIENT_METADATA
from bench.harness.tokens import basic_auth
from keyturn.app import create_app
from keyturn.cli.common import ensure_schema
from keyturn.config import Settings, load_settings
from keyturn.observability.logging import configure_logging

EMAIL, PASSWORD = "probe@example.com", "correct-Horse-battery-42x"
FORM = b"application/x-www-form-urlencoded"
LOGIN = json.dumps({"email": EMAIL, "password": PASSWORD}).encode()
# route -> (method, path, JSON body)
ROUTES = {
    "me": ("GET", "/v1/me", b""),
    "healthz": ("GET", "/healthz", b""),
    "jwks": ("GET", "/.well-known/jwks.json", b""),
    "login": ("POST", "/v1/auth/login", LOGIN),
    "token": ("POST", "/oauth2/token", b"grant_type=client_credentials"),
    "introspect": ("POST", "/oauth2/introspect", b""),  # the body names the issued token
}


async def _credentials(app: Any) -> tuple[str, str, str]:
    """An admin's access token, then a confidential client's Basic credentials and one of
    its client_credentials access tokens (as bench/harness/oauth_probe.py makes them)."""
    await app.state.services.users.create_admin(EMAIL, PASSWORD)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://probe") as http:
        answer = await http.post("/v1/auth/login", json={"email": EMAIL, "password": PASSWORD})
        token: str = answer.raise_for_status().json()["access_token"]
        answer = await http.post(
            "/v1/admin/clients", json=CLIENT_METADATA, headers={"authorization": f"Bearer {token}"}
        )
        client = answer.raise_for_status().json()
        basic = basic_auth(client["client_id"], client["client_secret"])
        answer = await http.post(
            "/oauth2/token",
            data={"grant_type": "client_credentials"},
            headers={"authorization": f"Basic {basic}"},
        )
        issued: str = answer.raise_for_status().json()["access_token"]
        return token, basic, issued


async def _send(app: Any, scope: dict[str, Any], body: bytes) -> int:
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(dict(scope), receive, send)
    return status


async def main(requests: int, route: str, settings: Settings) -> None:
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        token, basic, issued = await _credentials(app)
        method, path, body = ROUTES[route]
        if route == "introspect":
            body = f"token={issued}&token_type_hint=access_token".encode()
        authorization = f"Basic {basic}" if route in ("token", "introspect") else f"Bearer {token}"
        content_type = b"application/json" if body.startswith(b"{") else FORM
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [
                (b"host", b"127.0.0.1:8000"),
                (b"user-agent", b"probe"),
                (b"accept", b"*/*"),
                (b"authorization", authorization.encode()),
                *(
                    [
                        (b"content-type", content_type),
                        (b"content-length", str(len(body)).encode()),
                    ]
                    if body
                    else []
                ),
            ],
            "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 8000),
            "state": dict(manager._state),
        }
        # Warm every cache the route has before counting.
        for _ in range(50):
            assert await _send(manager.app, scope, body) == 200
        cpu = time.process_time()
        for _ in range(requests):
            await _send(manager.app, scope, body)
        cpu = time.process_time() - cpu
    if requests:
        print(f"{route}: {cpu / requests * 1e6:.1f} us CPU per request ({requests} requests)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.probe_requests")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--route", choices=sorted(ROUTES), default="me")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="keyturn-probe-") as folder:
        settings = load_settings(
            data_dir=Path(folder),
            secret_key=["probe-secret-key-probe-secret-key-0123456789"],
            argon2_memory_kib=1024,
            argon2_time_cost=1,
            log_level="warning",
            # As the bench's server (bench/harness/keyturn_server.py): one address sends all.
            limit_ip_per_minute=10_000_000,
            docs_enabled=False,
        )
        configure_logging(settings.log_level, settings.log_renderer)
        ensure_schema(settings)
        asyncio.run(main(args.requests, args.route, settings))
