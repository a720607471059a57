"""``GET|POST /oauth2/logout``: OpenID Connect RP-Initiated Logout 1.0 (sections 2-3).

- A valid ``id_token_hint`` (ours, expired allowed) for the user signed in here ends the
  browser session at once (cookie cleared, session revoked and deny-listed).
- Otherwise a signed-in user is asked first (section 2: "the OP SHOULD ask the End-User
  whether to log out"): a CSRF-protected confirmation form that posts back here.
- Then a 303 to ``post_logout_redirect_uri`` with ``state`` (section 3) when that URI is
  exactly one the client registered; otherwise a "signed out" page and never a redirect.
- ``ui_locales`` and ``logout_hint`` are accepted and ignored (the pages are English only;
  the hint identifies the user well enough).
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from keyturn.api.deps import get_client, get_services
from keyturn.api.forms import read_form
from keyturn.api.ui.kit import CSRF_FIELD, PageKit, see_other
from keyturn.services.oauth2 import LogoutRequest

PURPOSE = "rp_logout"
# Longer values are no parameter we would ever issue or register; treated as absent.
MAX_HINT = 8192
MAX_VALUE = 2000


def _param(params: Mapping[str, str], name: str, limit: int = MAX_VALUE) -> str | None:
    value = params.get(name)
    return value if value and len(value) <= limit else None


def _back_to(uri: str, state: str | None) -> str:
    # Section 3: state goes back as a query parameter, added to any registered query.
    if state is None:
        return uri
    return f"{uri}{'&' if '?' in uri else '?'}{urlencode({'state': state})}"


def _form_action(kit: PageKit, uri: str | None) -> str:
    """The page CSP, allowing the confirmation form's redirect to the client's origin.

    CSP form-action also governs the redirects that follow a form submission, so the
    registered post-logout origin must be listed (only that one, only on this page).
    """
    if uri is None:
        return kit.renderer.csp
    parts = urlsplit(uri)
    source = f"{parts.scheme}://{parts.netloc}" if parts.netloc else f"{parts.scheme}:"
    return kit.renderer.csp.replace("form-action 'self'", f"form-action 'self' {source}")


def add_rp_logout_routes(router: APIRouter, kit: PageKit) -> None:
    async def finish(request: Request, checked: LogoutRequest, state: str | None) -> Response:
        if checked.redirect_uri is not None:
            response: Response = see_other(_back_to(checked.redirect_uri, state))
        else:
            response = kit.message(
                request,
                "Signed out",
                "You are signed out of this browser.",
                link="/ui/login",
                link_text="Sign in again",
            )
        kit.cookies.clear(response, kit.cookies.session)
        return response

    async def start(request: Request, params: Mapping[str, str]) -> Response:
        services = get_services(request)
        state = _param(params, "state")
        checked = await services.rp_logout.check(
            id_token_hint=_param(params, "id_token_hint", MAX_HINT),
            client_id=_param(params, "client_id"),
            redirect_uri=_param(params, "post_logout_redirect_uri"),
        )
        current = await kit.current_session(request)
        if current is None:
            # Nobody to sign out here; the client may still get its user back.
            return await finish(request, checked, state)
        if checked.user_id is not None and checked.user_id == current.user.id:
            await services.browser.logout(
                request.cookies.get(kit.cookies.session), get_client(request)
            )
            return await finish(request, checked, state)
        # No valid hint for this user: ask rather than sign out silently (a cross-site
        # GET must not end someone's session).
        response = kit.render(
            request,
            "rp_logout.html",
            title="Sign out",
            user=current.user,
            client_name=checked.client.client_name if checked.client else None,
            client_id=checked.client.client_id if checked.client else None,
            redirect_uri=checked.redirect_uri,
            state=state,
        )
        response.headers["content-security-policy"] = _form_action(kit, checked.redirect_uri)
        return response

    @router.get("/oauth2/logout")
    async def rp_logout(request: Request) -> Response:
        return await start(request, request.query_params)

    @router.post("/oauth2/logout")
    async def rp_logout_post(request: Request) -> Response:
        form = await read_form(request)
        if form is None:
            return kit.message(
                request,
                "The request could not be read",
                "Send the logout parameters as a form.",
                status=400,
            )
        if CSRF_FIELD not in form:
            # Section 2: the client may POST its logout request instead of a GET.
            return await start(request, form)
        confirmed = await kit.checked_form(request, PURPOSE)
        if isinstance(confirmed, Response):
            return confirmed
        services = get_services(request)
        # The hidden fields are checked again: nothing from the page is trusted.
        checked = await services.rp_logout.check(
            id_token_hint=None,
            client_id=_param(confirmed, "client_id"),
            redirect_uri=_param(confirmed, "post_logout_redirect_uri"),
        )
        await services.browser.logout(request.cookies.get(kit.cookies.session), get_client(request))
        return await finish(request, checked, _param(confirmed, "state"))
