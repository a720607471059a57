"""What the fault tests drive and check: accounts, the mixed scenario, SQL invariants.

Kept apart from ``test_cluster_faults.py`` so the test module reads as the promises it
checks. Every check returns what it found (the tests print it and assert on it).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass

import asyncpg
import httpx

from e2e.cluster import fresh_user
from e2e.load import LoadResult, Scenario, Step
from helpers import PASSWORD, bearer


@dataclass
class Account:
    """One load client's user: its address and its current token pair."""

    email: str
    access: str
    refresh: str


def new_load_email(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.com"


def fresh_account(http: httpx.Client) -> Account:
    """A fresh user through ``http`` (the balancer or one replica), logged in."""
    user = fresh_user(http)
    return Account(user["email"], user["access_token"], user["refresh_token"])


def mixed_scenario(accounts: list[Account], *, passkey_options: bool = False) -> Scenario:
    """Each client cycles: login, ``/v1/me``, refresh (keeping its chain), a new signup,
    and (optionally) passwordless options, which need the shared store (fail closed).

    A signup is tagged with its address, so a test can prove each 202 became a user.
    """
    kinds = ["login", "me", "refresh", "signup"] + (["passkey"] if passkey_options else [])

    async def scenario(step: Step) -> None:
        account = accounts[step.client]
        kind = kinds[step.iteration % len(kinds)]
        if kind == "login":
            body = {"email": account.email, "password": PASSWORD}
            await step.request("login", "POST", "/v1/auth/login", json=body)
        elif kind == "me":
            await step.request("me", "GET", "/v1/me", headers=bearer(account.access))
        elif kind == "refresh":
            body = {"refresh_token": account.refresh}
            answer = await step.request("refresh", "POST", "/v1/auth/refresh", json=body)
            if answer is not None and answer.status_code == 200:
                account.access = answer.json()["access_token"]
                account.refresh = answer.json()["refresh_token"]
        elif kind == "signup":
            email = new_load_email("load")
            body = {"email": email, "password": PASSWORD}
            await step.request("signup", "POST", "/v1/auth/signup", json=body, tag=email)
        else:
            await step.request("passkey", "POST", "/v1/auth/passkey/options", json={})

    return scenario


def unexpected_5xx(result: LoadResult, allowed: frozenset[int]) -> list[str]:
    """Every 5xx outside ``allowed``, and every 503 without a usable ``Retry-After``."""
    found = []
    for record in result.failures:
        if record.status is None:
            continue
        retry_after = record.retry_after or ""
        if record.status not in allowed:
            found.append(f"{record.name} {record.status}: {record.body}")
        elif record.status == 503 and not (retry_after.isdigit() and int(retry_after) >= 1):
            found.append(f"{record.name} 503 without Retry-After ({retry_after!r}): {record.body}")
    return found


def logins_failing(http: httpx.Client, emails: list[str]) -> list[str]:
    """The addresses (answered 202 at signup) that cannot log in: lost signups."""
    lost = []
    for email in emails:
        answer = http.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
        if answer.status_code != 200:
            lost.append(f"{email}: {answer.status_code} {answer.text[:200]}")
    return lost


def request_paths(log_text: str) -> list[str]:
    """The paths of the ``request`` events in a replica's JSON log (uvicorn's are not JSON)."""
    paths = []
    for line in log_text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("event") == "request":
            paths.append(str(entry.get("path")))
    return paths


# Each query returns the rows that break one invariant; every one must come back empty.
INVARIANTS = {
    "rotated refresh token without a successor": """
        SELECT t.id FROM refresh_tokens t WHERE t.rotated_at IS NOT NULL
        AND NOT EXISTS (SELECT 1 FROM refresh_tokens c WHERE c.parent_id = t.id)""",
    "refresh token with more than one successor": """
        SELECT parent_id FROM refresh_tokens WHERE parent_id IS NOT NULL
        GROUP BY parent_id HAVING count(*) > 1""",
    "successor of a token that is not marked rotated": """
        SELECT c.id FROM refresh_tokens c JOIN refresh_tokens p ON p.id = c.parent_id
        WHERE p.rotated_at IS NULL""",
    "session (with refresh tokens) without exactly one live token": """
        SELECT session_id FROM refresh_tokens GROUP BY session_id
        HAVING count(*) FILTER (WHERE rotated_at IS NULL) <> 1""",
    "login session without any refresh token": """
        SELECT s.id FROM sessions s WHERE s.client_id IS NULL
        AND NOT EXISTS (SELECT 1 FROM refresh_tokens t WHERE t.session_id = s.id)""",
    "outbox row in an unknown state or half written": """
        SELECT id FROM outbox_messages WHERE message_id IS NULL OR message_id = ''
        OR status NOT IN ('pending', 'sending', 'sent', 'dead')
        OR (status = 'sent') <> (sent_at IS NOT NULL)
        OR (status = 'sent') <> (payload = ''::bytea)""",
}


def broken_invariants(dsn: str) -> dict[str, int]:
    """How many rows break each invariant of :data:`INVARIANTS` (all must be 0)."""

    async def count() -> dict[str, int]:
        connection = await asyncpg.connect(dsn)
        try:
            return {name: len(await connection.fetch(sql)) for name, sql in INVARIANTS.items()}
        finally:
            await connection.close()

    return asyncio.run(count())


def fetch(dsn: str, sql: str, *args: object) -> list[asyncpg.Record]:
    """The rows of one read-only query (the tests inspect the outbox with it)."""

    async def rows() -> list[asyncpg.Record]:
        connection = await asyncpg.connect(dsn)
        try:
            return list(await connection.fetch(sql, *args))
        finally:
            await connection.close()

    return asyncio.run(rows())
