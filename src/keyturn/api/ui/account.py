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
from keyturn.api.ui.kit import KitDep, PageKit, see_other, sign_in_first

router = APIRouter(prefix="/ui", include_in_schema=False)


def _missing_token(kit: PageKit, request: Request) -> Response:
    return kit.message(
        request,
        "The link is incomplete",
        "Open the link again from the mail, all of it.",
        status=400,
    )


# The two pages whose button POSTs a mailed token: title, form action, button.
_CONFIRM = {
    "verify": ("Verify your email address", "/ui/verify", "Verify my address"),
    "email-confirm": (
        "Confirm your new email address",
        "/ui/email/confirm",
        "Confirm the new address",
    ),
}


def _confirm_page(
    kit: PageKit, request: Request, token: str, *, purpose: str, question: str
) -> Response:
    title, action, button = _CONFIRM[purpose]
    return kit.render(
        request,
        "confirm.html",
        title=title,
        question=question,
        action=action,
        purpose=purpose,
        token=token,
        button=button,
    )


async def _posted_token(kit: PageKit, request: Request, form: dict[str, str]) -> str | Response:
    """The form's token once the per-IP ceiling allows, else the page to answer."""
    if refused := await kit.count_request(request):
        return refused
    try:
        return TokenRequest.model_validate({"token": form.get("token", "")}).token
    except ValidationError:
        return _missing_token(kit, request)


# -- forgot -------------------------------------------------------------------------------


@router.get("/forgot")
async def forgot_page(request: Request, kit: KitDep, status: str = "") -> Response:
    sent = status == "sent"
    return kit.render(
        request,
        "forgot.html",
        title="Check your mail" if sent else "Reset your password",
        sent=sent,
        email="",
    )


@router.post("/forgot")
async def forgot(request: Request, kit: KitDep) -> Response:
    form = await kit.checked_form(request, "forgot")
    if isinstance(form, Response):
        return form
    email = form.get("email", "")
    if refused := await kit.count_request(request):
        return refused
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
    sent = await kit.attempt(
        request,
        get_services(request).account.forgot_password(str(body.email), get_client(request)),
    )
    # The same page for every address (no enumeration).
    return sent if isinstance(sent, Response) else see_other("/ui/forgot?status=sent")


# -- reset --------------------------------------------------------------------------------


def _reset_form(
    kit: PageKit,
    request: Request,
    token: str,
    errors: dict[str, str] | None = None,
    status: int = 200,
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
async def reset_page(request: Request, kit: KitDep, token: str = "") -> Response:
    if not token:
        return _missing_token(kit, request)
    return _reset_form(kit, request, token)


@router.post("/reset")
async def reset(request: Request, kit: KitDep) -> Response:
    form = await kit.checked_form(request, "reset")
    if isinstance(form, Response):
        return form
    token, password = form.get("token", ""), form.get("password", "")
    if refused := await kit.count_request(request):
        return refused
    try:
        body = ResetPasswordRequest.model_validate({"token": token, "password": password})
    except ValidationError as exc:
        errors = field_errors(exc)
        if "token" in errors:
            return _missing_token(kit, request)
        return _reset_form(kit, request, token, errors, 422)
    if form.get("password_confirm", "") != password:
        mismatch = {"password_confirm": "The two passwords are not the same."}
        return _reset_form(kit, request, token, mismatch, 422)
    done = await kit.attempt(
        request,
        get_services(request).account.reset_password(
            body.token, body.password, get_client(request)
        ),
        # A policy refusal is checked before the token is used: the same link still works.
        form=lambda errors, status: _reset_form(kit, request, token, errors, status),
        new_link="/ui/forgot",
    )
    return done if isinstance(done, Response) else see_other("/ui/login?status=password_reset")


# -- verify -------------------------------------------------------------------------------


@router.get("/verify")
async def verify_page(request: Request, kit: KitDep, token: str = "", status: str = "") -> Response:
    if status == "done":
        return kit.message(
            request,
            "Address verified",
            "Thank you: your email address is verified.",
            link="/ui/login",
            link_text="Sign in",
        )
    if not token:
        return _missing_token(kit, request)
    question = "Confirm that this email address is yours."
    return _confirm_page(kit, request, token, purpose="verify", question=question)


@router.post("/verify")
async def verify(request: Request, kit: KitDep) -> Response:
    form = await kit.checked_form(request, "verify")
    if isinstance(form, Response):
        return form
    token = await _posted_token(kit, request, form)
    if isinstance(token, Response):
        return token
    done = await kit.attempt(
        request,
        get_services(request).account.verify_email(token, get_client(request)),
        new_link="/ui/login",
    )
    return done if isinstance(done, Response) else see_other("/ui/verify?status=done")


# -- email change confirmation (needs the signed-in owner) --------------------------------


def _confirm_link(token: str) -> str:
    return "/ui/email/confirm?token=" + quote(token, safe="")


@router.get("/email/confirm")
async def email_confirm_page(
    request: Request, kit: KitDep, token: str = "", status: str = ""
) -> Response:
    if status == "done":
        return kit.message(
            request,
            "Address changed",
            "Your account now uses the new email address.",
            link="/ui/",
            link_text="Continue",
        )
    if not token:
        return _missing_token(kit, request)
    current = await kit.current_session(request)
    if current is None:
        return sign_in_first(_confirm_link(token))
    question = f"Use this new address for the account {current.user.email}?"
    return _confirm_page(kit, request, token, purpose="email-confirm", question=question)


@router.post("/email/confirm")
async def email_confirm(request: Request, kit: KitDep) -> Response:
    form = await kit.checked_form(request, "email-confirm")
    if isinstance(form, Response):
        return form
    current = await kit.current_session(request)
    if current is None:
        return sign_in_first(_confirm_link(form.get("token", "")))
    token = await _posted_token(kit, request, form)
    if isinstance(token, Response):
        return token
    done = await kit.attempt(
        request,
        get_services(request).account.confirm_email_change(
            current.principal(), token, get_client(request)
        ),
        new_link="/ui/",
        start_again="/ui/",
        # The sign-in is too old to move the recovery address (ASVS 7.5.1): sign in
        # again with the password, then come back to the same link.
        back=_confirm_link(token),
    )
    return done if isinstance(done, Response) else see_other("/ui/email/confirm?status=done")
