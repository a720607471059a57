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

from keyturn.api.deps import get_client, get_services
from keyturn.api.oauth2.requests import authorize_url, query_params, refused_page
from keyturn.api.oauth2.responses import deliver, deliver_error, form_action
from keyturn.api.ui.kit import PageKit, see_other
from keyturn.errors import AccessDenied, OAuthError, UnsafeAuthorizationRequest
from keyturn.services.oauth2 import AuthorizationRequest, BrowserSession, Redirectable

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


def add_consent_routes(router: APIRouter, kit: PageKit) -> None:
    """Registers ``/ui/consent`` on ``router`` (no prefix; the path is written out)."""

    async def load(
        request: Request, params: dict[str, str]
    ) -> tuple[AuthorizationRequest, BrowserSession, Redirectable] | Response:
        service = get_services(request).authorizations
        try:
            target = await service.client_and_redirect(params)
        except UnsafeAuthorizationRequest as exc:
            return refused_page(kit, request, exc.detail)
        try:
            parsed = await service.parse(params, target)
        except OAuthError as exc:
            return deliver_error(kit, request, target, service.issuer, exc)
        browser = await kit.current_session(request)
        if browser is None or service.needs_login(parsed, browser):
            # Back through the authorization endpoint, which sends the user to sign in.
            return see_other(authorize_url(params))
        return parsed, browser, target

    @router.get(CONSENT_PATH)
    async def consent_page(request: Request) -> Response:
        params = query_params(request)
        if params is None:
            return refused_page(kit, request, "A parameter was repeated or malformed.")
        loaded = await load(request, params)
        if isinstance(loaded, Response):
            return loaded
        parsed, browser, _ = loaded
        granted = await get_services(request).authorizations.granted_scopes(parsed, browser.user.id)
        return kit.render(
            request,
            "consent.html",
            # The Allow answer redirects to the client: form-action must name its origin.
            csp=form_action(kit, parsed.redirect_uri),
            title=f"Allow {parsed.client.client_name}?",
            client_name=parsed.client.client_name,
            client=parsed.client,
            # The home page's host says who this is (RFC 7591 section 2 client_uri).
            client_host=urlsplit(parsed.client.client_uri).hostname
            if parsed.client.client_uri
            else None,
            user=browser.user,
            scopes=[SCOPE_WORDS.get(name, name) for name in granted.split()],
            params=sorted(params.items()),
        )

    @router.post(CONSENT_PATH)
    async def consent(request: Request) -> Response:
        form = await kit.checked_form(request, "consent")
        if isinstance(form, Response):
            return form
        decision = form.pop("decision", "")
        loaded = await load(request, form)
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
