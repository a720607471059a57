"""ES256 signed and verified directly with ``cryptography`` (RFC 7518 section 3.4).

The facade's ES256 path bypasses joserfc's algorithm models. These tests prove it is taken,
that it interoperates both ways with joserfc and PyJWT for any claims, and that it refuses
everything the joserfc path refuses, in the same words: every changed byte, the high-S
twin, out-of-range or mis-sized signatures, alg confusion, a wrong kid or typ.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import string
import warnings
from typing import Any

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joserfc import jwt as jose_jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import import_key

from keyturn.errors import InvalidToken
from keyturn.security import jose
from keyturn.security.jose import JosePolicy, Signer, Verifier
from keyturn.security.keys import SUPPORTED_ALGORITHMS, KeyMaterial, generate_key

ISS = "https://id.example.test"
AUD = "https://api.example.test"
NOW = 1_700_000_000
POLICY = JosePolicy(algorithms=frozenset(SUPPORTED_ALGORITHMS), issuer=ISS, audience=AUD)
# Order of the P-256 group (SEC 2 v2 section 2.4.2).
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
B64URL = string.ascii_letters + string.digits + "-_"

MALFORMED = "The token is not a well-formed signed token."
BAD_SIGNATURE = "The token's signature is not valid."
NON_CANONICAL = "The token's signature is not in its one accepted form."
ALG_REFUSED = "The token is signed with an algorithm that is not accepted."
ALG_MISMATCH = "The token's algorithm does not match its signing key."
UNKNOWN_KID = "The token was signed by an unknown or withdrawn key."
WRONG_TYP = "The token is of the wrong kind for this use."
EXTRA_HEADER = "The token's header carries parameters that are not accepted."


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def claims(**extra: Any) -> dict[str, Any]:
    return {"iss": ISS, "aud": AUD, "sub": "user-1", "iat": NOW, "exp": NOW + 300, **extra}


def with_signature(token: str, raw: bytes) -> str:
    return f"{token.rsplit('.', 1)[0]}.{b64(raw)}"


def es256_raw(key: KeyMaterial, signing_input: bytes) -> bytes:
    """A low-S R || S signature made with ``cryptography`` alone (not our code)."""
    private = serialization.load_pem_private_key(key.private_pem, password=None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    r, s = decode_dss_signature(private.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    return es256_low(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def forged(key: KeyMaterial, header: dict[str, Any], body: dict[str, Any]) -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(body).encode())}"
    return f"{signing_input}.{b64(es256_raw(key, signing_input.encode()))}"


def refusal(verifier: Verifier, token: Any, policy: JosePolicy = POLICY) -> str:
    with pytest.raises(InvalidToken) as caught:
        verifier.verify(token, policy, now=NOW)
    return caught.value.detail


@pytest.fixture(scope="module")
def keys() -> dict[str, KeyMaterial]:
    return {alg: generate_key(alg) for alg in SUPPORTED_ALGORITHMS}


@pytest.fixture(scope="module")
def es256(keys: dict[str, KeyMaterial]) -> KeyMaterial:
    return keys["ES256"]


@pytest.fixture(scope="module")
def verifier(keys: dict[str, KeyMaterial]) -> Verifier:
    return Verifier(key.public_jwk for key in keys.values())


@pytest.fixture(scope="module")
def token(es256: KeyMaterial) -> str:
    return Signer(es256).sign(claims(jti="j-1", scope="me:read"))


# --- the direct path is the one taken --------------------------------------------------


def test_es256_never_reaches_joserfcs_signature_code(
    keys: dict[str, KeyMaterial], verifier: Verifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("joserfc's JWS path was used")

    signers = {alg: Signer(key) for alg, key in keys.items()}
    monkeypatch.setattr(jose, "serialize_compact", refuse)
    monkeypatch.setattr(jose, "validate_compact", refuse)
    monkeypatch.setattr(jose, "extract_compact", refuse)
    token = signers["ES256"].sign(claims())
    assert verifier.verify(token, POLICY, now=NOW) == claims()
    # RS256 and EdDSA stay on joserfc: the patch is live, so the test can fail.
    for alg in ("RS256", "EdDSA"):
        with pytest.raises(AssertionError, match="joserfc"):
            signers[alg].sign(claims())


# --- interoperability, for any claims ---------------------------------------------------

CLAIM_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)
EXTRA_CLAIMS = st.dictionaries(
    st.text(max_size=10).filter(
        lambda name: name not in {"iss", "aud", "iat", "exp", "nbf", "sub", "jti"}
    ),
    CLAIM_VALUES,
    max_size=6,
)


@PROPERTY
@given(extra=EXTRA_CLAIMS)
def test_any_claims_we_sign_verify_with_joserfc_pyjwt_and_us(
    es256: KeyMaterial, verifier: Verifier, extra: dict[str, Any]
) -> None:
    body = claims(**extra)
    token = Signer(es256).sign(body)
    assert int.from_bytes(unb64(token.rsplit(".", 1)[1])[32:], "big") <= P256_N // 2
    public = import_key(dict(es256.public_jwk))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)
        assert jose_jwt.decode(token, public, algorithms=["ES256"]).claims == body
    decoded = pyjwt.decode(
        token,
        pyjwt.PyJWK(es256.public_jwk).key,
        algorithms=["ES256"],
        audience=AUD,
        issuer=ISS,
        options={"verify_exp": False, "verify_iat": False},
    )
    assert decoded == body
    assert verifier.verify(token, POLICY, now=NOW) == body


@PROPERTY
@given(extra=EXTRA_CLAIMS, typ=st.sampled_from(["at+jwt", "JWT"]))
def test_tokens_pyjwt_signs_with_our_key_verify_with_us(
    es256: KeyMaterial, verifier: Verifier, extra: dict[str, Any], typ: str
) -> None:
    body = claims(**extra)
    token = pyjwt.encode(
        body, es256.private_pem, algorithm="ES256", headers={"kid": es256.kid, "typ": typ}
    )
    signature = unb64(token.rsplit(".", 1)[1])
    low = with_signature(token, es256_low(signature))
    high = with_signature(token, es256_high(signature))
    accepted = JosePolicy(POLICY.algorithms, ISS, AUD, typ=typ)
    assert verifier.verify(low, accepted, now=NOW) == body
    assert refusal(verifier, high, accepted) == NON_CANONICAL


def es256_low(signature: bytes) -> bytes:
    s = int.from_bytes(signature[32:], "big")
    return signature if s <= P256_N // 2 else signature[:32] + (P256_N - s).to_bytes(32, "big")


def es256_high(signature: bytes) -> bytes:
    low = int.from_bytes(es256_low(signature)[32:], "big")
    return signature[:32] + (P256_N - low).to_bytes(32, "big")


# --- tampering ---------------------------------------------------------------------------


def test_every_single_bit_flip_is_refused(verifier: Verifier, token: str) -> None:
    raw = token.encode("ascii")
    for index in range(len(raw)):
        for bit in range(8):
            mutated = bytearray(raw)
            mutated[index] ^= 1 << bit
            text = mutated.decode("latin-1")
            with pytest.raises(InvalidToken):
                verifier.verify(text, POLICY, now=NOW)


def test_every_other_base64url_character_in_the_signature_is_refused(
    verifier: Verifier, token: str
) -> None:
    """Including the last character, whose low bits base64 ignores: only the canonical
    spelling passes (RFC 7515 section 2), so one token has exactly one string."""
    head, signature = token.rsplit(".", 1)
    for index, original in enumerate(signature):
        for replacement in B64URL:
            if replacement != original:
                mutated = f"{head}.{signature[:index]}{replacement}{signature[index + 1 :]}"
                with pytest.raises(InvalidToken):
                    verifier.verify(mutated, POLICY, now=NOW)


@PROPERTY
@given(data=st.data())
def test_any_changed_segment_content_is_refused(
    es256: KeyMaterial, verifier: Verifier, token: str, data: st.DataObject
) -> None:
    header, payload, signature = token.split(".")
    segment = data.draw(st.sampled_from([0, 1]))
    parts = [json.loads(unb64(header)), json.loads(unb64(payload))]
    name = data.draw(st.sampled_from(sorted(parts[segment])))
    parts[segment][name] = data.draw(
        CLAIM_VALUES.filter(lambda value: value != parts[segment][name])
    )
    forged_token = ".".join(
        [b64(json.dumps(parts[0]).encode()), b64(json.dumps(parts[1]).encode()), signature]
    )
    with pytest.raises(InvalidToken):
        verifier.verify(forged_token, POLICY, now=NOW)


@pytest.mark.parametrize(
    ("r", "s"),
    [(0, 1), (1, 0), (0, 0), (P256_N, 1), (1, P256_N), (P256_N + 1, 1), (2**256 - 1, 2**256 - 1)],
    ids=["r=0", "s=0", "both 0", "r=n", "s=n", "r=n+1", "all ones"],
)
def test_out_of_range_signature_values_are_refused(
    verifier: Verifier, token: str, r: int, s: int
) -> None:
    raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    assert refusal(verifier, with_signature(token, raw)) in {BAD_SIGNATURE, NON_CANONICAL}


@pytest.mark.parametrize("size", [0, 1, 32, 63, 65, 96, 128])
def test_signatures_of_the_wrong_size_are_refused(
    verifier: Verifier, token: str, size: int
) -> None:
    good = unb64(token.rsplit(".", 1)[1])
    raw = (good * 3)[:size]
    assert refusal(verifier, with_signature(token, raw)) == BAD_SIGNATURE


def test_a_der_signature_is_not_the_jws_form(
    es256: KeyMaterial, verifier: Verifier, token: str
) -> None:
    good = unb64(token.rsplit(".", 1)[1])
    der = encode_dss_signature(int.from_bytes(good[:32], "big"), int.from_bytes(good[32:], "big"))
    assert refusal(verifier, with_signature(token, der)) == BAD_SIGNATURE


def test_the_high_s_twin_of_our_token_is_refused(verifier: Verifier, token: str) -> None:
    signature = unb64(token.rsplit(".", 1)[1])
    assert refusal(verifier, with_signature(token, es256_high(signature))) == NON_CANONICAL


# --- header rules on the direct path ---------------------------------------------------


def test_alg_none_and_hmac_confusion_are_refused(es256: KeyMaterial, verifier: Verifier) -> None:
    body = b64(json.dumps(claims()).encode())
    for alg in ("none", "HS256"):
        header = b64(json.dumps({"alg": alg, "kid": es256.kid, "typ": "at+jwt"}).encode())
        for secret in (b"", json.dumps(es256.public_jwk).encode()):
            mac = hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
            for signature in ("", b64(mac)):
                assert refusal(verifier, f"{header}.{body}.{signature}") == ALG_REFUSED


def test_a_wrong_kid_is_refused(es256: KeyMaterial) -> None:
    other = generate_key("ES256")
    both = Verifier([es256.public_jwk, other.public_jwk])
    # Signed by one key, naming the other: the named key decides, and it does not match.
    token = forged(es256, {"alg": "ES256", "kid": other.kid, "typ": "at+jwt"}, claims())
    assert refusal(both, token) == BAD_SIGNATURE
    assert refusal(Verifier([other.public_jwk]), Signer(es256).sign(claims())) == UNKNOWN_KID


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ({"typ": "JWT"}, WRONG_TYP),
        ({"typ": None}, WRONG_TYP),
        ({"crit": ["exp"]}, EXTRA_HEADER),
        ({"jku": "https://evil.example/jwks"}, EXTRA_HEADER),
        ({"jwk": {"kty": "EC"}}, EXTRA_HEADER),
        ({"alg": "RS256"}, ALG_MISMATCH),
        ({"kid": "nope"}, UNKNOWN_KID),
    ],
    ids=repr,
)
def test_header_rules_hold_on_the_direct_path(
    es256: KeyMaterial, verifier: Verifier, header: dict[str, Any], reason: str
) -> None:
    full = {"alg": "ES256", "kid": es256.kid, "typ": "at+jwt", **header}
    assert (
        refusal(verifier, forged(es256, {k: v for k, v in full.items() if v is not None}, claims()))
        == reason
    )


# --- the same words on both paths -------------------------------------------------------

MANGLES = {
    "no alg": lambda h, p, s: (
        b64(json.dumps({k: v for k, v in json.loads(unb64(h)).items() if k != "alg"}).encode()),
        p,
        s,
    ),
    "header not json": lambda h, p, s: (b64(b"{"), p, s),
    "header a list": lambda h, p, s: (b64(b"[]"), p, s),
    "header padded": lambda h, p, s: (h + "=", p, s),
    "payload not base64": lambda h, p, s: (h, p + "*", s),
    "payload padded": lambda h, p, s: (h, p + "==", s),
    "signature not base64": lambda h, p, s: (h, p, s[:-1] + "+"),
    "signature empty": lambda h, p, s: (h, p, ""),
    "signature huge": lambda h, p, s: (h, p, "A" * 1100),
    "header huge": lambda h, p, s: (
        b64(json.dumps({**json.loads(unb64(h)), "typ": "x" * 600}).encode()),
        p,
        s,
    ),
    "payload changed": lambda h, p, s: (h, b64(json.dumps(claims(sub="admin")).encode()), s),
}


@pytest.mark.parametrize("name", sorted(MANGLES))
def test_refusals_read_the_same_on_the_direct_and_joserfc_paths(
    keys: dict[str, KeyMaterial], verifier: Verifier, name: str
) -> None:
    reasons = set()
    for alg in SUPPORTED_ALGORITHMS:
        parts = Signer(keys[alg]).sign(claims()).split(".")
        reasons.add(refusal(verifier, ".".join(MANGLES[name](*parts))))
    assert len(reasons) == 1, reasons
