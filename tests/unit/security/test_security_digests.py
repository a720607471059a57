"""Tokens, key ring, keyed digests and the refresh-token successor."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from keyturn.security.digests import (
    Digester,
    KeyRing,
    constant_time_equals,
    derive_successor_token,
    keyed_digest,
    new_token,
)

K1 = b"k" * 32
K2 = b"second-ring-key-that-is-long-enough!"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_new_token_has_256_bits_by_default() -> None:
    token = new_token()
    assert len(token) == 43
    assert len(base64.urlsafe_b64decode(token + "=")) == 32
    assert new_token() != token
    assert len(base64.urlsafe_b64decode(new_token(16) + "==")) == 16


@pytest.mark.parametrize("keys", [[], [b"x" * 31], [K1, b"short"]])
def test_key_ring_refuses_empty_or_short_keys(keys: list[bytes]) -> None:
    with pytest.raises(ValueError, match="key"):
        KeyRing(keys)


def test_from_strings_uses_the_utf8_bytes() -> None:
    value = new_token()  # valid base64, but never decoded
    assert KeyRing.from_strings([value]).key_ids == KeyRing([value.encode()]).key_ids
    with pytest.raises(ValueError, match="32 bytes"):
        KeyRing.from_strings(["x" * 31])
    assert len(KeyRing.from_strings(["é" * 16])) == 1  # 16 characters, 32 UTF-8 bytes


def test_key_ids_are_short_stable_and_newest_first() -> None:
    ring = KeyRing([K2, K1])
    assert ring.key_ids == [
        hashlib.sha256(K2).digest()[:4].hex(),
        hashlib.sha256(K1).digest()[:4].hex(),
    ]
    assert KeyRing([K2, K1]).key_ids == ring.key_ids


def test_derive_is_hkdf_sha256_per_key_and_purpose() -> None:
    ring = KeyRing([K2, K1])
    derived = ring.derive("refresh-token")
    expected = [
        HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"refresh-token").derive(key)
        for key in (K2, K1)
    ]
    assert derived == expected
    assert all(len(key) == 32 for key in derived)
    assert ring.derive("aead-v1")[0] != derived[0]  # purposes are independent
    derived.clear()  # callers get a copy: the cache is not theirs to change
    assert ring.derive("refresh-token") == expected


def test_keyed_digest_matches_rfc_4231_test_case_2() -> None:
    digest = keyed_digest(b"Jefe", "what do ya want for nothing?")
    expected = bytes.fromhex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    assert digest == _b64(expected)
    assert len(digest) == 43
    assert "=" not in digest


def test_digests_survive_key_rotation() -> None:
    stored = Digester(KeyRing([K1]), "refresh-token").digest("the-token")
    rotated = Digester(KeyRing([K2, K1]), "refresh-token")
    candidates = rotated.candidates("the-token")
    assert len(candidates) == 2
    assert candidates[1] == stored
    assert candidates[0] == rotated.digest("the-token") != stored
    assert stored not in Digester(KeyRing([K2]), "refresh-token").candidates("the-token")


def test_digests_depend_on_purpose() -> None:
    ring = KeyRing([K1])
    assert Digester(ring, "a").digest("v") != Digester(ring, "b").digest("v")


def test_constant_time_equals() -> None:
    assert constant_time_equals("abc", "abc")
    assert constant_time_equals(b"abc", "abc")
    assert not constant_time_equals("abc", "abd")
    assert not constant_time_equals("abc", b"abcd")
    assert constant_time_equals("ключ", "ключ")  # non-ASCII str must not raise
    assert not constant_time_equals("ключ", "ключи")


def test_successor_token_is_deterministic_and_keyed() -> None:
    key = KeyRing([K1]).derive("refresh-successor")[0]
    successor = derive_successor_token(key, "old-token")
    expected = hmac.new(key, b"refresh-successor:old-token", hashlib.sha256).digest()
    assert successor == _b64(expected)
    assert derive_successor_token(key, "old-token") == successor
    assert derive_successor_token(key, "old-tokeN") != successor
    other = KeyRing([K2]).derive("refresh-successor")[0]
    assert derive_successor_token(other, "old-token") != successor
    assert len(successor) == 43
