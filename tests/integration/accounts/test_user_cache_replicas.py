"""The user cache behind ``GET /v1/me`` (issue 18): every change of a user, made on one
replica, shows on the other at once, though the other answers from its cache.

Two apps on one database: on the embedded backend they share the in-process feed, on
PostgreSQL + Redis the pub/sub channel ``users:changed``. Before each change the other
replica is shown to answer from its cache (no SQL statement), so a change that did not
reach it would show as the old value.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from conftest import SettingsFactory
from helpers import (
    PASSWORD,
    Peers,
    admin_headers,
    bearer,
    create_role,
    grant_role,
    serving,
    signup_login,
)
from sql_spy import queries, statements_run_here

pytestmark = pytest.mark.anyio


@pytest.fixture
async def replicas(make_settings: SettingsFactory) -> AsyncIterator[tuple[Peers, Peers]]:
    settings = make_settings(limit_ip_per_minute=10_000)
    async with serving(settings) as first, serving(settings) as second:
        yield first, second


async def _me_from_cache(http: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    """``GET /v1/me`` twice; the second answer must come without any SQL."""
    assert (await http.get("/v1/me", headers=headers)).status_code == 200
    with statements_run_here() as statements:
        answer = await http.get("/v1/me", headers=headers)
    assert answer.status_code == 200, answer.text
    assert queries(statements) == [], "the profile was not served from the cache"
    body: dict[str, Any] = answer.json()
    return body


async def _me(http: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    answer = await http.get("/v1/me", headers=headers)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def _signed_in(a: Peers, b: Peers) -> tuple[Any, ...]:
    """Clients of both replicas, an admin's headers, and a user signed in on A whose
    profile B serves from its cache: ``(on_a, on_b, admin, headers, user_id)``."""
    on_a, on_b = a(), b()
    admin = await admin_headers(a.app, on_a)
    headers = bearer((await signup_login(on_a))["access_token"])
    user_id = (await _me_from_cache(on_b, headers))["id"]
    return on_a, on_b, admin, headers, user_id


async def test_every_change_of_a_user_on_one_replica_shows_on_the_other_at_once(
    replicas: tuple[Peers, Peers],
) -> None:
    on_a, on_b, admin, headers, user_id = await _signed_in(*replicas)

    # The user's own change.
    renamed = await on_a.patch("/v1/me", json={"name": "Ada Renamed"}, headers=headers)
    assert renamed.status_code == 200, renamed.text
    assert (await _me(on_b, headers))["name"] == "Ada Renamed"

    # An administrator's changes: a role granted, the role deleted, a field set.
    await _me_from_cache(on_b, headers)
    role = await create_role(on_a, admin, ["users:read"])
    await grant_role(on_a, admin, user_id, role)
    assert role in (await _me(on_b, headers))["roles"]

    await _me_from_cache(on_b, headers)
    deleted = await on_a.delete(f"/v1/admin/roles/{role}", headers=admin)
    assert deleted.status_code == 204, deleted.text
    assert role not in (await _me(on_b, headers))["roles"]

    was_verified = (await _me_from_cache(on_b, headers))["email_verified"]
    patched = await on_a.patch(
        f"/v1/admin/users/{user_id}", json={"email_verified": not was_verified}, headers=admin
    )
    assert patched.status_code == 200, patched.text
    assert (await _me(on_b, headers))["email_verified"] is (not was_verified)


@pytest.mark.parametrize(
    "end",
    [
        lambda http, admin, user_id, _: http.patch(
            f"/v1/admin/users/{user_id}", json={"disabled": True}, headers=admin
        ),
        lambda http, admin, user_id, _: http.post(f"/v1/admin/users/{user_id}/lock", headers=admin),
        lambda http, admin, user_id, _: http.delete(f"/v1/admin/users/{user_id}", headers=admin),
        lambda http, _, __, headers: http.request(
            "DELETE", "/v1/me", json={"password": PASSWORD}, headers=headers
        ),
    ],
    ids=["disabled", "locked", "deleted by an admin", "deleted by its owner"],
)
async def test_an_account_ended_on_one_replica_is_refused_on_the_other_at_once(
    replicas: tuple[Peers, Peers], end: Any, backend: str
) -> None:
    if backend != "postgres":
        # A lock ends the sessions through the deny-list, which two apps share only in
        # Redis (the embedded default is one process).
        pytest.skip("embedded backend: replicas share the deny-list only through Redis")
    on_a, on_b, admin, headers, user_id = await _signed_in(*replicas)
    ended = await end(on_a, admin, user_id, headers)
    assert ended.status_code in (200, 204), ended.text
    refused = await on_b.get("/v1/me", headers=headers)
    assert refused.status_code in (401, 404), refused.text
