"""Signing keys: generation, loading, public JWK and RFC 7638 kid."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, rsa

from keyturn.security.keys import (
    SUPPORTED_ALGORITHMS,
    KeyMaterial,
    generate_key,
    load_key,
    thumbprint,
)

# RFC 7638 section 3.1, the worked example.
RFC7638_N = (
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPe"
    "bWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY3"
    "68QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM"
    "4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
)
RFC7638_THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"

# RFC 7638 section 3.2 and RFC 8037 section 2: the required members per key type.
REQUIRED = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"), "OKP": ("crv", "kty", "x")}
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}
EXPECTED = {"ES256": ("EC", "P-256"), "RS256": ("RSA", None), "EdDSA": ("OKP", "Ed25519")}


def independent_thumbprint(jwk: dict[str, str]) -> str:
    """RFC 7638 section 3: sorted required members, no whitespace, SHA-256, base64url."""
    required = {name: jwk[name] for name in REQUIRED[jwk["kty"]]}
    canonical = json.dumps(required, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@pytest.fixture(scope="module", params=SUPPORTED_ALGORITHMS)
def material(request: pytest.FixtureRequest) -> KeyMaterial:
    return generate_key(request.param)


def test_generated_key_has_a_public_only_jwk(material: KeyMaterial) -> None:
    kty, crv = EXPECTED[material.alg]
    jwk = material.public_jwk
    assert jwk["kty"] == kty
    assert jwk.get("crv") == crv
    assert jwk["alg"] == material.alg
    assert jwk["use"] == "sig"
    assert jwk["kid"] == material.kid
    assert not PRIVATE_MEMBERS & jwk.keys()
    assert set(jwk) == {*REQUIRED[kty], "kid", "alg", "use"}
    assert material.private_pem.startswith(b"-----BEGIN PRIVATE KEY-----")


def test_kid_is_the_rfc7638_thumbprint(material: KeyMaterial) -> None:
    assert material.kid == independent_thumbprint(material.public_jwk)
    assert thumbprint(material.public_jwk) == material.kid


def test_rsa_keys_are_2048_bits() -> None:
    pem = generate_key("RS256").private_pem
    native = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(native, rsa.RSAPrivateKey)
    assert native.key_size == 2048


def test_rfc7638_example() -> None:
    jwk = {"kty": "RSA", "n": RFC7638_N, "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"}
    assert thumbprint(jwk) == RFC7638_THUMBPRINT
    assert independent_thumbprint(jwk) == RFC7638_THUMBPRINT


def test_load_key_reproduces_the_material(material: KeyMaterial) -> None:
    assert load_key(material.alg, material.private_pem) == material


@pytest.mark.parametrize("alg", ["HS256", "none", "ES384", "es256", ""])
def test_unknown_algorithms_are_refused(alg: str) -> None:
    with pytest.raises(ValueError, match="unsupported"):
        generate_key(alg)
    with pytest.raises(ValueError, match="unsupported"):
        load_key(alg, generate_key("ES256").private_pem)


def _pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed448.Ed448PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.mark.parametrize(
    ("alg", "pem"),
    [
        ("ES256", _pem(ec.generate_private_key(ec.SECP384R1()))),
        ("ES256", _pem(rsa.generate_private_key(65537, 2048))),
        # A weak key on purpose: load_key must refuse it.
        ("RS256", _pem(rsa.generate_private_key(65537, 1024))),  # noqa: S505
        ("RS256", _pem(ec.generate_private_key(ec.SECP256R1()))),
        ("EdDSA", _pem(ed448.Ed448PrivateKey.generate())),
        ("EdDSA", b"-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n"),
        ("ES256", b"not a pem"),
    ],
)
def test_load_key_refuses_keys_that_do_not_fit(alg: str, pem: bytes) -> None:
    with pytest.raises(ValueError, match=r"PEM|fit"):
        load_key(alg, pem)


def test_thumbprint_refuses_invalid_jwks() -> None:
    for jwk in ({}, {"kty": "EC"}, {"kty": "nope"}):
        with pytest.raises(ValueError, match="JWK"):
            thumbprint(jwk)
