"""Credentials prepared before the runs: access tokens, refresh-token pools, OAuth clients.

Access tokens for ``GET /v1/me`` come from real logins: each session logs in once and is
then refreshed to mint more access tokens (one login costs one argon2 verify; a refresh
costs none). The same sessions' current refresh tokens become the refresh scenario's
pool: warm-up and each measured run get disjoint sessions, so a request left unanswered
at the end of one run can never spoil the next (bench/lua/refresh.lua keeps each
session's chain going from the answers).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from bench.harness.servers import HarnessError

CONCURRENCY = 8
TIMEOUT = 60.0


@dataclass
class SessionTokens:
    """One logged-in session: the access tokens minted for it and its current refresh token."""

    access: list[str] = field(default_factory=list)
    refresh: str = ""


async def _gather_with_progress(
    label: str, jobs: Sequence[Callable[[], Awaitable[Any]]], concurrency: int = CONCURRENCY
) -> list[Any]:
    gate = asyncio.Semaphore(concurrency)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    ) as progress:
        task = progress.add_task(label, total=len(jobs))

        async def one(job: Callable[[], Awaitable[Any]]) -> Any:
            async with gate:
                result = await job()
            progress.advance(task)
            return result

        return await asyncio.gather(*(one(job) for job in jobs))


def _ok(response: httpx.Response, what: str) -> dict[str, Any]:
    if response.status_code != 200:
        raise HarnessError(f"{what}: HTTP {response.status_code} {response.text[:300]}")
    body: dict[str, Any] = response.json()
    return body


async def _session(
    http: httpx.AsyncClient, email: str, password: str, access_tokens: int
) -> SessionTokens:
    body = _ok(
        await http.post("/v1/auth/login", json={"email": email, "password": password}), "login"
    )
    session = SessionTokens(access=[body["access_token"]], refresh=body["refresh_token"])
    for _ in range(access_tokens - 1):
        body = _ok(
            await http.post("/v1/auth/refresh", json={"refresh_token": session.refresh}),
            "refresh",
        )
        session.access.append(body["access_token"])
        session.refresh = body["refresh_token"]
    return session


def keyturn_sessions(
    base_url: str, emails: Sequence[str], password: str, access_tokens: int
) -> list[SessionTokens]:
    """Logs each address in once, then refreshes to hold ``access_tokens`` per session."""

    async def run() -> list[SessionTokens]:
        async with httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT) as http:
            jobs = [
                lambda email=email: _session(http, email, password, access_tokens)
                for email in emails
            ]
            label = f"logging in {len(emails)} users x {access_tokens} tokens"
            return await _gather_with_progress(label, jobs)

    return asyncio.run(run())


def split_pool(heads: Sequence[str], groups: int, connections: int) -> list[list[str]]:
    """Splits the sessions' refresh tokens into one pool per run (warm-up first).

    Raises:
        HarnessError: When a run would have no more sessions than connections: every
            connection holds one session's token in flight, so the thread's queue could
            run dry.
    """
    pools = [list(heads[group::groups]) for group in range(groups)]
    smallest = min(len(pool) for pool in pools)
    if smallest < connections * 3 // 2:
        raise HarnessError(
            f"refresh pool of {smallest} sessions per run is too small for {connections}"
            f" connections: raise --me-users to at least {connections * 3 // 2 * groups}"
        )
    return pools


def write_lines(path: Path, values: Sequence[str]) -> Path:
    path.write_text("\n".join(values) + "\n")
    return path


def basic_auth(client_id: str, client_secret: str) -> str:
    """RFC 6749 section 2.3.1: form-encode both parts, then base64 ``id:secret``."""
    raw = f"{quote(client_id, safe='')}:{quote(client_secret, safe='')}"
    return base64.b64encode(raw.encode()).decode()


def fastapi_users_tokens(base_url: str, emails: Sequence[str], password: str) -> list[str]:
    """Logs each address in at the fastapi-users peer; its JWT access tokens."""

    async def login(http: httpx.AsyncClient, email: str) -> str:
        body = _ok(
            await http.post("/auth/jwt/login", data={"username": email, "password": password}),
            "fastapi-users login",
        )
        return str(body["access_token"])

    async def run() -> list[str]:
        async with httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT) as http:
            jobs = [lambda email=email: login(http, email) for email in emails]
            return await _gather_with_progress(f"fastapi-users: {len(emails)} logins", jobs, 4)

    return asyncio.run(run())


def client_credentials_tokens(
    token_url: str, basic: str, form: dict[str, str], count: int
) -> list[str]:
    """``count`` access tokens from a client_credentials grant (for introspection runs)."""

    async def one(http: httpx.AsyncClient) -> str:
        response = await http.post(
            token_url,
            data={"grant_type": "client_credentials", **form},
            headers={"authorization": f"Basic {basic}"},
        )
        return str(_ok(response, "client_credentials")["access_token"])

    async def run() -> list[str]:
        async with httpx.AsyncClient(timeout=TIMEOUT) as http:
            jobs = [lambda: one(http) for _ in range(count)]
            return await _gather_with_progress(f"{count} client_credentials tokens", jobs)

    return asyncio.run(run())
