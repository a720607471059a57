"""``/ui/forgot``, ``/ui/reset``, ``/ui/verify``, ``/ui/email/confirm``: the mailed links.

A GET never uses a token up: it shows a page whose button POSTs it. Mail scanners and
link previews fetch links with GET; if that verified an address or used a reset token,
a scanner would spend it before the person clicks (and a verification could happen
without the owner ever seeing it).
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from keyturn.api.http.deps import get_client, get_services
from keyturn.api.rest.schemas.account import EmailRequest, ResetPasswordRequest
from keyturn.api.rest.schemas.common import TokenRequest
from keyturn.api.ui.forms import field_errors
from keyturn.api.ui.kit import PageKit, message_for, see_other
from keyturn.errors import (
    FreshLoginRequired,
    InvalidInput,
    KeyturnError,
    OneTimeTokenError,
    PasswordPolicyError,
)


def add_account_routes(router: APIRouter, kit: PageKit) -> None:
    """Registers the pages the account mails link to on ``router`` (prefix ``/ui``)."""

    def missing_token(request: Request) -> Response:
        return kit.message(
            request,
            "The link is incomplete",
            "Open the link again from the mail, all of it.",
            status=400,
        )

    def token_refused(request: Request, exc: KeyturnError, again: str) -> Response:
        if isinstance(exc, OneTimeTokenError):
            return kit.message(
                request,
                "This link cannot be used",
                message_for(exc),
                status=exc.status,
                link=again,
                link_text="Ask for a new link",
            )
        return kit.error_page(request, exc)

    # -- forgot -----------------------------------------------------------------------

    @router.get("/forgot")
    async def forgot_page(request: Request, status: str = "") -> Response:
        sent = status == "sent"
        return kit.render(
            request,
            "forgot.html",
            title="Check your mail" if sent else "Reset your password",
            sent=sent,
            email="",
        )

    @router.post("/forgot")
    async def forgot(request: Request) -> Response:
        form = await kit.checked_form(request, "forgot")
        if isinstance(form, Response):
            return form
        email = form.get("email", "")
        if refused := await kit.count_request(request):
            return kit.error_page(request, refused)
        try:
            body = EmailRequest.model_validate({"email": email})
        except ValidationError as exc:
            return kit.render(
                request,
                "forgot.html",
                status=422,
                title="Reset your password",
                sent=False,
                email=email,
                errors=field_errors(exc),
            )
        try:
            await get_services(request).account.forgot_password(
                str(body.email), get_client(request)
            )
        except KeyturnError as exc:
            return kit.error_page(request, exc)
        # The same page for every address (no enumeration).
        return see_other("/ui/forgot?status=sent")

    # -- reset ------------------------------------------------------------------------

    def reset_form(
        request: Request, token: str, errors: dict[str, str] | None = None, status: int = 200
    ) -> Response:
        return kit.render(
            request,
            "reset.html",
            status=status,
            title="Choose a new password",
            token=token,
            errors=errors or {},
            password_hint=kit.password_hint,
        )

    @router.get("/reset")
    async def reset_page(request: Request, token: str = "") -> Response:
        if not token:
            return missing_token(request)
        return reset_form(request, token)

    @router.post("/reset")
    async def reset(request: Request) -> Response:
        form = await kit.checked_form(request, "reset")
        if isinstance(form, Response):
            return form
        token, password = form.get("token", ""), form.get("password", "")
        if refused := await kit.count_request(request):
            return kit.error_page(request, refused)
        try:
            body = ResetPasswordRequest.model_validate({"token": token, "password": password})
        except ValidationError as exc:
            errors = field_errors(exc)
            if "token" in errors:
                return missing_token(request)
            return reset_form(request, token, errors, 422)
        if form.get("password_confirm", "") != password:
            return reset_form(
                request, token, {"password_confirm": "The two passwords are not the same."}, 422
            )
        try:
            await get_services(request).account.reset_password(
                body.token, body.password, get_client(request)
            )
        except PasswordPolicyError as exc:
            # Checked before the token is used: the same link still works.
            return reset_form(request, token, kit.form_errors(exc), exc.status)
        except KeyturnError as exc:
            return token_refused(request, exc, "/ui/forgot")
        return see_other("/ui/login?status=password_reset")

    # -- verify -----------------------------------------------------------------------

    @router.get("/verify")
    async def verify_page(request: Request, token: str = "", status: str = "") -> Response:
        if status == "done":
            return kit.message(
                request,
                "Address verified",
                "Thank you: your email address is verified.",
                link="/ui/login",
                link_text="Sign in",
            )
        if not token:
            return missing_token(request)
        return kit.render(
            request,
            "confirm.html",
            title="Verify your email address",
            question="Confirm that this email address is yours.",
            action="/ui/verify",
            purpose="verify",
            token=token,
            button="Verify my address",
        )

    @router.post("/verify")
    async def verify(request: Request) -> Response:
        form = await kit.checked_form(request, "verify")
        if isinstance(form, Response):
            return form
        if refused := await kit.count_request(request):
            return kit.error_page(request, refused)
        try:
            body = TokenRequest.model_validate({"token": form.get("token", "")})
        except ValidationError:
            return missing_token(request)
        try:
            await get_services(request).account.verify_email(body.token, get_client(request))
        except KeyturnError as exc:
            return token_refused(request, exc, "/ui/login")
        return see_other("/ui/verify?status=done")

    # -- email change confirmation (needs the signed-in owner) ------------------------

    def sign_in_first(token: str) -> Response:
        back = "/ui/email/confirm?token=" + quote(token, safe="")
        return see_other("/ui/login?next=" + quote(back, safe=""))

    @router.get("/email/confirm")
    async def email_confirm_page(request: Request, token: str = "", status: str = "") -> Response:
        if status == "done":
            return kit.message(
                request,
                "Address changed",
                "Your account now uses the new email address.",
                link="/ui/",
                link_text="Continue",
            )
        if not token:
            return missing_token(request)
        current = await kit.current_session(request)
        if current is None:
            return sign_in_first(token)
        return kit.render(
            request,
            "confirm.html",
            title="Confirm your new email address",
            question=f"Use this new address for the account {current.user.email}?",
            action="/ui/email/confirm",
            purpose="email-confirm",
            token=token,
            button="Confirm the new address",
        )

    @router.post("/email/confirm")
    async def email_confirm(request: Request) -> Response:
        form = await kit.checked_form(request, "email-confirm")
        if isinstance(form, Response):
            return form
        current = await kit.current_session(request)
        if current is None:
            return sign_in_first(form.get("token", ""))
        if refused := await kit.count_request(request):
            return kit.error_page(request, refused)
        try:
            body = TokenRequest.model_validate({"token": form.get("token", "")})
        except ValidationError:
            return missing_token(request)
        try:
            await get_services(request).account.confirm_email_change(
                current.principal(), body.token, get_client(request)
            )
        except FreshLoginRequired:
            # The sign-in is too old to move the recovery address (ASVS 7.5.1): sign in
            # again with the password, then come back to the same link.
            return sign_in_first(body.token)
        except InvalidInput as exc:
            return token_refused(request, exc, "/ui/")
        except KeyturnError as exc:
            return kit.error_page(request, exc, link="/ui/")
        return see_other("/ui/email/confirm?status=done")
