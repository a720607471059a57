"""Raw ECDSA for the JOSE facade: ES256 sign/verify in the JWS form, and the low-S rule.

Part of ``keyturn.security.jose`` (split out to keep modules small); nothing else imports
it. ``cryptography`` signs and verifies; this module only converts between its DER
signatures and the fixed-size R || S form of JWS (RFC 7518 section 3.4) and keeps S low.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

__all__ = ["ECDSA_ORDER", "es256_sign", "es256_verify", "is_high_s"]

# ECDSA signatures are malleable: if (r, s) is valid, so is (r, n - s) over the same
# message. Keyturn issues and accepts only the low-S form (s <= n/2, as BIP 62 / Bitcoin and
# Ethereum require), so every token has ONE valid string: a deny-list, replay cache or
# any other lookup keyed on the token string can never be sidestepped by a twin.
# Group orders n: P-256, P-384, P-521 (SEC 2 v2 sections 2.4.2, 2.5.1, 2.6.1); keyed by the
# JWS algorithm that uses each curve (RFC 7518 section 3.4). ES384/ES512 are listed so
# that enabling them later keeps the rule.
ECDSA_ORDER: dict[str, tuple[int, int]] = {
    alg: (order, size)
    for alg, order, size in (
        ("ES256", 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551, 32),
        (
            "ES384",
            int(
                "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"
                "C7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973",
                16,
            ),
            48,
        ),
        (
            "ES512",
            int(
                "01FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"
                "FA51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409",
                16,
            ),
            66,
        ),
    )
}


def is_high_s(alg: str, signature: bytes) -> bool:
    """Whether a raw R || S signature of ``alg`` is the non-canonical (high-S) twin."""
    order, size = ECDSA_ORDER[alg]
    return int.from_bytes(signature[size:], "big") > order >> 1


# RFC 7518 section 3.4: ES256 is ECDSA over P-256 with SHA-256.
_ES256 = ec.ECDSA(hashes.SHA256())
_P256_ORDER, _P256_SIZE = ECDSA_ORDER["ES256"]


def es256_sign(key: ec.EllipticCurvePrivateKey, signing_input: bytes) -> bytes:
    """An ES256 JWS signature in its one low-S form (see ``ECDSA_ORDER``).

    RFC 7518 section 3.4: the JWS signature is R and S as two 32-byte big-endian integers,
    concatenated (not the DER ``cryptography`` produces).
    """
    r, s = decode_dss_signature(key.sign(signing_input, _ES256))
    if s > _P256_ORDER >> 1:
        s = _P256_ORDER - s
    return r.to_bytes(_P256_SIZE, "big") + s.to_bytes(_P256_SIZE, "big")


def es256_verify(key: ec.EllipticCurvePublicKey, signing_input: bytes, signature: bytes) -> bool:
    """Check an ES256 JWS signature (RFC 7518 section 3.4: exactly 64 bytes, R || S)."""
    if len(signature) != 2 * _P256_SIZE:
        return False
    r = int.from_bytes(signature[:_P256_SIZE], "big")
    s = int.from_bytes(signature[_P256_SIZE:], "big")
    try:
        # OpenSSL refuses r or s of 0 or >= n itself (SEC 1 v2 section 4.1.4, step 1).
        key.verify(encode_dss_signature(r, s), signing_input, _ES256)
    except InvalidSignature:
        return False
    return True
