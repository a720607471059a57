"""What every hosted page shares: rendering with a CSRF cookie, the form gate, errors
(shown as the error table of ``api/problems.py`` says) and the browser session.

Handlers reach the kit as the REST routers reach services (``api/deps.py``): through the
app (``KitDep``), built once in ``HostedPages``.

The form gate runs before anything else on every POST (DESIGN.md section 5): an
``Origin`` header, when present, must be ours; the body must be a well-formed form; the
hidden ``csrf_token`` must be the MAC of the browser's CSRF cookie and the form's purpose.
Anything else is a 403 page and nothing changes (no service is called).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Annotated, Any, Protocol, TypeVar
from urllib.parse import quote

from fastapi import Depends
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from keyturn.api.http.deps import get_client, get_services
from keyturn.api.http.forms import read_form
from keyturn.api.problems import error_headers, rendering
from keyturn.api.ui.rendering import Renderer
from keyturn.config import Settings
from keyturn.domain import KeptMail
from keyturn.errors import KeyturnError, PasswordPolicyError, RateLimited, ServiceUnavailable
from keyturn.services.oauth2 import BrowserSession

CSRF_FIELD = "csrf_token"
_CSRF_SECRET = re.compile(r"^[A-Za-z0-9_-]{43}$")
T = TypeVar("T")
# Re-renders a page's form with field errors and a status.
FormAgain = Callable[[dict[str, str], int], Response]


class MailboxReader(Protocol):
    """What the pages read from the dev mailbox (infra.dev_mailbox.DevMailbox)."""

    def recent(self) -> Sequence[KeptMail]: ...

    def find(self, number: int) -> KeptMail | None: ...


def _wait(seconds: int) -> str:
    if seconds < 90:
        return f"{max(seconds, 1)} seconds"
    return f"{(seconds + 59) // 60} minutes"


def see_other(url: str) -> RedirectResponse:
    """303 after a POST: the browser follows with GET (307 would repost the form)."""
    return RedirectResponse(url, status_code=303, headers={"cache-control": "no-store"})


def sign_in_first(back: str, *, status: str = "") -> RedirectResponse:
    """To the sign-in page, coming back to ``back`` (a same-origin path) afterwards;
    ``status`` names the notice the sign-in page shows (``sign_in.LOGIN_NOTICES``)."""
    return see_other(sign_in_url(back, status=status))


def sign_in_url(back: str, *, status: str = "") -> str:
    """The sign-in page's URL of :func:`sign_in_first`."""
    query = [f"status={quote(status, safe='')}"] if status else []
    if back:
        query.append("next=" + quote(back, safe=""))
    return "/ui/login?" + "&".join(query)


class PageKit:
    """Rendering and checks shared by every hosted page.

    Args:
        settings: The process settings.
        mailbox: The dev mailbox the pages show (None: no mailbox pages).
    """

    def __init__(self, settings: Settings, *, mailbox: MailboxReader | None = None) -> None:
        self.settings = settings
        self.mailbox = mailbox
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

    async def attempt(
        self,
        request: Request,
        action: Awaitable[T],
        *,
        form: FormAgain | None = None,
        new_link: str = "",
        start_again: str = "",
        back: str = "",
        sign_in_status: str = "",
    ) -> T | Response:
        """``action``'s result, or the page showing why it was refused.

        Where the error shows is the error table's ``place`` (``api/problems.py``): in
        ``form`` re-rendered, on a "this link cannot be used" page offering ``new_link``,
        through the sign-in page back to ``back`` (with the notice ``sign_in_status``),
        else on a message page (with ``start_again`` as its link).
        """
        try:
            return await action
        except KeyturnError as exc:
            shown = rendering(exc)
            if shown.place == "form" and form is not None:
                return form(self.form_errors(exc), shown.status)
            if shown.place == "link":
                return self.message(
                    request,
                    "This link cannot be used",
                    shown.message,
                    status=shown.status,
                    link=new_link,
                    link_text="Ask for a new link",
                )
            if shown.place == "sign_in" and (back or sign_in_status):
                return sign_in_first(back, status=sign_in_status)
            return self.error_page(request, exc, link=start_again)

    def error_page(self, request: Request, exc: KeyturnError, *, link: str = "") -> Response:
        """429 and 503 as friendly pages with Retry-After; anything else as a message."""
        headers = error_headers(exc)
        message = rendering(exc).message
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
                request, "Please try again", message, status=exc.status, headers=headers
            )
        return self.message(
            request,
            "Something went wrong",
            message,
            status=exc.status,
            headers=headers,
            link=link,
            link_text="Start again" if link else "",
        )

    def form_errors(self, exc: KeyturnError) -> dict[str, str]:
        """Errors to show on the form itself (field errors of a policy refusal)."""
        if isinstance(exc, PasswordPolicyError):
            return {"password": exc.detail}
        return {"form": rendering(exc).message}

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

    async def count_request(self, request: Request) -> Response | None:
        """The per-IP ceiling of credential endpoints, as the API's routers apply it: None
        while under it, else the page saying so."""
        counted = await self.attempt(
            request, get_services(request).throttle.request(get_client(request).ip)
        )
        return counted if isinstance(counted, Response) else None


def get_kit(request: Request) -> PageKit:
    """The kit ``HostedPages`` built for this app (as ``api.deps.get_services``)."""
    kit: PageKit = request.app.state.hosted_pages.kit
    return kit


async def _kit_dependency(request: Request) -> PageKit:
    return get_kit(request)


KitDep = Annotated[PageKit, Depends(_kit_dependency)]
