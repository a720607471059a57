"""``/ui/mfa``: the second step of a hosted sign-in (issue 15).

``POST /ui/login`` answered by a right password for an account with a factor (or a role
that demands one) leaves no session: it puts the ``mfa_token`` into a short cookie
(``Cookies.mfa``: HttpOnly, SameSite=Lax, path ``/ui``, as long as the token lives) and
sends the browser here. This page asks for a TOTP code (RFC 6238), a recovery code or a
passkey (W3C WebAuthn Level 3, through ``webauthn.js``); an account that must enrol first
sets up an authenticator app here. Only then does a session cookie exist. The mfa cookie
is nothing but a pointer to the pending step: no other page reads it.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import Response

from keyturn.api.http.deps import get_client, get_services
from keyturn.api.ui.forms import safe_next
from keyturn.api.ui.kit import KitDep, PageKit, sign_in_first, sign_in_url
from keyturn.api.ui.sign_in import HOME, NextQuery, oauth_target, set_session, signed_in_response
from keyturn.api.ui.webauthn import options_answer, passkey_page, posted_credential
from keyturn.domain_mfa import Method, MfaChallenge
from keyturn.errors import MfaTokenInvalid, WebAuthnRejected
from keyturn.services.mfa import TotpEnrolment
from keyturn.services.oauth2.authorization_request import Redirectable

PURPOSE = "mfa"
EXPIRED = "mfa_expired"
# A TOTP seed as shown to people (RFC 4648 base32): only this is echoed back on a retry.
_SECRET = re.compile(r"^[A-Z2-7]{16,128}$")
ENTER_CODE = "Enter the code."
# The input (its id) of each code form on the page.
_CODE_FIELDS = {Method.TOTP.value: "code", Method.RECOVERY_CODE.value: "recovery-code"}

router = APIRouter(prefix="/ui", include_in_schema=False)


def _restart(kit: PageKit, next_path: str | None) -> Response:
    """Back to the password (the pending step is gone), keeping ``next``."""
    response = sign_in_first(next_path or "", status=EXPIRED)
    kit.cookies.clear_mfa(response)
    return response


def _mfa_page(
    kit: PageKit,
    request: Request,
    challenge: MfaChallenge,
    target: Redirectable | None,
    next_path: str | None,
    *,
    enrolment: TotpEnrolment | None = None,
    secret: str = "",
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    return kit.render(
        request,
        "mfa.html",
        status=status,
        # The step may end in a redirect to an OAuth client (form-action names it).
        **passkey_page(request, kit, None if target is None else target.redirect_uri),
        title="Set up your second step" if challenge.enrolment_required else "Second step",
        next=next_path,
        methods=[str(method) for method in challenge.methods],
        enrolment_required=challenge.enrolment_required,
        enrolment=shown_enrolment(enrolment),
        secret=secret,
        errors=errors or {},
    )


def shown_enrolment(enrolment: TotpEnrolment | None) -> dict[str, Markup] | None:
    if enrolment is None:
        return None
    # The SVG is drawn by the MFA services (segno) from our own otpauth URI: markup we
    # made, not input; everything else on the page stays escaped.
    svg = Markup(enrolment.qr_svg)  # noqa: S704  # nosec B704
    return {"qr_svg": svg}


async def _pending(
    request: Request, kit: PageKit, token: str, next_path: str | None
) -> MfaChallenge | Response:
    """The live second step behind the mfa cookie, or back to sign-in (cookie cleared)."""
    challenge = await kit.attempt(
        request,
        get_services(request).mfa.second_step.describe(token, get_client(request), channel="ui"),
        back=next_path or "",
        sign_in_status=EXPIRED,
    )
    if isinstance(challenge, Response):
        kit.cookies.clear_mfa(challenge)
    return challenge


@router.get("/mfa")
async def mfa_page(request: Request, kit: KitDep, next_: NextQuery = None) -> Response:
    next_path = safe_next(next_)
    token = request.cookies.get(kit.cookies.mfa)
    if not token:
        return _restart(kit, next_path)
    second_step = get_services(request).mfa.second_step
    client = get_client(request)
    challenge = await _pending(request, kit, token, next_path)
    if isinstance(challenge, Response):
        return challenge
    target = await oauth_target(request, next_path)
    if not challenge.enrolment_required:
        return _mfa_page(kit, request, challenge, target, next_path)
    enrolment = await kit.attempt(
        request,
        second_step.begin_enrolment(token, client),
        back=next_path or "",
        sign_in_status=EXPIRED,
    )
    if isinstance(enrolment, Response):
        return enrolment
    return _mfa_page(
        kit, request, challenge, target, next_path, enrolment=enrolment, secret=enrolment.secret
    )


@router.post("/mfa")
async def mfa_verify(request: Request, kit: KitDep) -> Response:
    form = await kit.checked_form(request, PURPOSE)
    if isinstance(form, Response):
        return form
    next_path = safe_next(form.get("next"))
    token = request.cookies.get(kit.cookies.mfa)
    if not token:
        return _restart(kit, next_path)
    if refused := await kit.count_request(request):
        return refused
    services = get_services(request)
    second_step = services.mfa.second_step
    client = get_client(request)
    challenge = await _pending(request, kit, token, next_path)
    if isinstance(challenge, Response):
        return challenge
    target = await oauth_target(request, next_path)
    secret = form.get("secret", "")
    secret = secret if _SECRET.match(secret) else ""

    def again(errors: dict[str, str], status: int) -> Response:
        # A wrong code shows at its own field; a passkey has none (the summary says it).
        field = _CODE_FIELDS.get(form.get("method", ""))
        shown = {field: errors.pop("form")} if field and "form" in errors else {}
        return _mfa_page(
            kit,
            request,
            challenge,
            target,
            next_path,
            secret=secret,
            errors={**shown, **errors},
            status=status,
        )

    method_value = form.get("method", "")
    if method_value not in {str(method) for method in Method}:
        return again({"form": "Choose how to confirm it is you."}, 422)
    method = Method(method_value)
    code: str | None = None
    credential: dict[str, Any] | None = None
    if method is Method.WEBAUTHN:
        credential = posted_credential(form)
        if credential is None:
            return again(kit.form_errors(WebAuthnRejected()), 400)
    else:
        code = form.get("code", "").strip()
        if not code:
            # Not a wrong code: nothing was checked, no attempt is spent.
            return again({"form": ENTER_CODE}, 422)
    verified = await kit.attempt(
        request,
        second_step.verify_browser(token, method, code=code, credential=credential, client=client),
        form=again,
        back=next_path or "",
        sign_in_status=EXPIRED,
    )
    if isinstance(verified, Response):
        if verified.status_code == 303:
            kit.cookies.clear_mfa(verified)
        return verified
    session, recovery_codes = verified
    signed_in = await services.browser.adopt(
        session, client, replacing=request.cookies.get(kit.cookies.session)
    )
    if not recovery_codes:
        return signed_in_response(kit, signed_in, next_path)
    # The enrolment this step confirmed was the first factor: its recovery codes, once.
    page = kit.render(
        request,
        "recovery_codes.html",
        title="Save your recovery codes",
        codes=recovery_codes,
        replaced=False,
        link=next_path or HOME,
    )
    return set_session(kit, page, signed_in)


@router.post("/mfa/webauthn/options")
async def mfa_webauthn_options(request: Request, kit: KitDep) -> Response:
    form = await kit.checked_form(request, PURPOSE)
    if isinstance(form, Response):
        return form
    if refused := await kit.count_request(request):
        return refused
    token = request.cookies.get(kit.cookies.mfa)
    restart = sign_in_url("", status=EXPIRED)
    if not token:
        return await options_answer(_dead(), sign_in=restart)
    second_step = get_services(request).mfa.second_step
    return await options_answer(
        second_step.webauthn_options(token, get_client(request)), sign_in=restart
    )


async def _dead() -> dict[str, Any]:
    raise MfaTokenInvalid
