"""Authorization responses: back to the client's redirect URI, with ``iss`` (RFC 9207).

``response_mode=query`` (RFC 6749 section 4.1.2) is a 303 (never 307: a 307 after the
consent form would repost the user's form to the client). ``form_post`` (OAuth 2.0 Form
Post Response Mode) is a page whose form posts the parameters to the redirect URI; one
hashed inline script submits it, and without JavaScript the user presses the button.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from keyturn.api.deps import get_services
from keyturn.errors import OAuthError, UnsafeAuthorizationRequest
from keyturn.services.oauth2 import Redirectable

if TYPE_CHECKING:
    # Only the type: the sign-in page imports this module, and api.ui imports it.
    from keyturn.api.ui.kit import PageKit

AUTO_SUBMIT = "document.forms[0].submit();"
AUTO_SUBMIT_HASH = "sha256-" + base64.b64encode(
    hashlib.sha256(AUTO_SUBMIT.encode("ascii")).digest()
).decode("ascii")
# What may stand in a CSP source expression built from a registered redirect URI; the
# registration rules already guarantee it, this is the second lock.
_CSP_SOURCE = re.compile(r"^[a-z][a-z0-9+.\-]*:(//[a-z0-9.\-\[\]:]+)?$")


def redirect_origin(redirect_uri: str) -> str | None:
    """The CSP source of a redirect URI: ``https://host[:port]``, or ``scheme:`` for a
    private-use scheme (RFC 8252 section 7.1); None if it cannot be expressed safely."""
    parts = urlsplit(redirect_uri)
    source = f"{parts.scheme}://{parts.netloc}" if parts.netloc else f"{parts.scheme}:"
    return source if _CSP_SOURCE.match(source) else None


def form_action(kit: PageKit, redirect_uri: str) -> str:
    """The page CSP allowing forms (and their redirects) to us and to ``redirect_uri``."""
    origin = redirect_origin(redirect_uri)
    return kit.renderer.policy(f"'self' {origin}" if origin else "'self'")


async def oauth_target(request: Request, next_path: str | None) -> Redirectable | None:
    """The client's checked redirect target when a sign-in returns to
    ``/oauth2/authorize``; None for any other ``next`` or an unsafe request.

    The sign-in page's CSP then names the redirect URI's origin in ``form-action``
    (Chrome checks it on the redirects after the login POST), and the page names the
    application that asks."""
    if not next_path or not next_path.startswith("/oauth2/authorize?"):
        return None
    params = dict(parse_qsl(urlsplit(next_path).query, keep_blank_values=True))
    try:
        return await get_services(request).authorizations.client_and_redirect(params)
    except UnsafeAuthorizationRequest:
        return None


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
    return RedirectResponse(
        location, status_code=303, headers={"cache-control": "no-store", "pragma": "no-cache"}
    )


def deliver_error(
    kit: PageKit, request: Request, target: Redirectable, issuer: str, exc: OAuthError
) -> Response:
    """RFC 6749 section 4.1.2.1: ``error`` and ``error_description`` to the client."""
    return deliver(
        kit, request, target, issuer, {"error": exc.code, "error_description": exc.detail}
    )
