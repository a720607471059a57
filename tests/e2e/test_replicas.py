"""Two real replicas behind no load balancer: same PostgreSQL, same Redis, same key ring.

Proves DESIGN.md section 4: every replica reads the signing keys from the database (B
verifies A's tokens), a logout on one replica is refused by the other at once (shared
deny-list, no sleep), and a refresh token issued by one replica rotates on the other.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from e2e.processes import SHARED_SERVER_MARKS, Server, replica_env
from helpers import PASSWORD, TEST_SECRET, bearer, new_email

pytestmark = SHARED_SERVER_MARKS


@pytest.fixture
def replicas(
    start_server: Callable[..., Server], postgres_url: str, redis_prefix: str, tmp_path: Path
) -> tuple[Server, Server]:
    env = replica_env(postgres_url, redis_prefix, TEST_SECRET)
    first = start_server(env, data_dir=tmp_path / "a", name="a")
    second = start_server(env, data_dir=tmp_path / "b", name="b")
    return first, second


def test_logout_on_one_replica_is_refused_by_the_other(replicas: tuple[Server, Server]) -> None:
    a, b = replicas
    email = new_email()
    with a.client() as on_a, b.client() as on_b:
        assert (
            on_a.post("/v1/auth/signup", json={"email": email, "password": PASSWORD}).status_code
            == 202
        )
        login = on_a.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert login.status_code == 200, login.text
        access = login.json()["access_token"]

        me = on_b.get("/v1/me", headers=bearer(access))
        assert me.status_code == 200, me.text + b.output()
        assert me.json()["email"] == email
        # Both replicas publish the same keys (they come from the shared database).
        assert (
            on_a.get("/.well-known/jwks.json").json() == on_b.get("/.well-known/jwks.json").json()
        )

        assert on_a.post("/v1/auth/logout", headers=bearer(access)).status_code == 204
        # The very next request on B, without waiting: the deny-list is shared.
        after = on_b.get("/v1/me", headers=bearer(access))
        assert after.status_code == 401
        assert after.json()["code"] == "session_revoked"
        assert on_a.get("/v1/me", headers=bearer(access)).status_code == 401

        ready = on_b.get("/readyz")
        assert ready.status_code == 200, ready.text
    a.assert_stopped_cleanly()
    b.assert_stopped_cleanly()


def test_refresh_token_from_one_replica_rotates_on_the_other(
    replicas: tuple[Server, Server],
) -> None:
    a, b = replicas
    email = new_email()
    with a.client() as on_a, b.client() as on_b:
        assert (
            on_b.post("/v1/auth/signup", json={"email": email, "password": PASSWORD}).status_code
            == 202
        )
        tokens = on_a.post("/v1/auth/login", json={"email": email, "password": PASSWORD}).json()

        rotated = on_b.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert rotated.status_code == 200, rotated.text
        pair = rotated.json()
        assert pair["refresh_token"] != tokens["refresh_token"]
        # B's new access token works on A, and B's successor rotates again on A.
        assert on_a.get("/v1/me", headers=bearer(pair["access_token"])).status_code == 200
        again = on_a.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
        assert again.status_code == 200, again.text
        third = again.json()
        assert third["refresh_token"] not in (pair["refresh_token"], tokens["refresh_token"])

        # The first token is two generations old now: reuse on either replica revokes the
        # whole session, and both replicas refuse its live access token at once.
        reuse = on_b.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert reuse.status_code == 401
        assert reuse.json()["code"] == "invalid_refresh_token"
        for http in (on_a, on_b):
            dead = http.get("/v1/me", headers=bearer(third["access_token"]))
            assert dead.status_code == 401
            assert dead.json()["code"] == "session_revoked"
