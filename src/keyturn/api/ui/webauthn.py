"""What the pages that offer passkeys share: the script and its CSP, the dev hint, the
credential a form posts and the options a ceremony fetches (issue 15).

The ceremonies run in ``templates/webauthn.js`` (the only script of the hosted pages);
the checks (origin, RP ID, challenge, counter) are the MFA services' (W3C WebAuthn
Level 3 sections 7.1 and 7.2), never this module's.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Awaitable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from keyturn.api.problems import error_headers, rendering
from keyturn.api.ui.kit import PageKit
from keyturn.errors import KeyturnError

# The hidden field webauthn.js fills with the credential's JSON.
CREDENTIAL_FIELD = "credential"
# A WebAuthn response is a few kilobytes; anything near the body cap is not one.
MAX_CREDENTIAL_CHARS = 16_384
NO_STORE = {"cache-control": "no-store"}


def passkey_page(request: Request, kit: PageKit, redirect_uri: str | None = None) -> dict[str, Any]:
    """``kit.render`` arguments for a page loading ``webauthn.js``: its CSP (``script-src
    'self'; connect-src 'self'``, ``form-action`` naming ``redirect_uri`` when the sign-in
    goes back to an OAuth client), the script path and the dev hint."""
    return {
        "csp": kit.renderer.passkey_policy(redirect_uri),
        "script": kit.renderer.script_path,
        # A dev hint: production serves its issuer's host name.
        "passkey_hint": None if kit.settings.is_production else ip_host_hint(request),
    }


def ip_host_hint(request: Request) -> str | None:
    """The dev hint for a page opened on an IP address, else None.

    Browsers refuse an IP address as the RP ID (W3C WebAuthn Level 3 section 5.1.3,
    "valid domain"), so passkeys need a host name; ``localhost`` is one, and a secure
    context even over plain http.
    """
    host = request.url.hostname or ""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    port = request.url.port
    where = f"http://localhost:{port}" if port else "http://localhost"
    return (
        f"Passkeys do not work on an IP address such as {host}: open {where} "
        "instead (and set KEYTURN_ISSUER to it)."
    )


def posted_credential(form: Mapping[str, str]) -> dict[str, Any] | None:
    """The credential JSON object a passkey form posted, or None when it is not one.

    Only the outer shape is read here (an object of bounded size); the MFA services
    parse and check the rest.
    """
    raw = form.get(CREDENTIAL_FIELD, "")
    if not raw or len(raw) > MAX_CREDENTIAL_CHARS:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


async def options_answer(
    action: Awaitable[Mapping[str, Any]], *, sign_in: str | None = None
) -> Response:
    """The ceremony options as JSON (never cached), or the error as a small JSON body
    with its status for the script, which shows the form's own failure message. An error
    whose place is the sign-in page (a stale sign-in, a dead second step) also names
    ``sign_in``, where the script sends the browser."""
    try:
        options = await action
    except KeyturnError as exc:
        shown = rendering(exc)
        body = {"code": shown.code, "message": shown.message}
        if shown.place == "sign_in" and sign_in:
            body["location"] = sign_in
        return JSONResponse(
            body, status_code=shown.status, headers={**error_headers(exc), **NO_STORE}
        )
    return JSONResponse(dict(options), headers=NO_STORE)
