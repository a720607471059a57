"""Attack: a code approved by a browser session is redeemed after that session ended
(issue 12 finding 21).

ASVS v5.0.0 7.4.1 (an ended session is never used again) and 7.4.3 (a password change or
reset ends every other session). An attacker with a stolen session cookie has
``/oauth2/authorize`` approve a code, the owner notices and changes the password, ends
every other session or signs out: the code must not turn into a 30-day grant afterwards.
The token endpoint refuses (``invalid_grant``) a code whose approving browser session is
no longer live, and ``revoke_all`` expires the user's pending codes (except those of the
one session it keeps).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from helpers import PASSWORD, admin_headers, bearer, submit
from keyturn.domain import ClientInfo, utcnow
from oauth_helpers import code_for, pkce_pair, redeem, register, signed_in
from race_helpers import (
    EVENTS,
    Victim,
    live_session_ids,
    session_id_of,
    user_id_of,
)
from smtp_server import SmtpServer

pytestmark = pytest.mark.anyio

SCOPE = "openid offline_access"


async def approved_code(
    browser: httpx.AsyncClient, oauth_client: dict[str, Any]
) -> tuple[str, str]:
    """A code the signed-in ``browser`` approved, and its PKCE verifier."""
    verifier, challenge = pkce_pair()
    code, _ = await code_for(
        browser, oauth_client, scope=SCOPE, code_challenge=challenge, code_challenge_method="S256"
    )
    return code, verifier


async def browser_logout(v: Victim, browser: httpx.AsyncClient) -> None:
    answer = await submit(browser, "/ui/logout", {})
    assert answer.status_code == 303, answer.text


EventInBrowser = Callable[[Victim, httpx.AsyncClient], Awaitable[None]]

# Whatever ends the approving session: the account events of every session, and the
# browser's own sign-out.
ENDINGS: dict[str, EventInBrowser] = {
    name: (lambda v, _browser, run=EVENTS[name]: run(v))
    for name in (
        "password_change",
        "password_reset",
        "end_other_sessions",
        "admin_end_sessions",
        "admin_reset_password",
    )
}
ENDINGS["browser_logout"] = browser_logout


@pytest.mark.parametrize("ending", list(ENDINGS))
async def test_asvs_7_4_3_a_code_approved_by_an_ended_session_is_refused(
    app: FastAPI, client: httpx.AsyncClient, smtp: SmtpServer, ending: str
) -> None:
    oauth_client = await register(app, client)
    admin = await admin_headers(app, client)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as browser:
        # The attacker's browser, signed in with the stolen cookie's session.
        email = await signed_in(browser)
        code, verifier = await approved_code(browser, oauth_client)
        # The owner, in a session of their own, recovers.
        login = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert login.status_code == 200, login.text
        v = Victim(
            app=app,
            http=client,
            smtp=smtp,
            email=email,
            user_id=await user_id_of(app, email),
            headers=bearer(login.json()["access_token"]),
            admin=admin,
        )
        before = await live_session_ids(app, v.user_id)
        await ENDINGS[ending](v, browser)
        answer = await redeem(browser, oauth_client, code, verifier)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "invalid_grant"
    assert "refresh_token" not in answer.json()
    # No grant session was opened.
    assert await live_session_ids(app, v.user_id) <= before


async def test_asvs_7_4_3_ending_all_other_sessions_expires_their_pending_codes(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """``revoke_all`` expires the codes of the sessions it ends and keeps the codes of the
    session it keeps (the caller's own browser)."""
    oauth_client = await register(app, client)
    transport = httpx.ASGITransport(app=app)
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as kept,
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as other,
    ):
        email = await signed_in(kept)
        login = await submit(other, "/ui/login", {"email": email, "password": PASSWORD})
        assert login.status_code == 303, login.text
        kept_code, kept_verifier = await approved_code(kept, oauth_client)
        other_code, other_verifier = await approved_code(other, oauth_client)
        services = app.state.services
        browser = await services.browser.current(kept.cookies.get("keyturn_session"))
        assert browser is not None
        ended = await services.sessions.end_others(browser.principal(), ClientInfo(ip=None))
        assert ended == 1

        # The ended session's code is expired in the database, not only refused.
        async with services.auth._uow_factory() as uow:
            stored = await uow.authorization_codes.find(
                services.authorizations.digester.candidates(other_code)
            )
            still = await uow.authorization_codes.find(
                services.authorizations.digester.candidates(kept_code)
            )
        assert stored is not None
        assert still is not None
        assert stored.expires_at <= utcnow() < still.expires_at

        refused = await redeem(other, oauth_client, other_code, other_verifier)
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"] == "invalid_grant"
        # The kept session's code still works: nothing of the caller's own flow broke.
        granted = await redeem(kept, oauth_client, kept_code, kept_verifier)
        assert granted.status_code == 200, granted.text
        assert session_id_of(granted.json()["access_token"]) in await live_session_ids(
            app, browser.user.id
        )
