"""PKCE S256 (RFC 7636): the appendix B vector, verifier form, and refusals."""

from __future__ import annotations

import string

from hypothesis import given
from hypothesis import strategies as st

from keyturn.security import pkce

# RFC 7636 Appendix B.
RFC_VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
RFC_CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
UNRESERVED = string.ascii_letters + string.digits + "-._~"


def test_rfc_7636_appendix_b_vector() -> None:
    assert pkce.s256_challenge(RFC_VERIFIER) == RFC_CHALLENGE
    assert pkce.verify(RFC_VERIFIER, RFC_CHALLENGE)


def test_the_plain_method_never_passes() -> None:
    # A client sending challenge == verifier (plain) cannot redeem with that verifier.
    assert not pkce.verify(RFC_VERIFIER, RFC_VERIFIER)


def test_verifier_length_bounds() -> None:
    assert pkce.verifier_is_valid("a" * 43)
    assert pkce.verifier_is_valid("a" * 128)
    assert not pkce.verifier_is_valid("a" * 42)
    assert not pkce.verifier_is_valid("a" * 129)
    assert not pkce.verify("a" * 42, pkce.s256_challenge("a" * 42))
    assert not pkce.verify("a" * 129, pkce.s256_challenge("a" * 129))


def test_malformed_verifiers_are_refused_before_hashing() -> None:
    for bad in ("a" * 42 + " ", "a" * 42 + "+", "a" * 42 + "/", "a" * 42 + "=", "é" * 43, ""):
        assert not pkce.verifier_is_valid(bad), bad
        assert not pkce.verify(bad, RFC_CHALLENGE), bad


def test_challenge_form() -> None:
    assert pkce.challenge_is_valid(RFC_CHALLENGE)
    assert not pkce.challenge_is_valid(RFC_CHALLENGE + "=")
    assert not pkce.challenge_is_valid(RFC_CHALLENGE[:-1])
    assert not pkce.challenge_is_valid(RFC_CHALLENGE[:-1] + "+")


@given(st.text(alphabet=UNRESERVED, min_size=43, max_size=128))
def test_any_valid_verifier_matches_only_its_own_challenge(verifier: str) -> None:
    challenge = pkce.s256_challenge(verifier)
    assert pkce.challenge_is_valid(challenge)
    assert pkce.verify(verifier, challenge)
    other = verifier[:-1] + ("a" if verifier[-1] != "a" else "b")
    assert not pkce.verify(other, challenge)
