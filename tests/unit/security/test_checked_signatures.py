"""A token's signature is verified once; everything else about it on every presentation.

``Verifier`` keeps the digests of tokens whose signature held (``CheckedSignatures``). These
tests count the ECDSA verifies through the function the facade calls and show what a
remembered token still goes through: the claims, the ``typ``, the key lookup, and that
no other bytes (a changed claim, the high-S twin) ride on a remembered signature.
"""

from __future__ import annotations

from typing import Any

import pytest

from keyturn.errors import AccessTokenExpired, InvalidToken
from keyturn.security import jose
from keyturn.security.jose import CheckedSignatures, JosePolicy, Signer, Verifier
from keyturn.security.keys import KeyMaterial, generate_key
from unit.security.test_jose_es256_direct import (
    AUD,
    ISS,
    NOW,
    POLICY,
    b64,
    claims,
    es256_high,
    unb64,
    with_signature,
)


@pytest.fixture
def verifies(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The signing inputs the facade hands to the ES256 verify, in order."""
    seen: list[bytes] = []
    real = jose.es256_verify

    def counting(key: Any, signing_input: bytes, signature: bytes) -> bool:
        seen.append(signing_input)
        return real(key, signing_input, signature)

    monkeypatch.setattr(jose, "es256_verify", counting)
    return seen


@pytest.fixture
def key() -> KeyMaterial:
    return generate_key("ES256")


def test_a_token_presented_again_is_not_verified_again(
    key: KeyMaterial, verifies: list[bytes]
) -> None:
    verifier = Verifier([key.public_jwk])
    token = Signer(key).sign(claims(jti="j-1"))
    first = verifier.verify(token, POLICY, now=NOW)
    assert verifier.verify(token, POLICY, now=NOW + 1) == first
    assert len(verifies) == 1
    other = Signer(key).sign(claims(jti="j-2"))
    verifier.verify(other, POLICY, now=NOW)
    assert len(verifies) == 2


def test_a_remembered_token_still_meets_its_claims_and_kind(
    key: KeyMaterial, verifies: list[bytes]
) -> None:
    verifier = Verifier([key.public_jwk])
    token = Signer(key).sign(claims())
    verifier.verify(token, POLICY, now=NOW)
    with pytest.raises(AccessTokenExpired):
        verifier.verify(token, POLICY, now=NOW + 300 + POLICY.leeway + 1)
    with pytest.raises(InvalidToken, match="another server"):
        verifier.verify(token, JosePolicy(POLICY.algorithms, "https://other.test", AUD), now=NOW)
    with pytest.raises(InvalidToken, match="wrong kind"):
        verifier.verify(token, JosePolicy(POLICY.algorithms, ISS, AUD, typ="id_token+jwt"), now=NOW)
    assert len(verifies) == 1


def test_other_bytes_never_ride_on_a_remembered_signature(
    key: KeyMaterial, verifies: list[bytes]
) -> None:
    verifier = Verifier([key.public_jwk])
    token = Signer(key).sign(claims(scope="me:read"))
    verifier.verify(token, POLICY, now=NOW)
    header, _, signature = token.split(".")
    widened = f"{header}.{b64(jose.orjson.dumps(claims(scope='admin')))}.{signature}"
    with pytest.raises(InvalidToken, match="signature is not valid"):
        verifier.verify(widened, POLICY, now=NOW)
    twin = with_signature(token, es256_high(unb64(signature)))
    with pytest.raises(InvalidToken, match="one accepted form"):
        verifier.verify(twin, POLICY, now=NOW)
    # Refused tokens are never remembered: each attempt is verified again.
    for _ in range(2):
        with pytest.raises(InvalidToken):
            verifier.verify(widened, POLICY, now=NOW)
    assert len(verifies) == 1 + 2 + 2


def test_a_key_no_longer_loaded_refuses_its_remembered_tokens(key: KeyMaterial) -> None:
    checked = CheckedSignatures()
    token = Signer(key).sign(claims())
    Verifier([key.public_jwk], checked=checked).verify(token, POLICY, now=NOW)
    assert len(checked) == 1
    # The key cache's reload without the key (retired out of the JWKS, or revoked).
    reloaded = Verifier([generate_key("ES256").public_jwk], checked=checked)
    with pytest.raises(InvalidToken, match="unknown or withdrawn key"):
        reloaded.verify(token, POLICY, now=NOW)


def test_a_reload_with_the_key_keeps_what_was_checked(
    key: KeyMaterial, verifies: list[bytes]
) -> None:
    checked = CheckedSignatures()
    token = Signer(key).sign(claims())
    Verifier([key.public_jwk], checked=checked).verify(token, POLICY, now=NOW)
    Verifier([key.public_jwk], checked=checked).verify(token, POLICY, now=NOW)
    assert len(verifies) == 1


def test_the_oldest_digest_goes_first_when_full(key: KeyMaterial, verifies: list[bytes]) -> None:
    verifier = Verifier([key.public_jwk], checked=CheckedSignatures(capacity=2))
    first, second, third = (Signer(key).sign(claims(jti=f"j-{n}")) for n in range(3))
    for token in (first, second, third, second, third):
        verifier.verify(token, POLICY, now=NOW)
    assert len(verifies) == 3
    verifier.verify(first, POLICY, now=NOW)
    assert len(verifies) == 4


def test_capacity_must_hold_something() -> None:
    with pytest.raises(ValueError, match="capacity"):
        CheckedSignatures(capacity=0)
