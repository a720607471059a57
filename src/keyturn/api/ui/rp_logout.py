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
from urllib.parse import urlencode

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from keyturn.api.http.deps import get_client, get_services
from keyturn.api.http.forms import read_form
from keyturn.api.ui.kit import CSRF_FIELD, KitDep, PageKit, see_other
from keyturn.services.oauth2.rp_logout import LogoutRequest

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


# Pages outside /ui whose paths the OpenID Connect specifications fix.
router = APIRouter(include_in_schema=False)


def _finish(kit: PageKit, request: Request, checked: LogoutRequest, state: str | None) -> Response:
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


async def _start(kit: PageKit, request: Request, params: Mapping[str, str]) -> Response:
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
        return _finish(kit, request, checked, state)
    if checked.user_id is not None and checked.user_id == current.user.id:
        await services.browser.logout(request.cookies.get(kit.cookies.session), get_client(request))
        return _finish(kit, request, checked, state)
    # No valid hint for this user: ask rather than sign out silently (a cross-site
    # GET must not end someone's session).
    return kit.render(
        request,
        "rp_logout.html",
        # CSP form-action also governs the redirects that follow a form submission, so
        # the registered post-logout origin must be listed (only that one, only here).
        csp=None
        if checked.redirect_uri is None
        else kit.renderer.redirect_policy(checked.redirect_uri),
        title="Sign out",
        user=current.user,
        client_name=checked.client.client_name if checked.client else None,
        client_id=checked.client.client_id if checked.client else None,
        redirect_uri=checked.redirect_uri,
        state=state,
    )


@router.get("/oauth2/logout")
async def rp_logout(request: Request, kit: KitDep) -> Response:
    return await _start(kit, request, request.query_params)


@router.post("/oauth2/logout")
async def rp_logout_post(request: Request, kit: KitDep) -> Response:
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
        return await _start(kit, request, form)
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
    return _finish(kit, request, checked, _param(confirmed, "state"))
