"""Browser-session cookies and CSRF tokens (keyturn.security.browser): pure functions."""

from __future__ import annotations

import uuid

import pytest

from keyturn.security.browser import (
    csrf_token,
    csrf_token_matches,
    new_csrf_secret,
    open_session_cookie,
    seal_session_cookie,
)
from keyturn.security.digests import KeyRing

OLD = KeyRing([b"o" * 32]).derive("browser-session")
RING = KeyRing([b"n" * 32, b"o" * 32]).derive("browser-session")
CSRF = KeyRing([b"n" * 32, b"o" * 32]).derive("csrf")


def test_cookie_round_trip_and_rotation() -> None:
    sid = uuid.uuid4()
    cookie = seal_session_cookie(RING[0], sid)
    assert open_session_cookie(RING, cookie) == sid
    # A cookie sealed under the old key keeps working while that key is in the ring ...
    assert open_session_cookie(RING, seal_session_cookie(OLD[0], sid)) == sid
    # ... and dies once it leaves.
    assert open_session_cookie(RING[:1], seal_session_cookie(OLD[0], sid)) is None


@pytest.mark.parametrize(
    "mutate",
    [
        lambda c: c[:-1] + ("A" if c[-1] != "A" else "B"),
        lambda c: uuid.uuid4().hex + c[32:],
        lambda c: c.upper(),
        lambda c: c + "=",
        lambda c: c.replace(".", ":"),
        lambda c: "",
        lambda c: c[:32],
    ],
)
def test_tampered_cookie_is_refused(mutate: object) -> None:
    cookie = seal_session_cookie(RING[0], uuid.uuid4())
    assert callable(mutate)
    assert open_session_cookie(RING, mutate(cookie)) is None


def test_csrf_token_binds_secret_and_purpose() -> None:
    secret = new_csrf_secret()
    token = csrf_token(CSRF[0], secret, "login")
    assert csrf_token_matches(CSRF, secret, "login", token)
    assert not csrf_token_matches(CSRF, secret, "signup", token)
    assert not csrf_token_matches(CSRF, new_csrf_secret(), "login", token)
    assert not csrf_token_matches(CSRF, secret, "login", "")
    assert not csrf_token_matches(CSRF, "short", "login", csrf_token(CSRF[0], "short", "login"))
    # Tokens minted under the older ring key still match (rotation).
    assert csrf_token_matches(CSRF, secret, "login", csrf_token(CSRF[1], secret, "login"))
