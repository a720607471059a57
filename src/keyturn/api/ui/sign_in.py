"""``/ui/``, ``/ui/login``, ``/ui/signup``, ``/ui/logout``: the browser session's pages."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import parse_qsl, quote, urlsplit

from fastapi import APIRouter, Query
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from keyturn.api.http.deps import get_client, get_services
from keyturn.api.rest.schemas.auth import LoginRequest, SignupRequest
from keyturn.api.ui.forms import field_errors, safe_next
from keyturn.api.ui.kit import KitDep, PageKit, see_other
from keyturn.api.ui.webauthn import passkey_page
from keyturn.domain_mfa import MfaChallenge
from keyturn.errors import UnsafeAuthorizationRequest
from keyturn.services.oauth2 import BrowserLogin
from keyturn.services.oauth2.authorization_request import Redirectable

HOME = "/ui/"
MAX_LOGIN_HINT = 320
# ``next``: where to go after signing in; only a same-origin path counts (forms.safe_next).
NextQuery = Annotated[str | None, Query(alias="next")]
LOGIN_NOTICES = {
    "signed_out": "You are signed out.",
    "password_reset": "Your password was changed. Sign in with the new one.",
    "mfa_expired": "That sign-in took too long or had too many tries. Sign in again.",
    "reauthenticate": "For your security, sign in again to change how you sign in.",
}
MFA_PAGE = "/ui/mfa"

router = APIRouter(prefix="/ui", include_in_schema=False)


def _with_next(path: str, next_path: str | None, **query: str) -> str:
    params = [f"{name}={quote(value, safe='')}" for name, value in query.items()]
    if next_path:
        params.append(f"next={quote(next_path, safe='')}")
    return f"{path}?{'&'.join(params)}" if params else path


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


def login_form(
    kit: PageKit,
    request: Request,
    target: Redirectable | None,
    next_path: str | None,
    email: str,
    *,
    status: int = 200,
    errors: dict[str, str] | None = None,
    notice: str | None = None,
) -> Response:
    return kit.render(
        request,
        "login.html",
        status=status,
        # Signing in may end in a redirect to an OAuth client (through /oauth2/authorize):
        # form-action must name that client's origin too. The page offers a passkey
        # sign-in: it loads webauthn.js.
        **passkey_page(request, kit, None if target is None else target.redirect_uri),
        title="Sign in",
        # The application that sent the user here (from /oauth2/authorize).
        client_name=None if target is None else target.client_name,
        next=next_path,
        email=email,
        errors=errors or {},
        notice=notice,
    )


def _signup_form(
    kit: PageKit,
    request: Request,
    next_path: str | None,
    *,
    sent: bool = False,
    email: str = "",
    name: str = "",
    status: int = 200,
    errors: dict[str, str] | None = None,
) -> Response:
    return kit.render(
        request,
        "signup.html",
        status=status,
        title="Check your mail" if sent else "Create an account",
        next=next_path,
        sent=sent,
        email=email,
        name=name,
        errors=errors or {},
        password_hint=kit.password_hint,
    )


@router.get("")
async def bare_prefix() -> Response:
    # The app redirects no trailing slashes (they were built from the Host header);
    # this one is relative, so the browser stays on the host it asked.
    return see_other(HOME)


@router.get("/")
async def home(request: Request, kit: KitDep) -> Response:
    current = await kit.current_session(request)
    if current is None:
        return see_other("/ui/login")
    return kit.render(
        request,
        "home.html",
        title="You are signed in",
        user=current.user,
        auth_time=current.auth_time,
    )


@router.get("/login")
async def login_page(
    request: Request, kit: KitDep, next_: NextQuery = None, status: str = "", login_hint: str = ""
) -> Response:
    # OIDC Core section 3.1.2.1 login_hint: prefilled, never trusted.
    email = login_hint[:MAX_LOGIN_HINT]
    next_path = safe_next(next_)
    target = await oauth_target(request, next_path)
    notice = LOGIN_NOTICES.get(status)
    return login_form(kit, request, target, next_path, email, notice=notice)


@router.post("/login")
async def login(request: Request, kit: KitDep) -> Response:
    form = await kit.checked_form(request, "login")
    if isinstance(form, Response):
        return form
    next_path = safe_next(form.get("next"))
    email = form.get("email", "")
    # Still on the way back to an OAuth client: same policy, same name.
    target = await oauth_target(request, next_path)

    def again(errors: dict[str, str], status: int) -> Response:
        return login_form(kit, request, target, next_path, email, status=status, errors=errors)

    if refused := await kit.count_request(request):
        return refused
    try:
        body = LoginRequest.model_validate({"email": email, "password": form.get("password", "")})
    except ValidationError as exc:
        return again(field_errors(exc), 422)
    # The same AuthService check as POST /v1/auth/login: throttle, lock, audit. A locked
    # account is refused in the form, word for word like a wrong password.
    session = get_services(request).browser.login(
        str(body.email),
        body.password,
        get_client(request),
        replacing=request.cookies.get(kit.cookies.session),
    )
    signed_in = await kit.attempt(request, session, form=again)
    if isinstance(signed_in, Response):
        return signed_in
    if isinstance(signed_in, MfaChallenge):
        # No session yet: the mfa_token waits in its own short cookie (path /ui, as long
        # as the token lives) and /ui/mfa asks for the second factor (issue 15).
        response = see_other(_with_next(MFA_PAGE, next_path))
        kit.cookies.set_mfa(response, signed_in.mfa_token, max_age=signed_in.expires_in)
        return response
    return signed_in_response(kit, signed_in, next_path)


def signed_in_response(kit: PageKit, signed_in: BrowserLogin, next_path: str | None) -> Response:
    """``303`` to ``next`` (or the account page) with the new session's cookie."""
    return set_session(kit, see_other(next_path or HOME), signed_in)


def set_session(kit: PageKit, response: Response, signed_in: BrowserLogin) -> Response:
    """``response`` carrying the new session's cookie (as long as the session lives);
    a pending second step's cookie is cleared."""
    created = signed_in.session
    lifetime = int((created.expires_at - created.created_at).total_seconds())
    kit.cookies.set(response, kit.cookies.session, signed_in.cookie, max_age=lifetime)
    kit.cookies.clear_mfa(response)
    return response


@router.get("/signup")
async def signup_page(
    request: Request, kit: KitDep, next_: NextQuery = None, status: str = ""
) -> Response:
    return _signup_form(kit, request, safe_next(next_), sent=status == "sent")


@router.post("/signup")
async def signup(request: Request, kit: KitDep) -> Response:
    form = await kit.checked_form(request, "signup")
    if isinstance(form, Response):
        return form
    next_path = safe_next(form.get("next"))
    email, name = form.get("email", ""), form.get("name", "")

    def again(errors: dict[str, str], status: int) -> Response:
        return _signup_form(
            kit, request, next_path, email=email, name=name, status=status, errors=errors
        )

    if refused := await kit.count_request(request):
        return refused
    try:
        body = SignupRequest.model_validate(
            {"email": email, "password": form.get("password", ""), "name": name or None}
        )
    except ValidationError as exc:
        return again(field_errors(exc), 422)
    # Policy refusals show in the form: they depend on the password, never on the address.
    created = await kit.attempt(
        request,
        get_services(request).signup.signup(
            str(body.email), body.password, body.name, get_client(request)
        ),
        form=again,
    )
    if isinstance(created, Response):
        return created
    # The same answer whether or not the address had an account (no enumeration).
    return see_other(_with_next("/ui/signup", next_path, status="sent"))


@router.get("/logout")
async def logout_page(request: Request, kit: KitDep) -> Response:
    current = await kit.current_session(request)
    return kit.render(
        request,
        "logout.html",
        title="Sign out" if current else "Signed out",
        user=current.user if current else None,
    )


@router.post("/logout")
async def logout(request: Request, kit: KitDep) -> Response:
    form = await kit.checked_form(request, "logout")
    if isinstance(form, Response):
        return form
    await get_services(request).browser.logout(
        request.cookies.get(kit.cookies.session), get_client(request)
    )
    response = see_other("/ui/login?status=signed_out")
    kit.cookies.clear(response, kit.cookies.session)
    return response
