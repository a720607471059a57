"""``/ui/account/security``: a signed-in person's second factors (issue 15).

Status, the authenticator app (TOTP, RFC 6238: QR code, key as text, confirm, remove),
recovery codes (a new set, shown once) and passkeys (W3C WebAuthn Level 3: add through
``webauthn.js``, rename, remove). Every change goes through ``services.mfa``; one that
needs a recent sign-in (``ReauthenticationRequired``, 5 minutes) sends the browser
through ``/ui/login`` and back here. Every form carries the CSRF token of ``security``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable
from typing import Any, TypeVar

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from keyturn.api.http.deps import get_client, get_services
from keyturn.api.ui.kit import KitDep, PageKit, see_other, sign_in_first, sign_in_url
from keyturn.api.ui.mfa import ENTER_CODE, shown_enrolment
from keyturn.api.ui.webauthn import options_answer, passkey_page, posted_credential
from keyturn.domain_mfa import MfaStatus, Passkey
from keyturn.errors import WebAuthnRejected
from keyturn.services.mfa import TotpEnrolment
from keyturn.services.oauth2 import BrowserSession

SECURITY = "/ui/account/security"
PURPOSE = "security"
AGAIN = "reauthenticate"
MAX_NAME = 64
_SECRET = re.compile(r"^[A-Z2-7]{16,128}$")
NOTICES = {
    "totp_on": "The authenticator app is on.",
    "totp_off": "The authenticator app was removed.",
    "passkey_added": "The passkey was added.",
    "passkey_renamed": "The passkey was renamed.",
    "passkey_removed": "The passkey was removed.",
}
T = TypeVar("T")

router = APIRouter(prefix=SECURITY, include_in_schema=False)


class _Page:
    """One request on the security page: the signed-in browser and its current state,
    read before the change so a refused change re-renders the page as it was."""

    def __init__(
        self,
        kit: PageKit,
        request: Request,
        current: BrowserSession,
        mfa: MfaStatus,
        passkeys: list[Passkey],
    ) -> None:
        self.kit = kit
        self.request = request
        self.current = current
        self.mfa = mfa
        self.passkeys = passkeys

    def render(
        self,
        *,
        errors: dict[str, str] | None = None,
        status: int = 200,
        notice: str | None = None,
        enrolment: TotpEnrolment | None = None,
        secret: str = "",
    ) -> Response:
        return self.kit.render(
            self.request,
            "security.html",
            status=status,
            **passkey_page(self.request, self.kit),
            title="Sign-in security",
            user=self.current.user,
            mfa=self.mfa,
            passkeys=self.passkeys,
            enrolment=shown_enrolment(enrolment),
            pending_secret=secret,
            errors=errors or {},
            notice=notice,
        )

    def again(self, errors: dict[str, str], status: int) -> Response:
        return self.render(errors=errors, status=status)

    async def attempt(self, action: Awaitable[T], **render: Any) -> T | Response:
        """``action``'s result, or the page saying why not (a stale sign-in: sign in
        again and come back here)."""

        def again(errors: dict[str, str], status: int) -> Response:
            return self.render(errors=errors, status=status, **render)

        return await self.kit.attempt(
            self.request,
            action,
            form=again,
            back=SECURITY,
            sign_in_status=AGAIN,
            start_again=SECURITY,
        )


async def _page(request: Request, kit: PageKit) -> _Page | Response:
    """The security page's state, or the sign-in page for a signed-out browser."""
    current = await kit.current_session(request)
    if current is None:
        return sign_in_first(SECURITY)
    mfa = get_services(request).mfa
    principal = current.principal()
    status = await kit.attempt(request, mfa.factors.status(principal))
    if isinstance(status, Response):
        return status
    passkeys = await kit.attempt(request, mfa.passkeys.list(principal))
    if isinstance(passkeys, Response):
        return passkeys
    return _Page(kit, request, current, status, list(passkeys))


async def _posted(request: Request, kit: PageKit) -> tuple[_Page, dict[str, str]] | Response:
    form = await kit.checked_form(request, PURPOSE)
    if isinstance(form, Response):
        return form
    page = await _page(request, kit)
    if isinstance(page, Response):
        return page
    return page, form


def _done(status: str) -> Response:
    return see_other(f"{SECURITY}?status={status}")


def _codes_page(page: _Page, codes: list[str], *, replaced: bool) -> Response:
    return page.kit.render(
        page.request,
        "recovery_codes.html",
        title="Save your recovery codes",
        codes=codes,
        replaced=replaced,
        link=SECURITY,
    )


@router.get("")
async def security_page(request: Request, kit: KitDep, status: str = "") -> Response:
    page = await _page(request, kit)
    if isinstance(page, Response):
        return page
    return page.render(notice=NOTICES.get(status))


@router.post("/totp")
async def totp_begin(request: Request, kit: KitDep) -> Response:
    posted = await _posted(request, kit)
    if isinstance(posted, Response):
        return posted
    page, _form = posted
    principal = page.current.principal()
    factors = get_services(request).mfa.factors
    enrolment = await page.attempt(factors.begin_totp(principal, get_client(request)))
    if isinstance(enrolment, Response):
        return enrolment
    return page.render(enrolment=enrolment, secret=enrolment.secret)


@router.post("/totp/confirm")
async def totp_confirm(request: Request, kit: KitDep) -> Response:
    posted = await _posted(request, kit)
    if isinstance(posted, Response):
        return posted
    page, form = posted
    secret = form.get("secret", "")
    secret = secret if _SECRET.match(secret) else ""
    code = form.get("code", "").strip()
    if not code:
        return page.render(errors={"code": ENTER_CODE}, status=422, secret=secret)
    factors = get_services(request).mfa.factors
    confirmed = await page.attempt(
        factors.confirm_totp(page.current.principal(), code, get_client(request)),
        secret=secret,
    )
    if isinstance(confirmed, Response):
        return confirmed
    if confirmed:
        # The first factor: its recovery codes, shown this once.
        return _codes_page(page, confirmed, replaced=False)
    return _done("totp_on")


@router.post("/totp/remove")
async def totp_remove(request: Request, kit: KitDep) -> Response:
    posted = await _posted(request, kit)
    if isinstance(posted, Response):
        return posted
    page, _form = posted
    factors = get_services(request).mfa.factors
    removed = await page.attempt(factors.remove_totp(page.current.principal(), get_client(request)))
    return removed if isinstance(removed, Response) else _done("totp_off")


@router.post("/recovery-codes")
async def recovery_codes(request: Request, kit: KitDep) -> Response:
    posted = await _posted(request, kit)
    if isinstance(posted, Response):
        return posted
    page, _form = posted
    factors = get_services(request).mfa.factors
    codes = await page.attempt(
        factors.regenerate_recovery_codes(page.current.principal(), get_client(request))
    )
    if isinstance(codes, Response):
        return codes
    return _codes_page(page, codes, replaced=True)


@router.post("/passkeys/options")
async def passkey_options(request: Request, kit: KitDep) -> Response:
    form = await kit.checked_form(request, PURPOSE)
    if isinstance(form, Response):
        return form
    current = await kit.current_session(request)
    if current is None:
        return sign_in_first(SECURITY)
    passkeys = get_services(request).mfa.passkeys
    return await options_answer(
        passkeys.registration_options(current.principal(), get_client(request)),
        sign_in=sign_in_url(SECURITY, status=AGAIN),
    )


@router.post("/passkeys")
async def passkey_add(request: Request, kit: KitDep) -> Response:
    posted = await _posted(request, kit)
    if isinstance(posted, Response):
        return posted
    page, form = posted
    credential = posted_credential(form)
    if credential is None:
        return page.again(kit.form_errors(WebAuthnRejected()), 400)
    name = form.get("name", "").strip()[:MAX_NAME]
    passkeys = get_services(request).mfa.passkeys
    added = await page.attempt(
        passkeys.register(page.current.principal(), credential, name or None, get_client(request))
    )
    if isinstance(added, Response):
        return added
    if added.recovery_codes:
        return _codes_page(page, added.recovery_codes, replaced=False)
    return _done("passkey_added")


def _passkey_id(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


@router.post("/passkeys/{passkey_id}/rename")
async def passkey_rename(request: Request, kit: KitDep, passkey_id: str) -> Response:
    posted = await _posted(request, kit)
    if isinstance(posted, Response):
        return posted
    page, form = posted
    name = form.get("name", "").strip()
    found = _passkey_id(passkey_id)
    if found is None:
        return page.again({"form": "That passkey does not exist."}, 404)
    if not name or len(name) > MAX_NAME:
        return page.again({"form": f"Name the passkey in 1 to {MAX_NAME} characters."}, 422)
    passkeys = get_services(request).mfa.passkeys
    renamed = await page.attempt(passkeys.rename(page.current.principal(), found, name))
    return renamed if isinstance(renamed, Response) else _done("passkey_renamed")


@router.post("/passkeys/{passkey_id}/delete")
async def passkey_delete(request: Request, kit: KitDep, passkey_id: str) -> Response:
    posted = await _posted(request, kit)
    if isinstance(posted, Response):
        return posted
    page, _form = posted
    found = _passkey_id(passkey_id)
    if found is None:
        return page.again({"form": "That passkey does not exist."}, 404)
    passkeys = get_services(request).mfa.passkeys
    removed = await page.attempt(
        passkeys.remove(page.current.principal(), found, get_client(request))
    )
    return removed if isinstance(removed, Response) else _done("passkey_removed")
