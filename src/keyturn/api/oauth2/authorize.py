"""``GET|POST /oauth2/authorize``: the authorization endpoint (RFC 6749 section 3.1,
section 4.1.1; OpenID Connect Core section 3.1.2.1, which adds the POST form).

A browser endpoint, not part of the JSON API (left out of the OpenAPI document, like
the hosted pages). Its answers are a page (a broken request that must not be redirected,
RFC 9700 section 4.1.3), a 303 to the sign-in or consent page, or the authorization
response at the client's redirect URI (``api/oauth2/responses.py``).
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from keyturn.api.http.deps import get_services
from keyturn.api.http.forms import read_form, read_query
from keyturn.api.oauth2 import consent
from keyturn.api.oauth2.requests import (
    AUTHORIZE_PATH,
    authorize_url,
    checked_request,
    refused_page,
)
from keyturn.api.oauth2.responses import deliver, deliver_error
from keyturn.api.ui.forms import MAX_NEXT_LENGTH
from keyturn.api.ui.kit import KitDep, PageKit, see_other
from keyturn.domain import utcnow
from keyturn.errors import OAuthError, OAuthInvalidRequest, ServiceUnavailable
from keyturn.services.oauth2.authorization_request import (
    AUTH_AFTER,
    AuthorizationRequest,
    Redirectable,
)
from keyturn.services.oauth2.authorize import Next


def login_redirect(
    request: AuthorizationRequest, params: dict[str, str], kit: PageKit, req: Request
) -> Response:
    """To the sign-in page, with ``next`` back here.

    ``prompt=login`` leaves the URL (else coming back would ask again, forever) and
    ``kt_auth_after`` = now (milliseconds) takes its place: the session must be newer
    than this request. ``max_age`` (OIDC Core section 3.1.2.1) is pinned the same way:
    the sign-in about to happen satisfies it, however small it is (``max_age=0``).
    """
    back = dict(params)
    fresh = "login" in request.prompt or request.auth_after is not None
    if "login" in request.prompt:
        remaining = [value for value in back.get("prompt", "").split() if value != "login"]
        if remaining:
            back["prompt"] = " ".join(remaining)
        else:
            back.pop("prompt", None)
    if fresh:
        back[AUTH_AFTER] = str(int(utcnow().timestamp() * 1000))
    next_url = authorize_url(back)
    if len(next_url) > MAX_NEXT_LENGTH:
        target = Redirectable(request.redirect_uri, request.state, request.response_mode)
        return deliver_error(
            kit,
            req,
            target,
            get_services(req).authorizations.issuer,
            OAuthInvalidRequest("The authorization request is too long to sign in with."),
        )
    login = f"/ui/login?next={quote(next_url, safe='')}"
    if request.login_hint:
        login += f"&login_hint={quote(request.login_hint, safe='')}"
    return see_other(login)


def pinned(request: AuthorizationRequest, params: dict[str, str]) -> dict[str, str]:
    """``params`` with the freshness floor of ``max_age`` pinned as ``kt_auth_after``,
    so the consent page judges the sign-in as of this request, not of the click."""
    floor = request.auth_after
    return params if floor is None else {**params, AUTH_AFTER: str(floor)}


async def handle_authorize(kit: PageKit, request: Request, params: dict[str, str]) -> Response:
    """The whole authorization endpoint, for GET and POST alike."""
    checked = await checked_request(kit, request, params)
    if isinstance(checked, Response):
        return checked
    parsed, target = checked
    service = get_services(request).authorizations
    try:
        browser = await kit.current_session(request)
        try:
            step, consent = await service.next_step(parsed, browser)
        except OAuthError as exc:
            return deliver_error(kit, request, target, service.issuer, exc)
        if step is Next.LOGIN:
            return login_redirect(parsed, params, kit, request)
        if step is Next.CONSENT or browser is None or consent is None:
            return see_other(f"/ui/consent?{urlencode(pinned(parsed, params))}")
        code = await service.issue(parsed, browser, consent)
    except ServiceUnavailable as exc:
        # The redirect URI is verified by now, so even an outage goes back to the client,
        # as temporarily_unavailable (RFC 6749 section 4.1.2.1); before that, a page.
        return deliver_error(kit, request, target, service.issuer, exc)
    return deliver(kit, request, target, service.issuer, {"code": code})


router = APIRouter(include_in_schema=False)


@router.get(AUTHORIZE_PATH)
async def authorize(request: Request, kit: KitDep) -> Response:
    params = read_query(request)
    if params is None:
        return refused_page(kit, request, "A parameter was repeated or malformed.")
    return await handle_authorize(kit, request, params)


@router.post(AUTHORIZE_PATH)
async def authorize_form(request: Request, kit: KitDep) -> Response:
    # OIDC Core section 3.1.2.1: the same parameters, form-serialised.
    params = await read_form(request)
    if params is None:
        return refused_page(kit, request, "A parameter was repeated or malformed.")
    return await handle_authorize(kit, request, params)


# /ui/consent is the second half of the authorization endpoint.
router.include_router(consent.router)
