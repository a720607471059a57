"""What every hosted page shares: rendering with a CSRF cookie, the form gate, errors,
and the browser-session dependency a later ``/oauth2/authorize`` will use.

The form gate runs before anything else on every POST (DESIGN.md section 5): an
``Origin`` header, when present, must be ours; the body must be a well-formed form; the
hidden ``csrf_token`` must be the MAC of the browser's CSRF cookie and the form's purpose.
Anything else is a 403 page and nothing changes (no service is called).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from keyturn.api.deps import get_client, get_services
from keyturn.api.forms import read_form
from keyturn.api.problems import error_headers
from keyturn.api.ui.rendering import Renderer
from keyturn.config import Settings
from keyturn.errors import KeyturnError, PasswordPolicyError, RateLimited, ServiceUnavailable
from keyturn.services.oauth2 import BrowserSession

CSRF_FIELD = "csrf_token"
_CSRF_SECRET = re.compile(r"^[A-Za-z0-9_-]{43}$")

# What a person reads for each error code; anything unlisted shows the error's title.
MESSAGES = {
    "invalid_credentials": "The email address or password is not correct.",
    "email_not_verified": (
        "Verify your email address first: open the link in the mail we sent you."
    ),
    "token_malformed": "This link is incomplete. Open it again from the mail.",
    "token_invalid": "This link is no longer valid. Ask for a new one.",
    "token_expired": "This link has expired. Ask for a new one.",
    "token_used": "This link was already used.",
    "token_wrong_purpose": "This link is meant for something else.",
    "conflict": "Another account now uses this address.",
    "service_unavailable": "We are busy right now. Try again in a few seconds.",
    "hash_queue_full": "We are busy right now. Try again in a few seconds.",
}


def message_for(exc: KeyturnError) -> str:
    return MESSAGES.get(exc.code, exc.title)


def _wait(seconds: int) -> str:
    if seconds < 90:
        return f"{max(seconds, 1)} seconds"
    return f"{(seconds + 59) // 60} minutes"


def see_other(url: str) -> RedirectResponse:
    """303 after a POST: the browser follows with GET (307 would repost the form)."""
    return RedirectResponse(url, status_code=303, headers={"cache-control": "no-store"})


class PageKit:
    """Rendering and checks shared by every hosted page."""

    def __init__(self, settings: Settings) -> None:
        self.renderer = Renderer(settings)
        self.cookies = self.renderer.cookies
        self.password_hint = (
            f"At least {settings.password_min_length} characters. A long phrase is best."
        )
        self.verification_required = settings.email_verification_required

    # -- browser session -------------------------------------------------------------

    async def current_session(self, request: Request) -> BrowserSession | None:
        """The signed-in browser (user, session, ``auth_time``, ``amr``) or None.

        A FastAPI dependency: ``Depends(pages.kit.current_session)``. The session is
        re-checked on every call (deny-list, row, expiry, account).
        """
        cookie = request.cookies.get(self.cookies.session)
        if not cookie:
            return None
        return await get_services(request).browser.current(cookie)

    # -- rendering ---------------------------------------------------------------------

    def render(
        self,
        request: Request,
        template: str,
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        csp: str | None = None,
        **context: Any,
    ) -> Response:
        """A page whose forms carry CSRF tokens; sets the CSRF cookie when it is missing."""
        secret = request.cookies.get(self.cookies.csrf, "")
        fresh = not _CSRF_SECRET.match(secret)
        browser = get_services(request).browser
        if fresh:
            secret = browser.new_csrf_secret()

        def csrf(purpose: str) -> str:
            return browser.csrf_token(secret, purpose)

        response = self.renderer.page(
            template, status=status, headers=headers, csrf=csrf, csp=csp, **context
        )
        if fresh:
            # A browser-lifetime cookie: it only binds forms to this browser.
            self.cookies.set(response, self.cookies.csrf, secret, max_age=None)
        return response

    def message(
        self,
        request: Request,
        title: str,
        message: str,
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        link: str = "",
        link_text: str = "",
    ) -> Response:
        return self.render(
            request,
            "message.html",
            status=status,
            headers=headers,
            title=title,
            message=message,
            link=link,
            link_text=link_text,
        )

    def error_page(self, request: Request, exc: KeyturnError, *, link: str = "") -> Response:
        """429 and 503 as friendly pages with Retry-After; anything else as a message."""
        headers = error_headers(exc)
        if isinstance(exc, RateLimited):
            return self.message(
                request,
                "Too many attempts",
                f"For your security, please wait {_wait(exc.retry_after)} and try again.",
                status=429,
                headers=headers,
            )
        if isinstance(exc, ServiceUnavailable):
            return self.message(
                request, "Please try again", message_for(exc), status=exc.status, headers=headers
            )
        return self.message(
            request,
            "Something went wrong",
            message_for(exc),
            status=exc.status,
            headers=headers,
            link=link,
            link_text="Start again" if link else "",
        )

    def form_errors(self, exc: KeyturnError) -> dict[str, str]:
        """Errors to show on the form itself (field errors of a policy refusal)."""
        if isinstance(exc, PasswordPolicyError):
            return {"password": exc.detail}
        return {"form": message_for(exc)}

    # -- the form gate -----------------------------------------------------------------

    async def checked_form(self, request: Request, purpose: str) -> dict[str, str] | Response:
        """The submitted form if Origin and CSRF token check out, else the 403/400 page."""
        if not self._same_origin(request):
            return self._refused(request)
        form = await read_form(request)
        if form is None:
            return self.message(
                request,
                "The form could not be read",
                "Go back, reload the page and send the form again.",
                status=400,
            )
        secret = request.cookies.get(self.cookies.csrf, "")
        presented = form.pop(CSRF_FIELD, "")
        if not get_services(request).browser.csrf_valid(secret, purpose, presented):
            return self._refused(request)
        return form

    def _same_origin(self, request: Request) -> bool:
        origin = request.headers.get("origin")
        if origin is None:
            # Older browsers omit it on same-origin posts; the CSRF token still decides.
            return True
        own = f"{request.url.scheme}://{request.headers.get('host', '')}"
        # "null" (sandboxed frames, some redirects) never matches.
        return origin in (self.renderer.issuer_origin, own)

    def _refused(self, request: Request) -> Response:
        return self.message(
            request,
            "This form has expired",
            "For your security the form was not sent. Go back, reload the page and try again.",
            status=403,
        )

    async def count_request(self, request: Request) -> KeyturnError | None:
        """The per-IP ceiling of credential endpoints, as the API's routers apply it."""
        try:
            await get_services(request).throttle.request(get_client(request).ip)
        except KeyturnError as exc:
            return exc
        return None
