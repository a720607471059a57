"""The JOSE facade: tokens PyJWT accepts, and every forgery or misuse refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jwt.algorithms import get_default_algorithms

from keyturn.errors import InvalidToken
from keyturn.security.jose import MAX_TOKEN_LENGTH, JosePolicy, Signer, Verifier
from keyturn.security.keys import SUPPORTED_ALGORITHMS, KeyMaterial, generate_key

ISS = "https://id.example.test"
AUD = "https://api.example.test"
NOW = 1_700_000_000
POLICY = JosePolicy(algorithms=frozenset(SUPPORTED_ALGORITHMS), issuer=ISS, audience=AUD)
PYJWT_ALGORITHMS = get_default_algorithms()
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def claims(**changes: Any) -> dict[str, Any]:
    """Access-token claims valid at NOW; a change to None removes the claim."""
    base: dict[str, Any] = {
        "iss": ISS,
        "aud": AUD,
        "sub": "user-1",
        "exp": NOW + 300,
        "iat": NOW,
        "nbf": NOW,
        "jti": "jti-1",
        "sid": "sid-1",
        "client_id": "first-party",
        "scope": "me:read",
        "roles": ["user"],
    }
    base.update(changes)
    return {name: value for name, value in base.items() if value is not None}


def forge(
    header: dict[str, Any], payload: dict[str, Any] | bytes, key: KeyMaterial, *, alg: str = ""
) -> str:
    """Sign arbitrary header and payload with PyJWT's algorithms (independent of ours)."""
    raw_payload = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(raw_payload)}"
    algorithm = PYJWT_ALGORITHMS[alg or key.alg]
    signature = algorithm.sign(signing_input.encode(), algorithm.prepare_key(key.private_pem))
    return f"{signing_input}.{b64(low_s(alg or key.alg, signature))}"


# Order of the P-256 group (SEC 2 v2 section 2.4.2).
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def low_s(alg: str, signature: bytes) -> bytes:
    """An ES256 signature in its canonical low-S form (the only one the verifier accepts),
    so a forged token is refused for the flaw under test, not for a random high S."""
    if alg != "ES256":
        return signature
    s = int.from_bytes(signature[32:], "big")
    return signature if s <= P256_N // 2 else signature[:32] + (P256_N - s).to_bytes(32, "big")


def high_s_twin(token: str) -> str:
    """``token`` with its ES256 ``s`` replaced by ``n - s``."""
    signing_input, signature = token.rsplit(".", 1)
    raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    s = int.from_bytes(raw[32:], "big")
    return f"{signing_input}.{b64(raw[:32] + (P256_N - s).to_bytes(32, 'big'))}"


def hs256(header: dict[str, Any], payload: dict[str, Any], secret: bytes) -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


@pytest.fixture(scope="module")
def keys() -> dict[str, KeyMaterial]:
    return {alg: generate_key(alg) for alg in SUPPORTED_ALGORITHMS}


@pytest.fixture(scope="module")
def verifier(keys: dict[str, KeyMaterial]) -> Verifier:
    return Verifier(key.public_jwk for key in keys.values())


@pytest.fixture(scope="module")
def es256(keys: dict[str, KeyMaterial]) -> KeyMaterial:
    return keys["ES256"]


@pytest.fixture(scope="module")
def good_token(es256: KeyMaterial) -> str:
    return Signer(es256).sign(claims())


def header_of(key: KeyMaterial, **changes: Any) -> dict[str, Any]:
    header = {"alg": key.alg, "kid": key.kid, "typ": "at+jwt"}
    header.update(changes)
    return {name: value for name, value in header.items() if value is not None}


# The plain-word reasons a refusal gives (they reach clients; no library jargon).
NON_CANONICAL = "The token's signature is not in its one accepted form."
ALG_REFUSED = "The token is signed with an algorithm that is not accepted."
ALG_MISMATCH = "The token's algorithm does not match its signing key."
BAD_SIGNATURE = "The token's signature is not valid."
WRONG_TYP = "The token is of the wrong kind for this use."
UNKNOWN_KID = "The token was signed by an unknown or withdrawn key."
MALFORMED = "The token is not a well-formed signed token."


def rejects(verifier: Verifier, token: Any, policy: JosePolicy = POLICY) -> str:
    with pytest.raises(InvalidToken) as caught:
        verifier.verify(token, policy, now=NOW)
    return caught.value.detail


# --- what we sign is a standard token -------------------------------------------------


@pytest.mark.parametrize("alg", SUPPORTED_ALGORITHMS)
def test_pyjwt_accepts_our_tokens(keys: dict[str, KeyMaterial], alg: str) -> None:
    key = keys[alg]
    now = int(time.time())  # PyJWT checks exp against the real clock
    token = Signer(key).sign(claims(exp=now + 300, iat=now, nbf=now))
    assert pyjwt.get_unverified_header(token) == {"alg": alg, "kid": key.kid, "typ": "at+jwt"}
    public = pyjwt.PyJWK(key.public_jwk).key
    decoded = pyjwt.decode(token, public, algorithms=[alg], audience=AUD, issuer=ISS)
    assert decoded["sub"] == "user-1"
    assert decoded["exp"] == now + 300


@pytest.mark.parametrize("alg", SUPPORTED_ALGORITHMS)
def test_verifier_accepts_our_tokens(
    keys: dict[str, KeyMaterial], verifier: Verifier, alg: str
) -> None:
    token = Signer(keys[alg]).sign(claims())
    assert verifier.verify(token, POLICY, now=NOW) == claims()


def test_verifier_accepts_pyjwt_tokens(es256: KeyMaterial, verifier: Verifier) -> None:
    token = pyjwt.encode(
        claims(), es256.private_pem, algorithm="ES256", headers={"kid": es256.kid, "typ": "at+jwt"}
    )
    # PyJWT leaves S as ECDSA drew it; of the two valid forms only the low-S one passes.
    signing_input, signature = token.rsplit(".", 1)
    raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    canonical = f"{signing_input}.{b64(low_s('ES256', raw))}"
    assert verifier.verify(canonical, POLICY, now=NOW)["sub"] == "user-1"
    assert rejects(verifier, high_s_twin(canonical)) == NON_CANONICAL


@pytest.mark.parametrize("typ", ["at+jwt", "AT+JWT", "application/at+jwt", "Application/At+JWT"])
def test_typ_comparison_is_case_insensitive_and_prefix_tolerant(
    es256: KeyMaterial, verifier: Verifier, typ: str
) -> None:
    token = Signer(es256).sign(claims(), typ=typ)
    assert verifier.verify(token, POLICY, now=NOW)["sub"] == "user-1"


def test_audience_may_be_a_list(es256: KeyMaterial, verifier: Verifier) -> None:
    token = Signer(es256).sign(claims(aud=["other", AUD]))
    assert verifier.verify(token, POLICY, now=NOW)["aud"] == ["other", AUD]


def test_boundaries_of_exp_and_nbf(es256: KeyMaterial, verifier: Verifier) -> None:
    signer = Signer(es256)
    assert verifier.verify(signer.sign(claims(exp=NOW + 1)), POLICY, now=NOW)
    rejects(verifier, signer.sign(claims(exp=NOW)))  # RFC 7519 4.1.4: "on or after"
    assert verifier.verify(signer.sign(claims(nbf=NOW)), POLICY, now=NOW)
    assert verifier.verify(signer.sign(claims(nbf=None)), POLICY, now=NOW)  # nbf is optional


def test_leeway_tolerates_small_skew(es256: KeyMaterial, verifier: Verifier) -> None:
    lenient = JosePolicy(POLICY.algorithms, ISS, AUD, leeway=30)
    token = Signer(es256).sign(claims(exp=NOW - 10, nbf=NOW + 10))
    assert verifier.verify(token, lenient, now=NOW)["sub"] == "user-1"
    rejects(verifier, token)


def test_now_defaults_to_the_clock(es256: KeyMaterial, verifier: Verifier) -> None:
    now = int(time.time())
    token = Signer(es256).sign(claims(exp=now + 300, iat=now, nbf=now))
    assert verifier.verify(token, POLICY)["sub"] == "user-1"
    rejects(verifier, Signer(es256).sign(claims(exp=now - 1000, iat=now - 2000, nbf=None)))


# --- algorithm attacks -----------------------------------------------------------------


def test_alg_none_is_refused(es256: KeyMaterial, verifier: Verifier) -> None:
    for alg in ("none", "None", "NONE"):
        header = b64(json.dumps(header_of(es256, alg=alg)).encode())
        payload = b64(json.dumps(claims()).encode())
        assert rejects(verifier, f"{header}.{payload}.") == ALG_REFUSED


def test_hs256_with_the_public_key_as_secret_is_refused(
    keys: dict[str, KeyMaterial], verifier: Verifier
) -> None:
    for key in keys.values():
        public_pem = (
            serialization.load_pem_private_key(key.private_pem, password=None)
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        jwk_json = json.dumps(key.public_jwk).encode()
        for secret in (public_pem, jwk_json):
            token = hs256(header_of(key, alg="HS256"), claims(), secret)
            assert rejects(verifier, token) == ALG_REFUSED


@pytest.mark.parametrize("algorithms", [{"none"}, {"HS256"}, {"ES256", "HS256"}, set()])
def test_policies_cannot_allow_none_or_hmac(algorithms: set[str]) -> None:
    with pytest.raises(ValueError, match="algorithms"):
        JosePolicy(frozenset(algorithms), ISS, AUD)


def test_header_alg_must_match_the_key(keys: dict[str, KeyMaterial], verifier: Verifier) -> None:
    # Signed with the RSA key but naming the EC key's kid: the key decides the algorithm.
    token = forge(header_of(keys["ES256"], alg="RS256"), claims(), keys["RS256"])
    assert rejects(verifier, token) == ALG_MISMATCH


PAIRS = [(a, b) for a in SUPPORTED_ALGORITHMS for b in SUPPORTED_ALGORITHMS if a != b]


@pytest.mark.parametrize(("signed_by", "labelled"), PAIRS)
def test_header_alg_differing_from_its_own_key_is_refused(
    keys: dict[str, KeyMaterial], verifier: Verifier, signed_by: str, labelled: str
) -> None:
    """RFC 8725 section 3.1: e.g. an RS256 token (RS256 key and kid) whose header says ES256."""
    key = keys[signed_by]
    token = forge(header_of(key, alg=labelled), claims(), key)
    assert rejects(verifier, token) == ALG_MISMATCH


@pytest.mark.parametrize(("signed_by", "labelled"), PAIRS)
def test_a_token_naming_another_chains_kid_is_refused(
    keys: dict[str, KeyMaterial], verifier: Verifier, signed_by: str, labelled: str
) -> None:
    """Signed by the ``signed_by`` key but carrying the ``labelled`` key's kid."""
    other = keys[labelled]
    # Header alg true to the signing key: the kid's key has another alg.
    honest = forge(header_of(other, alg=signed_by), claims(), keys[signed_by])
    assert rejects(verifier, honest) == ALG_MISMATCH
    # Header alg true to the kid's key: the signature is not that key's.
    disguised = forge(header_of(other), claims(), keys[signed_by], alg=signed_by)
    assert rejects(verifier, disguised) == BAD_SIGNATURE


def test_alg_outside_the_policy_is_refused(es256: KeyMaterial, verifier: Verifier) -> None:
    only_rsa = JosePolicy(frozenset({"RS256"}), ISS, AUD)
    assert rejects(verifier, Signer(es256).sign(claims()), only_rsa) == ALG_REFUSED


# --- header checks ---------------------------------------------------------------------


@pytest.mark.parametrize("typ", ["JWT", "jwt", "application/jwt", "id_token+jwt", "", 7])
def test_wrong_typ_is_refused(es256: KeyMaterial, verifier: Verifier, typ: Any) -> None:
    token = forge(header_of(es256, typ=typ), claims(), es256)
    assert rejects(verifier, token) == WRONG_TYP


def test_missing_typ_is_refused(es256: KeyMaterial, verifier: Verifier) -> None:
    token = forge({"alg": "ES256", "kid": es256.kid}, claims(), es256)
    assert rejects(verifier, token) == WRONG_TYP


def test_an_id_token_is_not_an_access_token(es256: KeyMaterial, verifier: Verifier) -> None:
    id_token = Signer(es256).sign(claims(), typ="JWT")
    rejects(verifier, id_token)
    id_policy = JosePolicy(POLICY.algorithms, ISS, AUD, typ="JWT")
    assert verifier.verify(id_token, id_policy, now=NOW)["sub"] == "user-1"


@pytest.mark.parametrize("kid", ["unknown", "", None, 5, ["x"]])
def test_unknown_or_odd_kid_is_refused(es256: KeyMaterial, verifier: Verifier, kid: Any) -> None:
    header = header_of(es256)
    header["kid"] = kid
    assert rejects(verifier, forge(header, claims(), es256)) == UNKNOWN_KID


def test_missing_kid_is_refused(es256: KeyMaterial, verifier: Verifier) -> None:
    assert rejects(verifier, forge(header_of(es256, kid=None), claims(), es256)) == UNKNOWN_KID


@pytest.mark.parametrize(
    "extra",
    [
        {"crit": ["exp"], "exp": 1},
        {"b64": False, "crit": ["b64"]},
        {"jku": "https://evil.example/jwks"},
        {"jwk": {"kty": "oct", "k": "AAAA"}},
        {"x5u": "https://evil.example/cert"},
    ],
)
def test_unexpected_header_parameters_are_refused(
    es256: KeyMaterial, verifier: Verifier, extra: dict[str, Any]
) -> None:
    assert rejects(verifier, forge({**header_of(es256), **extra}, claims(), es256))


# --- claims ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"aud": "https://other.example.test"},
        {"aud": ["a", "b"]},
        {"aud": []},
        {"aud": None},
        {"aud": 5},
        {"iss": "https://evil.example.test"},
        {"iss": None},
        {"exp": NOW - 1},
        {"exp": None},
        {"exp": "tomorrow"},
        {"exp": True},
        {"nbf": NOW + 1},
        {"nbf": "now"},
        {"iat": None},
        {"iat": NOW + 60},
        {"sub": 5},
    ],
    ids=repr,
)
def test_bad_claims_are_refused(es256: KeyMaterial, verifier: Verifier, changes: Any) -> None:
    rejects(verifier, Signer(es256).sign(claims(**changes)))


def test_non_finite_exp_is_refused(es256: KeyMaterial, verifier: Verifier) -> None:
    payload = json.dumps(claims()).replace(str(NOW + 300), "Infinity", 1).encode()
    assert b"Infinity" in payload
    rejects(verifier, forge(header_of(es256), payload, es256))


@pytest.mark.parametrize("payload", [b"[1, 2]", b'"text"', b"null", b"not json", b"\xff\xfe"])
def test_signed_payload_that_is_not_an_object_is_refused(
    es256: KeyMaterial, verifier: Verifier, payload: bytes
) -> None:
    rejects(verifier, forge(header_of(es256), payload, es256))


# --- tampering and malformed input -----------------------------------------------------


def test_modified_payload_is_refused(
    es256: KeyMaterial, verifier: Verifier, good_token: str
) -> None:
    header, _, signature = good_token.split(".")
    evil = b64(json.dumps(claims(sub="admin", roles=["admin"])).encode())
    assert rejects(verifier, f"{header}.{evil}.{signature}") == BAD_SIGNATURE


def test_signature_from_another_key_is_refused(
    keys: dict[str, KeyMaterial], verifier: Verifier
) -> None:
    stranger = generate_key("ES256")
    token = forge(header_of(keys["ES256"]), claims(), stranger)
    assert rejects(verifier, token) == BAD_SIGNATURE


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-5],
        lambda t: t.rsplit(".", 1)[0],
        lambda t: t.rsplit(".", 1)[0] + ".",
        lambda t: t + ".extra",
        lambda t: t.split(".", 1)[1],
        lambda t: "",
        lambda t: "..",
        lambda t: "a.b.c",
        lambda t: t.replace(".", "..", 1),
        lambda t: " " + t,
        lambda t: t + "\n",
        lambda t: t.replace("-", "+").replace("_", "/") if ("-" in t or "_" in t) else t + "=",
        lambda t: t + "é",
    ],
)
def test_truncated_or_malformed_tokens_are_refused(
    verifier: Verifier, good_token: str, mangle: Any
) -> None:
    rejects(verifier, mangle(good_token))


@pytest.mark.parametrize(
    "header",
    [b"not json", b"[]", b'"alg"', b"123", b"null", b"{", b'{"alg": "ES256"', b"\xff"],
)
def test_non_json_or_non_object_header_is_refused(
    verifier: Verifier, good_token: str, header: bytes
) -> None:
    _, payload, signature = good_token.split(".")
    rejects(verifier, f"{b64(header)}.{payload}.{signature}")


@pytest.mark.parametrize("token", [None, b"a.b.c", 12, ["a", "b", "c"], {"alg": "none"}])
def test_non_string_input_is_refused(verifier: Verifier, token: Any) -> None:
    rejects(verifier, token)


def test_huge_inputs_are_refused_cheaply(verifier: Verifier, good_token: str) -> None:
    header, payload, signature = good_token.split(".")
    assert rejects(verifier, "a" * (MAX_TOKEN_LENGTH + 1)) == MALFORMED
    rejects(verifier, f"{header}.{payload}{'A' * MAX_TOKEN_LENGTH}.{signature}")
    rejects(verifier, "." * 100_000)
    nested = b64(b"[" * 5000)
    rejects(verifier, f"{nested}.{payload}.{signature}")


# --- fuzzing: whatever goes in, only InvalidToken comes out ----------------------------


@FUZZ
@given(st.text(max_size=400))
def test_fuzz_random_text(verifier: Verifier, text: str) -> None:
    with pytest.raises(InvalidToken):
        verifier.verify(text, POLICY, now=NOW)


@FUZZ
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=5))
def test_fuzz_random_base64_segments(verifier: Verifier, segments: list[bytes]) -> None:
    with pytest.raises(InvalidToken):
        verifier.verify(".".join(b64(segment) for segment in segments), POLICY, now=NOW)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)


@FUZZ
@given(
    header=st.dictionaries(
        st.sampled_from(["alg", "kid", "typ", "crit", "b64", "jku", "zip", "x"]),
        JSON_VALUES | st.sampled_from(["ES256", "RS256", "EdDSA", "HS256", "none", "at+jwt"]),
        max_size=5,
    ),
    payload=st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=6),
    signature=st.binary(max_size=300),
)
def test_fuzz_structured_headers_and_payloads(
    verifier: Verifier, header: dict[str, Any], payload: dict[str, Any], signature: bytes
) -> None:
    token = ".".join(
        [b64(json.dumps(header).encode()), b64(json.dumps(payload).encode()), b64(signature)]
    )
    with pytest.raises(InvalidToken):
        verifier.verify(token, POLICY, now=NOW)


@FUZZ
@given(position=st.integers(min_value=0), replacement=st.characters())
def test_fuzz_any_single_character_change_is_refused(
    verifier: Verifier, good_token: str, position: int, replacement: str
) -> None:
    index = position % len(good_token)
    if good_token[index] == replacement:
        return
    mutated = good_token[:index] + replacement + good_token[index + 1 :]
    with pytest.raises(InvalidToken):
        verifier.verify(mutated, POLICY, now=NOW)


# --- verifier construction -------------------------------------------------------------


def test_verifier_refuses_bad_key_sets(keys: dict[str, KeyMaterial]) -> None:
    es = keys["ES256"].public_jwk
    private_jwk = {**es, "d": "c2VjcmV0"}
    bad_sets: list[list[dict[str, Any]]] = [
        [private_jwk],
        [{k: v for k, v in es.items() if k != "alg"}],
        [{k: v for k, v in es.items() if k != "kid"}],
        [{**es, "alg": "HS256"}],
        [{"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQ", "kid": "h", "alg": "ES256"}],
        [{**es, "alg": "RS256"}],
        [{**keys["RS256"].public_jwk, "alg": "ES256"}],
        [{"kty": "EC", "kid": "x", "alg": "ES256"}],
        [es, es],
    ]
    for bad in bad_sets:
        with pytest.raises(ValueError, match=r"JWK|kid"):
            Verifier(bad)
