"""The client cache across two real replicas (issue 18 item 2): one PostgreSQL database,
one Redis prefix, two ``keyturn serve`` processes.

B's cache is warmed by a token request; then A changes the client and B applies the
change at its very next request, with no sleep: a rotated secret is refused (ten cycles,
to expose a race between B's pub/sub reader and its request), new grant types and a
narrower scope apply, a deleted client is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from e2e.processes import SHARED_SERVER_MARKS, Server, keyturn_env, replica_env, run_keyturn
from helpers import PASSWORD, TEST_SECRET, new_email

pytestmark = SHARED_SERVER_MARKS

CYCLES = 10
FORM = {"grant_type": "client_credentials"}


@pytest.fixture
def replicas(
    start_server: Callable[..., Server], postgres_url: str, redis_prefix: str, tmp_path: Path
) -> tuple[Server, Server, str]:
    env = {
        **replica_env(postgres_url, redis_prefix, TEST_SECRET),
        # Every cycle's refused old secret is a counted failure: not what is tested here.
        "KEYTURN_LIMIT_FAILURES_PER_ACCOUNT_IP": "1000",
        "KEYTURN_LIMIT_FAILURES_PER_ACCOUNT": "1000",
    }
    first = start_server(env, data_dir=tmp_path / "a", name="a")
    second = start_server(env, data_dir=tmp_path / "b", name="b")
    email = new_email()
    created = run_keyturn(
        ["users", "create-admin", "--email", email, "--password-stdin"],
        keyturn_env(tmp_path / "a", env),
        stdin=PASSWORD + "\n",
    )
    assert created.returncode == 0, created.stderr
    with first.client() as http:
        login = http.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return first, second, str(login.json()["access_token"])


def _token(http: httpx.Client, client_id: str, secret: str, **form: str) -> httpx.Response:
    return http.post("/oauth2/token", data={**FORM, **form}, auth=(client_id, secret))


def test_client_changes_on_one_replica_apply_on_the_other_at_once(
    replicas: tuple[Server, Server, str],
) -> None:
    a, b, admin = replicas
    headers = {"Authorization": f"Bearer {admin}"}
    with a.client() as on_a, b.client() as on_b:
        answer = on_a.post(
            "/v1/admin/clients",
            json={
                "client_name": "Cached",
                "grant_types": ["client_credentials"],
                "response_types": [],
                "redirect_uris": [],
                "scope": "me:read me:write",
            },
            headers=headers,
        )
        assert answer.status_code == 201, answer.text
        client_id, secret = answer.json()["client_id"], answer.json()["client_secret"]
        path = f"/v1/admin/clients/{client_id}"

        for cycle in range(CYCLES):
            warm = _token(on_b, client_id, secret)
            assert warm.status_code == 200, f"cycle {cycle}: {warm.text}" + b.output()
            assert _token(on_b, client_id, secret).status_code == 200  # served warm
            rotated = on_a.post(f"{path}/secret", headers=headers)
            assert rotated.status_code == 200, rotated.text
            old, secret = secret, rotated.json()["client_secret"]
            refused = _token(on_b, client_id, old)
            assert refused.status_code == 401, f"cycle {cycle}: B accepted the old secret"
            assert refused.json()["error"] == "invalid_client"
            assert _token(on_b, client_id, secret).status_code == 200

        # Scope narrowed on A: B issues and introspects only what is left.
        before = _token(on_b, client_id, secret, scope="me:read me:write")
        assert before.status_code == 200, before.text
        patched = on_a.patch(path, json={"scope": "me:read"}, headers=headers)
        assert patched.status_code == 200, patched.text
        narrowed = _token(on_b, client_id, secret, scope="me:write")
        assert narrowed.status_code == 400, narrowed.text
        assert narrowed.json()["error"] == "invalid_scope"
        introspected = on_b.post(
            "/oauth2/introspect",
            data={"token": before.json()["access_token"]},
            auth=(client_id, secret),
        )
        # Still active, narrowed to the client's current registration.
        assert introspected.json()["active"] is True, introspected.text
        assert introspected.json()["scope"] == "me:read", introspected.text

        # Grant types changed on A: B refuses the grant it no longer allows.
        patched = on_a.patch(
            path,
            json={"grant_types": ["authorization_code"], "redirect_uris": ["https://rp.test/cb"]},
            headers=headers,
        )
        assert patched.status_code == 200, patched.text
        unauthorized = _token(on_b, client_id, secret)
        assert unauthorized.status_code == 400, unauthorized.text
        assert unauthorized.json()["error"] == "unauthorized_client"
        patched = on_a.patch(
            path, json={"grant_types": ["client_credentials"], "redirect_uris": []}, headers=headers
        )
        assert patched.status_code == 200, patched.text
        assert _token(on_b, client_id, secret).status_code == 200  # warm again

        # Deleted on A: refused on B at once.
        assert on_a.delete(path, headers=headers).status_code == 204
        gone = _token(on_b, client_id, secret)
        assert gone.status_code == 401, gone.text
        assert gone.json()["error"] == "invalid_client"
    a.assert_stopped_cleanly()
    b.assert_stopped_cleanly()
