"""Aead: AES-256-GCM at rest, tamper detection and key rotation."""

from __future__ import annotations

import hashlib

import pytest

from keyturn.security.aead import Aead, DecryptionError
from keyturn.security.digests import KeyRing

OLD = b"o" * 32
NEW = b"n" * 32
AAD = b"signing_keys.private_pem:42"


def _flip(blob: bytes, index: int) -> bytes:
    changed = bytearray(blob)
    changed[index] ^= 0x01
    return bytes(changed)


def test_roundtrip_and_layout() -> None:
    ring = KeyRing([NEW])
    aead = Aead(ring)
    blob = aead.encrypt(b"totp seed", aad=AAD)
    assert aead.decrypt(blob, aad=AAD) == b"totp seed"
    assert blob[0] == 1
    assert blob[1:5] == hashlib.sha256(ring.derive("aead-v1")[0]).digest()[:4]
    assert len(blob) == 1 + 4 + 12 + len(b"totp seed") + 16
    assert aead.encrypt(b"totp seed", aad=AAD) != blob  # fresh random nonce each time
    assert aead.decrypt(aead.encrypt(b"", aad=b""), aad=b"") == b""


@pytest.mark.parametrize(
    "index",
    [0, 1, 4, 5, 16, 17, -1],  # version, key id, nonce, ciphertext, tag
    ids=["version", "key-id-first", "key-id-last", "nonce-first", "nonce-last", "ct", "tag"],
)
def test_tampering_is_detected(index: int) -> None:
    aead = Aead(KeyRing([NEW]))
    blob = aead.encrypt(b"private key material", aad=AAD)
    with pytest.raises(DecryptionError):
        aead.decrypt(_flip(blob, index), aad=AAD)


def test_wrong_aad_is_detected() -> None:
    aead = Aead(KeyRing([NEW]))
    blob = aead.encrypt(b"secret", aad=AAD)
    with pytest.raises(DecryptionError):
        aead.decrypt(blob, aad=b"signing_keys.private_pem:43")


@pytest.mark.parametrize("blob", [b"", b"\x01", b"\x01" + b"\x00" * 31, b"\x02" + b"\x00" * 40])
def test_malformed_blobs_are_refused(blob: bytes) -> None:
    with pytest.raises(DecryptionError):
        Aead(KeyRing([NEW])).decrypt(blob, aad=AAD)


def test_decrypts_after_rotation_and_reports_reencrypt() -> None:
    blob = Aead(KeyRing([OLD])).encrypt(b"secret", aad=AAD)
    rotated = Aead(KeyRing([NEW, OLD]))
    assert rotated.decrypt(blob, aad=AAD) == b"secret"
    assert rotated.needs_reencrypt(blob)
    fresh = rotated.encrypt(b"secret", aad=AAD)
    assert not rotated.needs_reencrypt(fresh)
    with pytest.raises(DecryptionError):
        Aead(KeyRing([OLD])).decrypt(fresh, aad=AAD)  # the old ring lacks the new key
    with pytest.raises(DecryptionError, match="not in the ring"):
        Aead(KeyRing([NEW])).decrypt(blob, aad=AAD)
    with pytest.raises(DecryptionError):
        Aead(KeyRing([NEW])).needs_reencrypt(blob)


def test_the_same_key_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        Aead(KeyRing([NEW, NEW]))
