"""Our JOSE facade against two independent libraries, joserfc's own API and PyJWT.

Every token our Signer makes, for every supported algorithm, must verify with both; every
token they make must verify with our Verifier when our policy allows it, and be refused
(with the same words as our own tokens get) when the policy does not: a wrong ``typ``, a
header parameter we never issue, or a high-S ECDSA signature.
"""

from __future__ import annotations

import base64
import json
import warnings
from collections.abc import Callable
from typing import Any

import jwt as pyjwt
import pytest
from joserfc import jws as jose_jws
from joserfc import jwt as jose_jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import import_key

from keyturn.errors import InvalidToken
from keyturn.security.jose import JosePolicy, Signer, Verifier
from keyturn.security.keys import SUPPORTED_ALGORITHMS, KeyMaterial, generate_key

ISS = "https://id.example.test"
AUD = "https://api.example.test"
NOW = 1_700_000_000
# Order of the P-256 group (SEC 2 v2 section 2.4.2).
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
# An ES256 signature is random; this many tokens almost surely include high-S signatures
# from the libraries (probability 1/2 each) and prove ours never emits one.
SAMPLES = 24

KEY_TYPES: dict[str, Any] = {"ES256": "EC", "RS256": "RSA", "EdDSA": "OKP"}

WRONG_KIND = "The token is of the wrong kind for this use."
EXTRA_HEADER = "The token's header carries parameters that are not accepted."
NON_CANONICAL = "The token's signature is not in its one accepted form."

Issuer = Callable[[KeyMaterial, dict[str, Any], dict[str, Any]], str]


def claims(**extra: Any) -> dict[str, Any]:
    return {"iss": ISS, "aud": AUD, "sub": "user-1", "iat": NOW, "exp": NOW + 300, **extra}


def policy(alg: str, typ: str = "at+jwt") -> JosePolicy:
    return JosePolicy(algorithms=frozenset({alg}), issuer=ISS, audience=AUD, typ=typ)


@pytest.fixture(scope="module")
def keys() -> dict[str, KeyMaterial]:
    return {alg: generate_key(alg) for alg in SUPPORTED_ALGORITHMS}


def joserfc_verify(token: str, key: KeyMaterial) -> dict[str, Any]:
    public = import_key(dict(key.public_jwk))
    with warnings.catch_warnings():
        # joserfc warns that RFC 9864 renames "EdDSA"; the name is still what we issue.
        warnings.simplefilter("ignore", SecurityWarning)
        compact = jose_jws.deserialize_compact(token, public, algorithms=[key.alg])
        decoded = jose_jwt.decode(token, public, algorithms=[key.alg])
    jose_jwt.JWTClaimsRegistry(
        now=NOW, iss={"essential": True, "value": ISS}, aud={"essential": True, "value": AUD}
    ).validate(decoded.claims)
    assert json.loads(compact.payload) == decoded.claims
    assert decoded.header == {"alg": key.alg, "kid": key.kid, "typ": "at+jwt"}
    return decoded.claims


def pyjwt_verify(token: str, key: KeyMaterial) -> dict[str, Any]:
    assert pyjwt.get_unverified_header(token) == {"alg": key.alg, "kid": key.kid, "typ": "at+jwt"}
    decoded: dict[str, Any] = pyjwt.decode(
        token,
        pyjwt.PyJWK(key.public_jwk).key,
        algorithms=[key.alg],
        audience=AUD,
        issuer=ISS,
        options={"verify_exp": False, "verify_iat": False},
    )
    return decoded


def signature_s(token: str) -> int:
    raw = base64.urlsafe_b64decode(token.rsplit(".", 1)[1] + "==")
    return int.from_bytes(raw[32:], "big")


def twin(token: str) -> str:
    """``token`` with its ES256 signature's ``s`` replaced by ``n - s`` (equally valid)."""
    signing_input, signature = token.rsplit(".", 1)
    raw = base64.urlsafe_b64decode(signature + "==")
    s = int.from_bytes(raw[32:], "big")
    flipped = raw[:32] + (P256_N - s).to_bytes(32, "big")
    return f"{signing_input}.{base64.urlsafe_b64encode(flipped).rstrip(b'=').decode()}"


def by_joserfc(key: KeyMaterial, header: dict[str, Any], body: dict[str, Any]) -> str:
    private = import_key(key.private_pem, KEY_TYPES[key.alg])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)
        return jose_jwt.encode({"alg": key.alg, **header}, body, private, algorithms=[key.alg])


def by_pyjwt(key: KeyMaterial, header: dict[str, Any], body: dict[str, Any]) -> str:
    return pyjwt.encode(body, key.private_pem, algorithm=key.alg, headers=header)


ISSUERS = pytest.mark.parametrize("make", [by_joserfc, by_pyjwt], ids=["joserfc", "pyjwt"])


def refusal(verifier: Verifier, token: str, accepted: JosePolicy) -> str:
    with pytest.raises(InvalidToken) as caught:
        verifier.verify(token, accepted, now=NOW)
    return str(caught.value)


@pytest.mark.parametrize("alg", SUPPORTED_ALGORITHMS)
def test_both_libraries_verify_every_token_we_sign(keys: dict[str, KeyMaterial], alg: str) -> None:
    key = keys[alg]
    signer = Signer(key)
    for number in range(SAMPLES if alg == "ES256" else 2):
        body = claims(jti=f"jti-{number}", name="Zoë")
        token = signer.sign(body)
        assert joserfc_verify(token, key) == body
        assert pyjwt_verify(token, key) == body
        if alg == "ES256":
            assert signature_s(token) <= P256_N // 2


@ISSUERS
@pytest.mark.parametrize("alg", SUPPORTED_ALGORITHMS)
def test_we_verify_their_tokens_when_our_policy_allows_them(
    keys: dict[str, KeyMaterial], alg: str, make: Issuer
) -> None:
    key = keys[alg]
    verifier = Verifier([key.public_jwk])
    for number in range(SAMPLES if alg == "ES256" else 2):
        body = claims(jti=f"jti-{number}")
        token = make(key, {"kid": key.kid, "typ": "at+jwt"}, body)
        if alg == "ES256" and signature_s(token) > P256_N // 2:
            # Valid for both libraries, but not the one form we accept; its twin is.
            assert refusal(verifier, token, policy(alg)) == NON_CANONICAL
            token = twin(token)
        assert verifier.verify(token, policy(alg), now=NOW) == body


@ISSUERS
@pytest.mark.parametrize("alg", SUPPORTED_ALGORITHMS)
def test_we_refuse_their_tokens_of_the_wrong_kind(
    keys: dict[str, KeyMaterial], alg: str, make: Issuer
) -> None:
    key = keys[alg]
    verifier = Verifier([key.public_jwk])
    token = make(key, {"kid": key.kid, "typ": "JWT"}, claims())
    assert refusal(verifier, token, policy(alg)) == WRONG_KIND
    # The same token is fine where an ID token (typ JWT) is expected.
    if alg != "ES256" or signature_s(token) <= P256_N // 2:
        assert verifier.verify(token, policy(alg, typ="JWT"), now=NOW) == claims()


@ISSUERS
@pytest.mark.parametrize("extra", [{"cty": "JWT"}, {"jku": "https://evil.example/jwks"}])
@pytest.mark.parametrize("alg", SUPPORTED_ALGORITHMS)
def test_we_refuse_their_tokens_with_a_header_we_never_issue(
    keys: dict[str, KeyMaterial], alg: str, make: Issuer, extra: dict[str, str]
) -> None:
    key = keys[alg]
    token = make(key, {"kid": key.kid, "typ": "at+jwt", **extra}, claims())
    assert refusal(Verifier([key.public_jwk]), token, policy(alg)) == EXTRA_HEADER


@ISSUERS
def test_we_refuse_the_high_s_twin_of_their_tokens(
    keys: dict[str, KeyMaterial], make: Issuer
) -> None:
    key = keys["ES256"]
    verifier = Verifier([key.public_jwk])
    token = make(key, {"kid": key.kid, "typ": "at+jwt"}, claims())
    high = token if signature_s(token) > P256_N // 2 else twin(token)
    # Both libraries take either form: the low-S rule is ours alone.
    assert pyjwt_verify(high, key) == claims()
    assert joserfc_verify(high, key) == claims()
    assert refusal(verifier, high, policy("ES256")) == NON_CANONICAL
    assert verifier.verify(twin(high), policy("ES256"), now=NOW) == claims()
