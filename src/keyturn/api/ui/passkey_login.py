"""``/ui/login/passkey``: the passwordless, usernameless sign-in of the sign-in page.

The "Sign in with a passkey" form (shown by ``webauthn.js``) fetches request options
with no user (a discoverable credential names its user, W3C WebAuthn Level 3 section
6.2.2), asks the browser for an assertion and posts it here. A passkey that verified its
user is the whole sign-in (RFC 8176 ``amr`` from the MFA services); any failure shows on
the sign-in form, like a wrong password.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from keyturn.api.http.deps import get_client, get_services
from keyturn.api.ui.forms import safe_next
from keyturn.api.ui.kit import KitDep
from keyturn.api.ui.sign_in import login_form, oauth_target, signed_in_response
from keyturn.api.ui.webauthn import options_answer, posted_credential

PURPOSE = "login-passkey"
PASSWORDLESS = "passwordless"
REFUSED = "The passkey was not accepted."

router = APIRouter(prefix="/ui", include_in_schema=False)


@router.post("/login/passkey/options")
async def passkey_options(request: Request, kit: KitDep) -> Response:
    form = await kit.checked_form(request, PURPOSE)
    if isinstance(form, Response):
        return form
    if refused := await kit.count_request(request):
        return refused
    passkeys = get_services(request).mfa.passkeys
    return await options_answer(passkeys.request_options(purpose=PASSWORDLESS, user_id=None))


@router.post("/login/passkey")
async def passkey_sign_in(request: Request, kit: KitDep) -> Response:
    form = await kit.checked_form(request, PURPOSE)
    if isinstance(form, Response):
        return form
    next_path = safe_next(form.get("next"))
    target = await oauth_target(request, next_path)

    def again(errors: dict[str, str], status: int) -> Response:
        # 401: any refused passkey, one message (which check failed is not told).
        shown = {"form": REFUSED} if status == 401 else errors
        return login_form(kit, request, target, next_path, "", status=status, errors=shown)

    if refused := await kit.count_request(request):
        return refused
    credential = posted_credential(form)
    if credential is None:
        return again({"form": REFUSED}, 400)
    services = get_services(request)
    client = get_client(request)
    used = await kit.attempt(
        request,
        services.mfa.passkeys.verify_assertion(
            credential, purpose=PASSWORDLESS, user_id=None, binding=None, client=client
        ),
        form=again,
    )
    if isinstance(used, Response):
        return used
    # A passkey alone is the sign-in: no session epoch to hold (no password step before).
    session = await kit.attempt(
        request,
        services.auth.finish_browser_sign_in(used.user_id, client, amr=used.amr, epoch=None),
        form=again,
    )
    if isinstance(session, Response):
        return session
    signed_in = await services.browser.adopt(
        session, client, replacing=request.cookies.get(kit.cookies.session)
    )
    return signed_in_response(kit, signed_in, next_path)
