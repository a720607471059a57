"""``/ui/consent``: the user allows or denies an OAuth client (RFC 6749 section 4.1.1,
OpenID Connect Core section 3.1.2.4).

The page carries the whole authorization request in hidden fields; the POST validates it
again from the start (client, redirect URI, scopes, session), so nothing the browser
sends back is trusted beyond what ``/oauth2/authorize`` itself would accept.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from keyturn.api.http.deps import get_client, get_services
from keyturn.api.http.forms import read_query
from keyturn.api.oauth2.requests import (
    authorize_url,
    checked_request,
    refused_page,
)
from keyturn.api.oauth2.responses import deliver, deliver_error
from keyturn.api.ui.kit import KitDep, PageKit, see_other
from keyturn.errors import AccessDenied
from keyturn.services.oauth2.authorization_request import AuthorizationRequest, Redirectable
from keyturn.services.oauth2.browser_sessions import BrowserSession

CONSENT_PATH = "/ui/consent"
# What each scope means, in plain words (shown on the consent page).
SCOPE_WORDS = {
    "openid": "Know who you are (your account id)",
    "profile": "See your name",
    "email": "See your email address",
    "offline_access": "Stay connected when you are not using it",
    "me:read": "See your account details",
    "me:write": "Change your account details",
    "sessions:read": "See where you are signed in",
    "sessions:write": "Sign you out of your sessions",
    "users:read": "See every user account (administrator)",
    "users:write": "Change and lock user accounts (administrator)",
    "roles:write": "Manage roles (administrator)",
    "clients:write": "Manage OAuth applications (administrator)",
    "audit:read": "Read the audit log (administrator)",
    "keys:write": "Rotate signing keys (administrator)",
}


router = APIRouter(include_in_schema=False)


async def _load(
    kit: PageKit, request: Request, params: dict[str, str]
) -> tuple[AuthorizationRequest, BrowserSession, Redirectable] | Response:
    checked = await checked_request(kit, request, params)
    if isinstance(checked, Response):
        return checked
    parsed, target = checked
    browser = await kit.current_session(request)
    if browser is None or await get_services(request).authorizations.needs_login(parsed, browser):
        # Back through the authorization endpoint, which sends the user to sign in.
        return see_other(authorize_url(params))
    return parsed, browser, target


@router.get(CONSENT_PATH)
async def consent_page(request: Request, kit: KitDep) -> Response:
    params = read_query(request)
    if params is None:
        return refused_page(kit, request, "A parameter was repeated or malformed.")
    loaded = await _load(kit, request, params)
    if isinstance(loaded, Response):
        return loaded
    parsed, browser, _ = loaded
    granted = await get_services(request).authorizations.granted_scopes(parsed, browser.user.id)
    client = parsed.client
    return kit.render(
        request,
        "consent.html",
        # The Allow answer redirects to the client: form-action must name its origin.
        csp=kit.renderer.redirect_policy(parsed.redirect_uri),
        title=f"Allow {client.client_name}?",
        client_name=client.client_name,
        client=client,
        # The home page's host says who this is (RFC 7591 section 2 client_uri).
        client_host=urlsplit(client.client_uri).hostname if client.client_uri else None,
        user=browser.user,
        scopes=[SCOPE_WORDS.get(name, name) for name in granted.split()],
        params=sorted(params.items()),
    )


@router.post(CONSENT_PATH)
async def consent(request: Request, kit: KitDep) -> Response:
    form = await kit.checked_form(request, "consent")
    if isinstance(form, Response):
        return form
    decision = form.pop("decision", "")
    loaded = await _load(kit, request, form)
    if isinstance(loaded, Response):
        return loaded
    parsed, browser, target = loaded
    service = get_services(request).authorizations
    ip = get_client(request).ip
    if decision != "allow":
        await service.deny(parsed, browser, ip=ip)
        exc = AccessDenied("The user denied the request.")
        return deliver_error(kit, request, target, service.issuer, exc)
    code = await service.consent_and_issue(parsed, browser, ip=ip)
    return deliver(kit, request, target, service.issuer, {"code": code})
