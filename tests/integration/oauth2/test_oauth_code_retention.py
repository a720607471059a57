"""Authorization codes are kept a day after they expire, then deleted (the table would
otherwise grow by one row per authorization forever)."""

from __future__ import annotations

from datetime import timedelta

import anyio
import httpx
import pytest
import time_machine
from fastapi import FastAPI

from conftest import SettingsFactory
from helpers import lifespan
from keyturn.app import create_app
from keyturn.domain import utcnow
from oauth_helpers import code_for, register, signed_in, token

pytestmark = pytest.mark.anyio


async def stored(app: FastAPI, code: str) -> bool:
    services = app.state.services
    async with services.auth._uow_factory() as uow:
        found = await uow.authorization_codes.find([services.authorizations.digester.digest(code)])
    return found is not None


async def new_code(app: FastAPI, client: httpx.AsyncClient) -> str:
    # Without PKCE: the subject here is the stored row, not the flow's checks.
    oauth_client = await register(app, client, require_pkce=False)
    await signed_in(client)
    code, _ = await code_for(client, oauth_client)
    redeemed = await token(
        client,
        oauth_client,
        grant_type="authorization_code",
        code=code,
        redirect_uri=oauth_client["redirect_uris"][0],
    )
    assert redeemed.status_code == 200, redeemed.text
    return code


async def test_codes_are_pruned_a_day_after_they_expire(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    used = await new_code(app, client)
    authorizations = app.state.services.authorizations
    # Within the day a replay must still find the row (and revoke what it issued).
    with time_machine.travel(utcnow() + timedelta(hours=23)):
        assert await authorizations.prune_codes() == 0
    assert await stored(app, used)
    with time_machine.travel(utcnow() + timedelta(hours=25)):
        assert await authorizations.prune_codes() >= 1
    assert not await stored(app, used)


async def test_every_process_prunes_on_its_own_schedule(
    make_settings: SettingsFactory,
) -> None:
    application = create_app(make_settings(code_prune_seconds=0.05))
    async with lifespan(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            # Issued "two days ago": already past its retention when the schedule runs.
            with time_machine.travel(utcnow() - timedelta(days=2)):
                used = await new_code(application, client)
            # Returns as soon as the row is gone; the bound only stops a hang.
            with anyio.fail_after(30):
                while True:
                    if not await stored(application, used):
                        break
                    await anyio.sleep(0.05)
