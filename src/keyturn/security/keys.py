"""Asymmetric signing keys for JWTs: generation, loading and the public JWK.

The ``kid`` of every key is its JWK SHA-256 thumbprint (RFC 7638 section 3), so a kid is
derived from the key itself and is stable across replicas and restarts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, OKPKey, RSAKey, import_key

__all__ = ["SUPPORTED_ALGORITHMS", "KeyMaterial", "generate_key", "load_key", "thumbprint"]

SUPPORTED_ALGORITHMS = ("ES256", "RS256", "EdDSA")

# 2048 bits meets NIST SP 800-57 through 2030; 3072 signs about 3x slower on the token path.
_RSA_BITS = 2048

_SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
_JoseKey = ECKey | RSAKey | OKPKey


@dataclass(frozen=True)
class KeyMaterial:
    """One signing key.

    Attributes:
        kid: The RFC 7638 thumbprint of the key.
        alg: The JWS algorithm (one of ``SUPPORTED_ALGORITHMS``).
        private_pem: The private key, unencrypted PKCS#8 PEM (encrypt it at rest).
        public_jwk: The public JWK: ``kid``, ``alg``, ``use="sig"``, ``kty`` and the
            public key parameters only.
    """

    kid: str
    alg: str
    private_pem: bytes
    public_jwk: dict[str, str]


def generate_key(alg: str) -> KeyMaterial:
    """Generate a new signing key.

    Args:
        alg: ``ES256`` (P-256), ``RS256`` (2048-bit RSA) or ``EdDSA`` (Ed25519).

    Returns:
        The key material.

    Raises:
        ValueError: When ``alg`` is not supported.
    """
    private_key: _SigningKey
    if alg == "ES256":
        private_key = ec.generate_private_key(ec.SECP256R1())
    elif alg == "RS256":
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=_RSA_BITS)
    elif alg == "EdDSA":
        private_key = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ValueError(f"unsupported signing algorithm {alg!r}")
    pem = private_key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )
    return load_key(alg, pem)


def load_key(alg: str, private_pem: bytes) -> KeyMaterial:
    """Load a private PEM key and check that it fits the algorithm.

    Args:
        alg: The JWS algorithm the key is for.
        private_pem: The unencrypted private key in PEM.

    Returns:
        The key material.

    Raises:
        ValueError: When the PEM is not a private key of the type ``alg`` requires.
    """
    jose_key = import_private_key(alg, private_pem)
    public = {name: str(value) for name, value in jose_key.as_dict(private=False).items()}
    kid = jose_key.thumbprint()
    public_jwk = {**public, "kid": kid, "alg": alg, "use": "sig"}
    return KeyMaterial(kid=kid, alg=alg, private_pem=private_pem, public_jwk=public_jwk)


def thumbprint(public_jwk: Mapping[str, Any]) -> str:
    """Compute the RFC 7638 JWK SHA-256 thumbprint of a public JWK.

    Per RFC 7638 section 3, only the required members of the key type are hashed (EC:
    crv, kty, x, y; RSA: e, kty, n; OKP: crv, kty, x per RFC 8037 section 2), as JSON
    with sorted keys and no whitespace; optional members such as kid or alg are ignored.

    Args:
        public_jwk: The JWK.

    Returns:
        The base64url SHA-256 thumbprint (43 characters).

    Raises:
        ValueError: When the JWK is not a valid key.
    """
    try:
        return import_key(dict(public_jwk)).thumbprint()
    except (JoseError, KeyError, TypeError) as exc:
        raise ValueError("not a valid JWK") from exc


def import_private_key(alg: str, private_pem: bytes) -> _JoseKey:
    """Parse a private PEM into a joserfc key after checking it fits ``alg``.

    Only for the service's own keys: one that ``generate_key`` just made, or one read
    back from the key store, where AES-256-GCM under the key ring (with the kid as
    associated data) proves it is the key that was made. So OpenSSL's RSA consistency
    check, which guards against a key crafted by someone else, is skipped: it cost about
    60 ms per RSA key, twice per load (here and in joserfc's own parse, which the native
    key now saves) on every start and reload (issue 18).

    Args:
        alg: The JWS algorithm the key is for.
        private_pem: The unencrypted private key in PEM, made by this service.

    Returns:
        The joserfc key object (used by the JOSE facade).

    Raises:
        ValueError: When the PEM is not a private key of the type ``alg`` requires.
    """
    if alg not in SUPPORTED_ALGORITHMS:
        raise ValueError(f"unsupported signing algorithm {alg!r}")
    try:
        native = serialization.load_pem_private_key(
            private_pem, password=None, unsafe_skip_rsa_key_validation=True
        )
    except (ValueError, TypeError) as exc:
        raise ValueError("not an unencrypted PEM private key") from exc
    # RFC 7518 section 3.4: ES256 is ECDSA on P-256 only.
    if alg == "ES256" and isinstance(native, ec.EllipticCurvePrivateKey):
        if isinstance(native.curve, ec.SECP256R1):
            return ECKey(native, private_pem)
    # RFC 7518 section 3.3: RSA keys of 2048 bits or larger MUST be used.
    elif alg == "RS256" and isinstance(native, rsa.RSAPrivateKey):
        if native.key_size >= _RSA_BITS:
            return RSAKey(native, private_pem)
    # RFC 8037 section 3.1: EdDSA; Keyturn signs with Ed25519 only.
    elif alg == "EdDSA" and isinstance(native, ed25519.Ed25519PrivateKey):
        return OKPKey(native, private_pem)
    raise ValueError(f"the PEM key does not fit {alg}")
