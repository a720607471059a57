"""Reading an authorization request (RFC 6749 section 3.1) and refusing a broken one."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from keyturn.api.http.deps import get_services
from keyturn.api.oauth2.responses import deliver_error
from keyturn.api.ui.kit import PageKit
from keyturn.errors import OAuthError, UnsafeAuthorizationRequest
from keyturn.services.oauth2.authorization_request import AuthorizationRequest, Redirectable

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


async def checked_request(
    kit: PageKit, request: Request, params: dict[str, str]
) -> tuple[AuthorizationRequest, Redirectable] | Response:
    """The parsed request and where its answer goes, else the refusal: a page when the
    client or redirect URI is not safe to answer, else an error sent to the client."""
    service = get_services(request).authorizations
    try:
        target = await service.client_and_redirect(params)
    except UnsafeAuthorizationRequest as exc:
        return refused_page(kit, request, exc.detail)
    try:
        return await service.parse(params, target), target
    except OAuthError as exc:
        return deliver_error(kit, request, target, service.issuer, exc)
