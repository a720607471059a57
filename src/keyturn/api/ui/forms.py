"""Field errors and the ``next`` (return-to) rule of the hosted pages (bodies: api/http/forms)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from pydantic import ValidationError

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
