"""``application/x-www-form-urlencoded`` parameters, in bodies and queries: the hosted
pages and the OAuth endpoints.

Read with the standard library's ``urllib.parse.parse_qsl``: Starlette's ``request.form()``
would pull in python-multipart for multipart bodies that no endpoint here accepts.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.requests import Request

FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
# The largest page form (reset) has four fields; an OAuth authorization request about
# fifteen. A few more leave room, thousands do not.
MAX_FIELDS = 32


async def read_form(request: Request) -> dict[str, str] | None:
    """The submitted fields, or None when the body is not a well-formed form."""
    body = await request.body()
    if not body:
        # No fields at all (a bare POST): the caller's own checks refuse what is missing.
        return {}
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != FORM_MEDIA_TYPE:
        return None
    try:
        return parse_params(body.decode("utf-8"))
    except UnicodeDecodeError:
        return None


def read_query(request: Request) -> dict[str, str] | None:
    """The query's parameters, or None when it is not well formed."""
    return parse_params(request.url.query)


def parse_params(encoded: str) -> dict[str, str] | None:
    """Each parameter at most once, at most ``MAX_FIELDS`` of them, UTF-8; else None.

    A repeated parameter is refused rather than guessed at (which copy would a check
    see?); RFC 6749 section 3.1 says the same of OAuth parameters.
    """
    try:
        pairs = parse_qsl(
            encoded,
            keep_blank_values=True,
            max_num_fields=MAX_FIELDS,
            encoding="utf-8",
            errors="strict",
        )
    except ValueError:  # UnicodeDecodeError included
        return None
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params:
            return None
        params[name] = value
    return params
