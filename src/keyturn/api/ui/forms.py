"""Form bodies, field errors and the ``next`` (return-to) rule of the hosted pages.

Form bodies are ``application/x-www-form-urlencoded`` only (no file uploads anywhere), read
with the standard library's ``urllib.parse.parse_qsl``: Starlette's ``request.form()``
would pull in python-multipart for a format these pages never accept.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

from pydantic import ValidationError
from starlette.requests import Request

FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
# The largest form (reset) has four fields; a few more leave room, thousands do not.
MAX_FIELDS = 12
MAX_NEXT_LENGTH = 2048
# Printable ASCII only: browsers drop tabs and newlines from URLs ("/\t/evil" is
# "//evil"), and anything else must arrive percent-encoded.
_PRINTABLE = re.compile(r"^[\x21-\x7e]*$")

FRIENDLY = {
    "email": "Enter an email address like name@example.com.",
    "password": "Enter your password.",
    "name": "Names are at most 200 characters, without control characters.",
    "token": "The link is incomplete. Open it again from the mail.",
}


async def read_form(request: Request) -> dict[str, str] | None:
    """The submitted fields, or None when the body is not a well-formed form.

    A repeated field is refused rather than guessed at (which copy would a check see?).
    """
    body = await request.body()
    if not body:
        # No fields at all (a bare POST): the CSRF check then refuses it with a 403.
        return {}
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != FORM_MEDIA_TYPE:
        return None
    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            max_num_fields=MAX_FIELDS,
            encoding="utf-8",
            errors="strict",
        )
    except (UnicodeDecodeError, ValueError):
        return None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            return None
        form[name] = value
    return form


def field_errors(exc: ValidationError) -> dict[str, str]:
    """One friendly message per invalid field (never the submitted value)."""
    errors: dict[str, str] = {}
    for error in exc.errors():
        location = error.get("loc", ())
        field = str(location[0]) if location else "form"
        errors.setdefault(field, FRIENDLY.get(field, "This value is not valid."))
    return errors


def safe_next(value: str | None) -> str | None:
    """``value`` if it is a same-origin relative path, else None (the caller ignores it).

    Accepted: a path starting with exactly one ``/``, printable ASCII, no backslash
    (browsers read ``/\\evil`` as ``//evil``), no scheme, no authority, at most 2048
    characters. Everything else would let a link to our login page send the user to
    another site after signing in (CWE-601).
    """
    if not value or len(value) > MAX_NEXT_LENGTH:
        return None
    if not value.startswith("/") or value.startswith("//") or "\\" in value:
        return None
    if not _PRINTABLE.match(value):
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return None
    return value
