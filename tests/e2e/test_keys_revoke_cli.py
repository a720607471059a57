"""``keyturn keys revoke KID`` as a real process (issue 12 finding 24).

ASVS v5.0.0-11.1.1: the key lifecycle covers a compromised key. The operator on the host
revokes a key: it is listed as revoked, an active one is replaced first, the revocation is
audited, and two running replicas (PostgreSQL + Redis) refuse its tokens at once.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import httpx
import jwt
import pytest

from e2e.processes import (
    LOW_ARGON2,
    Server,
    keyturn_env,
    replica_env,
    run_in_process,
    run_keyturn,
)
from helpers import PASSWORD, TEST_SECRET, bearer, new_email

pytestmark = pytest.mark.slow

ROW = re.compile(r"^(\S{43})\s+(ES256|RS256|EdDSA)\s+(\w+)\s", re.M)


def _keys(env: dict[str, str]) -> dict[str, tuple[str, str]]:
    """kid -> (alg, state)."""
    listed = run_in_process(["keys", "list"], env)
    assert listed.returncode == 0, listed.stderr
    return {kid: (alg, state) for kid, alg, state in ROW.findall(listed.stdout)}


def test_asvs_11_1_1_keys_revoke_cli(tmp_path: Path) -> None:
    env = keyturn_env(tmp_path / "data", {**LOW_ARGON2, "KEYTURN_SECRET_KEY": TEST_SECRET})
    assert run_keyturn(["migrate"], env).returncode == 0
    # An empty database gets its chains first; an unknown kid is refused.
    revoke_unknown = run_in_process(["keys", "revoke", "no-such-kid"], env)
    assert revoke_unknown.returncode == 1
    assert "revocation refused" in revoke_unknown.stderr
    keys = _keys(env)
    (active,) = [kid for kid, (alg, state) in keys.items() if (alg, state) == ("ES256", "active")]
    (waiting,) = [kid for kid, (alg, state) in keys.items() if (alg, state) == ("ES256", "next")]

    revoked = run_in_process(["keys", "revoke", active], env)
    assert revoked.returncode == 0, revoked.stderr
    assert f"ES256 revoked: {active} (was active)" in revoked.stdout
    assert f"ES256 active: {waiting}" in revoked.stdout
    # Without Redis the CLI says how a running server learns of it.
    assert "next key reload" in revoked.stdout
    after = _keys(env)
    assert after[active] == ("ES256", "revoked")
    assert after[waiting] == ("ES256", "active")
    assert [kid for kid, pair in after.items() if pair == ("ES256", "next")]

    again = run_in_process(["keys", "revoke", active], env)
    assert again.returncode == 0, again.stderr
    assert "already revoked" in again.stdout
    verified = run_in_process(["audit", "verify"], env)
    assert verified.returncode == 0, verified.stderr
    missing = run_in_process(["keys", "revoke"], env)
    assert missing.returncode != 0


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.skipif(
    not (os.environ.get("KEYTURN_TEST_DATABASE_URL") and os.environ.get("KEYTURN_TEST_REDIS_URL")),
    reason="replicas need KEYTURN_TEST_DATABASE_URL and KEYTURN_TEST_REDIS_URL",
)
def test_asvs_9_1_3_cli_revocation_reaches_running_replicas_at_once(
    start_server: Callable[..., Server], postgres_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    shared = replica_env(postgres_url, redis_prefix, TEST_SECRET)
    a = start_server(shared, data_dir=tmp_path / "a", name="a")
    b = start_server(shared, data_dir=tmp_path / "b", name="b")
    email = new_email()
    with httpx.Client(base_url=a.base_url) as on_a, httpx.Client(base_url=b.base_url) as on_b:
        signup = on_a.post("/v1/auth/signup", json={"email": email, "password": PASSWORD})
        assert signup.status_code == 202
        login = on_a.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert login.status_code == 200, login.text
        access = login.json()["access_token"]
        assert on_b.get("/v1/me", headers=bearer(access)).status_code == 200
        kid = jwt.get_unverified_header(access)["kid"]

        revoked = run_keyturn(["keys", "revoke", kid], keyturn_env(tmp_path / "cli", shared))
        assert revoked.returncode == 0, revoked.stderr

        # The very next requests, without waiting for any key cache.
        for on in (on_a, on_b):
            assert on.get("/v1/me", headers=bearer(access)).status_code == 401
            published = {key["kid"] for key in on.get("/.well-known/jwks.json").json()["keys"]}
            assert kid not in published
        refreshed = on_b.post(
            "/v1/auth/refresh", json={"refresh_token": login.json()["refresh_token"]}
        )
        assert refreshed.status_code == 200, refreshed.text
        fresh = refreshed.json()["access_token"]
        assert jwt.get_unverified_header(fresh)["kid"] != kid
        assert on_a.get("/v1/me", headers=bearer(fresh)).status_code == 200
