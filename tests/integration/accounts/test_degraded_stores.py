"""Redis loss degrades to the database; it never opens a door (DESIGN.md section 6)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from helpers import bearer, running_app, signup_login
from keyturn.config import Settings
from net import free_port

pytestmark = pytest.mark.anyio


def dead_redis_url() -> str:
    # Nothing listens on a port that was free a moment ago.
    return f"redis://127.0.0.1:{free_port()}/0"


async def test_revocation_falls_back_to_the_database(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(redis_url=dead_redis_url())
    async with running_app(settings) as client:
        tokens = await signup_login(client)
        me = await client.get("/v1/me", headers=bearer(tokens["access_token"]))
        assert me.status_code == 200

        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"] == {"database": "ok", "redis": "unavailable"}

        assert (
            await client.post("/v1/auth/logout", headers=bearer(tokens["access_token"]))
        ).status_code == 204
        after = await client.get("/v1/me", headers=bearer(tokens["access_token"]))
        assert after.status_code == 401
        assert after.json()["code"] == "session_revoked"

        metrics = (await client.get("/metrics")).text
        assert 'keyturn_revocation_store_errors_total{operation="revoke"}' in metrics
        assert 'keyturn_revocation_store_errors_total{operation="is_revoked"}' in metrics
