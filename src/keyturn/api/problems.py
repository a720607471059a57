"""The one error table, and the REST renderer: RFC 9457 ``application/problem+json``.

:data:`ERRORS` and :func:`rendering` say how each error code shows in every renderer:
this module's problem and OAuth JSON answers, the GraphQL error formatter
(``api/graphql/errors.py``), the hosted pages (``api/ui/kit.py``) and the OAuth
redirects (``api/oauth2/responses.py``). The retry headers come from :func:`error_headers`.

Every answer carries ``{type, title, status, code, errors}`` and ``detail`` when it adds
something to ``title`` (RFC 9457 section 3.1.4: the detail explains this occurrence, it
does not repeat the title); ``code`` is stable and listed in the API specification.
Under ``/oauth2/`` the same errors take the RFC 6749 section 5.2 form
``{error, error_description}`` that OAuth client libraries parse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse, Response

from keyturn.api.http.cors import apply_error_cors
from keyturn.errors import (
    CredentialsMissing,
    InsufficientScope,
    InvalidClient,
    InvalidToken,
    KeyturnError,
    MethodNotAllowed,
    OAuthInvalidRequest,
    RateLimited,
    ServiceUnavailable,
    SessionRevoked,
    UnsupportedMediaType,
)

log = structlog.get_logger(__name__)

PROBLEM_TYPE_BASE = "https://keyturn.dev/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"
OAUTH_PATH_PREFIX = "/oauth2/"
USERINFO_PATH = "/oauth2/userinfo"
# Where a browser, not a client library, reads the answer (the hosted pages' kit renders).
PAGE_PATH_PREFIX = "/ui/"
PAGE_PATHS = frozenset({"/oauth2/authorize", "/oauth2/logout"})

_HTTP_CODES = {
    # FastAPI raises a bare 400 only when the body cannot be decoded (e.g. invalid UTF-8).
    400: ("malformed_json", "The body is not valid JSON"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    413: ("payload_too_large", "The request body is too large"),
}


# Where a hosted page shows an error: in the form it re-renders, as a "link cannot be
# used" page (mailed one-time tokens), back through the sign-in page, or as a message page.
Place = Literal["form", "link", "sign_in", "page"]
_BUSY = "We are busy right now. Try again in a few seconds."


@dataclass(frozen=True, slots=True)
class Entry:
    """How one error code renders beyond the error's own ``status`` and ``title``."""

    place: Place = "page"
    # What a person reads on a page; None shows the title.
    message: str | None = None
    # The RFC 6749 / 6750 name where ours is not one (None: the code itself).
    oauth_error: str | None = None


def _link(message: str) -> Entry:
    return Entry(place="link", message=message)


ERRORS: dict[str, Entry] = {
    "invalid_request": Entry(place="form"),
    "password_too_short": Entry(place="form"),
    "password_too_long": Entry(place="form"),
    "password_too_common": Entry(place="form"),
    "password_contains_email": Entry(place="form"),
    "invalid_credentials": Entry(
        place="form", message="The email address or password is not correct."
    ),
    "email_not_verified": Entry(
        place="form",
        message="Verify your email address first: open the link in the mail we sent you.",
    ),
    "token_malformed": _link("This link is incomplete. Open it again from the mail."),
    "token_invalid": _link("This link is no longer valid. Ask for a new one."),
    # Also the access-token code: RFC 6749 / 6750 clients know only invalid_token.
    "token_expired": Entry(
        place="link",
        message="This link has expired. Ask for a new one.",
        oauth_error="invalid_token",
    ),
    "token_used": _link("This link was already used."),
    "token_wrong_purpose": _link("This link is meant for something else."),
    "fresh_login_required": Entry(place="sign_in"),
    "reauthentication_required": Entry(place="sign_in"),
    "conflict": Entry(message="Another account now uses this address."),
    "mfa_token_invalid": Entry(
        place="sign_in", message="That sign-in took too long or had too many tries."
    ),
    "mfa_code_invalid": Entry(place="form", message="That code is not correct. Try again."),
    "mfa_already_enrolled": Entry(place="form"),
    "mfa_not_enrolled": Entry(place="form"),
    "webauthn_invalid": Entry(place="form", message="The passkey was not accepted."),
    # RFC 6749 section 4.1.2.1 names this condition temporarily_unavailable; OAuth
    # clients know only the RFC names, so the token endpoint answers it too (with 503).
    "service_unavailable": Entry(message=_BUSY, oauth_error="temporarily_unavailable"),
    "hash_queue_full": Entry(message=_BUSY, oauth_error="temporarily_unavailable"),
}
_DEFAULT = Entry()


@dataclass(frozen=True, slots=True)
class Rendering:
    """One error as every renderer reads it."""

    status: int
    code: str
    title: str
    detail: str
    place: Place
    message: str
    oauth_error: str


def rendering(exc: KeyturnError) -> Rendering:
    """``exc`` looked up in :data:`ERRORS` (unlisted codes keep their own values)."""
    entry = ERRORS.get(exc.code, _DEFAULT)
    return Rendering(
        status=exc.status,
        code=exc.code,
        title=exc.title,
        detail=exc.detail,
        place=entry.place,
        message=entry.message or exc.title,
        oauth_error=entry.oauth_error or exc.code,
    )


def problem(
    status: int,
    code: str,
    title: str,
    detail: str | None = None,
    *,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {"type": PROBLEM_TYPE_BASE + code, "title": title, "status": status}
    if detail and _words(detail) != _words(title):
        body["detail"] = detail
    body["code"] = code
    body["errors"] = errors or []
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def oauth_error(
    status: int, error: str, description: str, *, headers: dict[str, str] | None = None
) -> Response:
    """RFC 6749 section 5.2: ``{error, error_description}``, never cached (section 5.1)."""
    body = {"error": error, "error_description": description}
    merged = {"Cache-Control": "no-store", "Pragma": "no-cache", **(headers or {})}
    return JSONResponse(body, status_code=status, headers=merged)


def _words(text: str) -> str:
    # "Not Found" repeats "Not found"; "The session has ended." repeats its title.
    return text.strip().rstrip(".").casefold()


def bearer_challenge(exc: KeyturnError) -> str:
    """RFC 6750 section 3 ``WWW-Authenticate`` for a refused Bearer request.

    No error code when no token was sent (section 3.1); a refused token always names
    ``invalid_token`` (an expired one too: ``token_expired`` is our problem code, not an
    RFC 6750 one) with its reason as ``error_description``.
    """
    if isinstance(exc, InvalidToken | SessionRevoked) and not isinstance(exc, CredentialsMissing):
        error = "invalid_token"
    elif isinstance(exc, InsufficientScope | OAuthInvalidRequest):
        error = exc.code  # the other two RFC 6750 section 3.1 codes
    else:
        return "Bearer"
    return f'Bearer error="{error}", error_description="{_quotable(exc.detail)}"'


def _quotable(text: str) -> str:
    # RFC 6750 section 3: error_description is %x20-21 / %x23-5B / %x5D-7E (no quote or
    # backslash, ASCII only), so a description can never break out of its quoted string.
    return "".join(c for c in text if " " <= c <= "~" and c not in '"\\')


def _is_oauth(request: Request) -> bool:
    return request.url.path.startswith(OAUTH_PATH_PREFIX)


async def _oauth_answer(request: Request, response: Response) -> Response:
    # A browser client must be able to read why its token request failed.
    await apply_error_cors(request, response)
    return response


def _field(location: tuple[Any, ...] | list[Any]) -> str:
    # ("body", "email") -> "email"; the "body"/"query" prefix is noise for clients.
    parts = [str(part) for part in location if part not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def error_headers(exc: KeyturnError) -> dict[str, str]:
    """The retry headers a domain error carries, for problem answers and hosted pages alike."""
    headers: dict[str, str] = {}
    if isinstance(exc, ServiceUnavailable):
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, RateLimited):
        # RFC 6585 section 4 and draft-ietf-httpapi-ratelimit-headers.
        headers["Retry-After"] = str(exc.retry_after)
        headers["RateLimit-Limit"] = str(exc.limit)
        headers["RateLimit-Remaining"] = "0"
        headers["RateLimit-Reset"] = str(exc.reset_after)
    if isinstance(exc, InvalidClient):
        # RFC 6749 section 5.2: a failed client authentication challenges with Basic.
        headers["WWW-Authenticate"] = 'Basic realm="keyturn"'
    if isinstance(exc, MethodNotAllowed):
        # RFC 9110 section 15.5.6: a 405 lists the methods the resource supports.
        headers["Allow"] = exc.allow
    return headers


def _page_renderer(request: Request) -> Any:
    """The hosted pages' kit when ``request`` is for a page (a browser reads the answer)."""
    path = request.url.path
    if not (path.startswith(PAGE_PATH_PREFIX) or path in PAGE_PATHS):
        return None
    pages = getattr(request.app.state, "hosted_pages", None)
    return None if pages is None else pages.kit


async def _domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, KeyturnError)  # noqa: S101  (registered for this type only)
    if isinstance(exc, ServiceUnavailable) and (kit := _page_renderer(request)) is not None:
        # An outage met outside a page's own error handling (its session check, say):
        # a person reads a "try again" page with Retry-After, not a JSON document.
        page: Response = kit.error_page(request, exc)
        return page
    shown = rendering(exc)
    headers = error_headers(exc)
    if _is_oauth(request):
        bearer_resource = request.url.path == USERINFO_PATH
        if isinstance(exc, InvalidToken | InsufficientScope) or (
            bearer_resource and isinstance(exc, OAuthInvalidRequest)
        ):
            # A Bearer-protected OAuth resource (userinfo, OIDC Core section 5.3.3):
            # RFC 6750 section 3 challenge; no error code when no token was sent (3.1).
            headers["WWW-Authenticate"] = bearer_challenge(exc)
        return await _oauth_answer(
            request, oauth_error(shown.status, shown.oauth_error, shown.detail, headers=headers)
        )
    if shown.status == 401 and not isinstance(exc, InvalidClient):
        # RFC 6750 section 3: a 401 on a Bearer-protected resource names the scheme.
        headers["WWW-Authenticate"] = bearer_challenge(exc)
    return problem(
        shown.status, shown.code, shown.title, shown.detail, errors=exc.errors, headers=headers
    )


# What `curl -d '{...}'` needs to hear instead of a 422 about "a valid dictionary".
_NO_CONTENT_TYPE = (
    "The body came without a Content-Type. Send it as JSON with the header "
    "Content-Type: application/json (curl: --json or -H 'Content-Type: application/json')."
)
_NOT_JSON = (
    "The body must be JSON with the header Content-Type: application/json "
    "(curl -d sends a form; use --json or -H 'Content-Type: application/json')."
)


def _unparsed_body(exc: RequestValidationError) -> bool:
    # FastAPI parses a JSON route's body only under a JSON Content-Type (strict content
    # type); otherwise the raw bytes meet the model and fail as a whole at ("body",).
    # Form routes fail per field, and a missing body has no bytes: neither matches.
    return any(
        tuple(error.get("loc", ())) == ("body",) and isinstance(error.get("input"), bytes)
        for error in exc.errors()
    )


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)  # noqa: S101  (registered for this type only)
    if _unparsed_body(exc):
        # Checked on the error path only: a JSON request pays nothing for it.
        missing = "content-type" not in request.headers
        refused = UnsupportedMediaType(_NO_CONTENT_TYPE if missing else _NOT_JSON)
        return await _domain_error(request, refused)
    if _is_oauth(request):
        fields = sorted({_field(error.get("loc", ())) for error in exc.errors()})
        return await _oauth_answer(
            request,
            oauth_error(400, "invalid_request", f"Invalid parameters: {', '.join(fields)}."),
        )
    errors = []
    malformed = False
    for error in exc.errors():
        if error.get("type") == "json_invalid":
            malformed = True
        # Only the location and pydantic's message: never echo the submitted value back.
        errors.append({"field": _field(error.get("loc", ())), "message": str(error.get("msg", ""))})
    if malformed:
        return problem(400, "malformed_json", "The body is not valid JSON", "Send a JSON object.")
    return problem(
        422,
        "invalid_request",
        "The request is not valid",
        "One or more fields are invalid.",
        errors=errors,
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)  # noqa: S101  (registered for this type only)
    if isinstance(exc.__cause__, ClientDisconnect):
        # FastAPI turns a hang-up while reading a JSON body into "400 error parsing the
        # body"; it is no bad input but the client leaving, which the access-log middleware
        # records as such (RequestContextMiddleware), so hand it the original exception.
        raise exc.__cause__
    code, title = _HTTP_CODES.get(exc.status_code, ("http_error", "HTTP error"))
    detail = exc.detail if isinstance(exc.detail, str) else title
    allow = (exc.headers or {}).get("Allow")
    if exc.status_code == 405 and allow:
        detail = f"{request.url.path} accepts {allow}."
    if _is_oauth(request) and exc.status_code in (400, 413):
        return await _oauth_answer(request, oauth_error(exc.status_code, "invalid_request", detail))
    return problem(exc.status_code, code, title, detail, headers=dict(exc.headers or {}))


async def _unexpected(_request: Request, exc: Exception) -> Response:
    log.exception("unhandled_error", error_type=type(exc).__name__)
    return problem(500, "internal_error", "Internal error", "An unexpected error occurred.")


def install(app: FastAPI) -> None:
    app.add_exception_handler(KeyturnError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
