"""``/ui/``, ``/ui/login``, ``/ui/signup``, ``/ui/logout``: the browser session's pages."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from keyturn.api.http.deps import get_client, get_services
from keyturn.api.oauth2.responses import form_action, oauth_target
from keyturn.api.rest.schemas.auth import LoginRequest, SignupRequest
from keyturn.api.ui.forms import field_errors, safe_next
from keyturn.api.ui.kit import PageKit, see_other
from keyturn.errors import (
    AuthenticationFailed,
    EmailNotVerified,
    InvalidInput,
    KeyturnError,
    RateLimited,
)

HOME = "/ui/"
MAX_LOGIN_HINT = 320
# ``next``: where to go after signing in; only a same-origin path counts (forms.safe_next).
NextQuery = Annotated[str | None, Query(alias="next")]
LOGIN_NOTICES = {
    "signed_out": "You are signed out.",
    "password_reset": "Your password was changed. Sign in with the new one.",
}


def _with_next(path: str, next_path: str | None, **query: str) -> str:
    params = [f"{name}={quote(value, safe='')}" for name, value in query.items()]
    if next_path:
        params.append(f"next={quote(next_path, safe='')}")
    return f"{path}?{'&'.join(params)}" if params else path


def add_sign_in_routes(router: APIRouter, kit: PageKit) -> None:
    """Registers the sign-in pages on ``router`` (prefix ``/ui``)."""

    @router.get("")
    async def bare_prefix() -> Response:
        # The app redirects no trailing slashes (they were built from the Host header);
        # this one is relative, so the browser stays on the host it asked.
        return see_other(HOME)

    @router.get("/")
    async def home(request: Request) -> Response:
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
        request: Request, next_: NextQuery = None, status: str = "", login_hint: str = ""
    ) -> Response:
        next_path = safe_next(next_)
        target = await oauth_target(request, next_path)
        return kit.render(
            request,
            "login.html",
            # Signing in may end in a redirect to an OAuth client (through
            # /oauth2/authorize): form-action must name that client's origin too.
            csp=None if target is None else form_action(kit, target.redirect_uri),
            title="Sign in",
            # The application that sent the user here (from /oauth2/authorize).
            client_name=None if target is None else target.client_name,
            next=next_path,
            # OIDC Core section 3.1.2.1 login_hint: prefilled, never trusted.
            email=login_hint[:MAX_LOGIN_HINT],
            notice=LOGIN_NOTICES.get(status),
        )

    @router.post("/login")
    async def login(request: Request) -> Response:
        form = await kit.checked_form(request, "login")
        if isinstance(form, Response):
            return form
        next_path = safe_next(form.get("next"))
        email = form.get("email", "")
        target = await oauth_target(request, next_path)

        def again(errors: dict[str, str], status: int) -> Response:
            return kit.render(
                request,
                "login.html",
                status=status,
                # Still on the way back to an OAuth client: same policy, same name.
                csp=None if target is None else form_action(kit, target.redirect_uri),
                title="Sign in",
                client_name=None if target is None else target.client_name,
                next=next_path,
                email=email,
                errors=errors,
            )

        if refused := await kit.count_request(request):
            return kit.error_page(request, refused)
        try:
            body = LoginRequest.model_validate(
                {"email": email, "password": form.get("password", "")}
            )
        except ValidationError as exc:
            return again(field_errors(exc), 422)
        services = get_services(request)
        try:
            # The same AuthService check as POST /v1/auth/login: throttle, lock, audit.
            login = await services.browser.login(
                str(body.email),
                body.password,
                get_client(request),
                replacing=request.cookies.get(kit.cookies.session),
            )
        except RateLimited as exc:
            return kit.error_page(request, exc)
        except (AuthenticationFailed, EmailNotVerified) as exc:
            # A locked account lands here too, word for word like a wrong password.
            return again(kit.form_errors(exc), exc.status)
        except KeyturnError as exc:
            return kit.error_page(request, exc)
        response = see_other(next_path or HOME)
        lifetime = int((login.session.expires_at - login.session.created_at).total_seconds())
        kit.cookies.set(response, kit.cookies.session, login.cookie, max_age=lifetime)
        return response

    @router.get("/signup")
    async def signup_page(request: Request, next_: NextQuery = None, status: str = "") -> Response:
        return kit.render(
            request,
            "signup.html",
            title="Check your mail" if status == "sent" else "Create an account",
            next=safe_next(next_),
            sent=status == "sent",
            email="",
            name="",
            password_hint=kit.password_hint,
        )

    @router.post("/signup")
    async def signup(request: Request) -> Response:
        form = await kit.checked_form(request, "signup")
        if isinstance(form, Response):
            return form
        next_path = safe_next(form.get("next"))
        email, name = form.get("email", ""), form.get("name", "")

        def again(errors: dict[str, str], status: int) -> Response:
            return kit.render(
                request,
                "signup.html",
                status=status,
                title="Create an account",
                next=next_path,
                sent=False,
                email=email,
                name=name,
                errors=errors,
                password_hint=kit.password_hint,
            )

        if refused := await kit.count_request(request):
            return kit.error_page(request, refused)
        try:
            body = SignupRequest.model_validate(
                {"email": email, "password": form.get("password", ""), "name": name or None}
            )
        except ValidationError as exc:
            return again(field_errors(exc), 422)
        try:
            await get_services(request).auth.signup(
                str(body.email), body.password, body.name, get_client(request)
            )
        except InvalidInput as exc:
            # Policy refusals: they depend on the password, never on the address.
            return again(kit.form_errors(exc), exc.status)
        except KeyturnError as exc:
            return kit.error_page(request, exc)
        # The same answer whether or not the address had an account (no enumeration).
        return see_other(_with_next("/ui/signup", next_path, status="sent"))

    @router.get("/logout")
    async def logout_page(request: Request) -> Response:
        current = await kit.current_session(request)
        return kit.render(
            request,
            "logout.html",
            title="Sign out" if current else "Signed out",
            user=current.user if current else None,
        )

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        form = await kit.checked_form(request, "logout")
        if isinstance(form, Response):
            return form
        await get_services(request).browser.logout(
            request.cookies.get(kit.cookies.session), get_client(request)
        )
        response = see_other("/ui/login?status=signed_out")
        kit.cookies.clear(response, kit.cookies.session)
        return response
