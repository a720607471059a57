"""Reading an authorization request (RFC 6749 section 3.1) and refusing a broken one."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from keyturn.api.ui.kit import PageKit

AUTHORIZE_PATH = "/oauth2/authorize"


def authorize_url(params: dict[str, str]) -> str:
    return f"{AUTHORIZE_PATH}?{urlencode(params)}"


def refused_page(kit: PageKit, request: Request, detail: str) -> Response:
    """The answer when the request cannot safely go back to the client: a page, no
    ``Location`` (RFC 6749 section 4.1.2.1, RFC 9700 section 4.1.3)."""
    return kit.message(
        request,
        "This sign-in request is not valid",
        f"{detail} Go back to the application and try again.",
        status=400,
    )
