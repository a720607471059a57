"""Authorization responses: back to the client's redirect URI, with ``iss`` (RFC 9207).

``response_mode=query`` (RFC 6749 section 4.1.2) is a 303 (never 307: a 307 after the
consent form would repost the user's form to the client). ``form_post`` (OAuth 2.0 Form
Post Response Mode) is a page whose form posts the parameters to the redirect URI; one
hashed inline script submits it, and without JavaScript the user presses the button.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from urllib.parse import urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from keyturn.api.problems import rendering
from keyturn.api.ui.kit import PageKit
from keyturn.api.ui.rendering import redirect_origin
from keyturn.errors import KeyturnError
from keyturn.services.oauth2.authorization_request import Redirectable

# Answers carrying codes, tokens, token state or claims (personal data): never stored
# by a cache (RFC 6749 sections 4.1.2 and 5.1, RFC 7662 section 2.2).
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
AUTO_SUBMIT = "document.forms[0].submit();"
AUTO_SUBMIT_HASH = "sha256-" + base64.b64encode(
    hashlib.sha256(AUTO_SUBMIT.encode("ascii")).digest()
).decode("ascii")


def deliver(
    kit: PageKit,
    request: Request,
    target: Redirectable,
    issuer: str,
    values: Mapping[str, str],
) -> Response:
    """Sends ``values`` (a code or an error) to the client with ``state`` and ``iss``."""
    params = dict(values)
    if target.state is not None:
        params["state"] = target.state
    # RFC 9207 section 2: the issuer identifies who answered (mix-up defence).
    params["iss"] = issuer
    if target.response_mode == "form_post":
        origin = redirect_origin(target.redirect_uri)
        csp = kit.renderer.policy(origin or "'none'", script=AUTO_SUBMIT_HASH)
        return kit.renderer.page(
            "form_post.html",
            csp=csp,
            title="Returning to the application",
            action=target.redirect_uri,
            fields=list(params.items()),
            script=AUTO_SUBMIT,
        )
    # RFC 6749 section 3.1.2: a query in the registered URI is kept.
    separator = "&" if urlsplit(target.redirect_uri).query else "?"
    if target.redirect_uri.endswith("?"):
        separator = ""
    location = target.redirect_uri + separator + urlencode(params)
    return RedirectResponse(location, status_code=303, headers=NO_STORE)


def deliver_error(
    kit: PageKit, request: Request, target: Redirectable, issuer: str, exc: KeyturnError
) -> Response:
    """RFC 6749 section 4.1.2.1: ``error`` and ``error_description`` to the client."""
    shown = rendering(exc)
    values = {"error": shown.oauth_error, "error_description": shown.detail}
    return deliver(kit, request, target, issuer, values)
