"""PasswordHasher: argon2id hashing, argon2/bcrypt verification, rehash, NFKC, dummy work."""

from __future__ import annotations

from unittest import mock

import argon2
import bcrypt
import pytest

from keyturn.security.passwords import (
    OWASP_MIN,
    Argon2Params,
    PasswordHasher,
    normalize_password,
)

FAST = Argon2Params(memory_kib=1024, time_cost=1)


@pytest.fixture(scope="module")
def hasher() -> PasswordHasher:
    return PasswordHasher(FAST)


def _bcrypt(password: bytes, prefix: str = "$2b$") -> str:
    stored = bcrypt.hashpw(password, bcrypt.gensalt(rounds=4)).decode("ascii")
    return prefix + stored[4:]


def test_defaults_are_the_owasp_minimum_and_end_up_in_the_hash() -> None:
    params = Argon2Params()
    assert (params.memory_kib, params.time_cost, params.parallelism) == (19456, 2, 1)
    assert params == OWASP_MIN
    assert params.meets_owasp_minimum()
    assert not FAST.meets_owasp_minimum()
    assert not Argon2Params(memory_kib=19456, time_cost=1).meets_owasp_minimum()

    stored = PasswordHasher(params).hash("correct horse battery")
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")


def test_argon2id_roundtrip(hasher: PasswordHasher) -> None:
    stored = hasher.hash("correct horse battery")
    assert stored.startswith("$argon2id$v=19$m=1024,t=1,p=1$")
    assert hasher.verify(stored, "correct horse battery")
    assert not hasher.verify(stored, "correct horse batterY")
    assert not hasher.needs_rehash(stored)


def test_hashes_are_salted(hasher: PasswordHasher) -> None:
    assert hasher.hash("same password") != hasher.hash("same password")


def test_argon2_with_other_params_needs_rehash(hasher: PasswordHasher) -> None:
    stored = PasswordHasher(Argon2Params(memory_kib=2048, time_cost=1)).hash("pw-pw-pw-pw")
    assert hasher.verify(stored, "pw-pw-pw-pw")
    assert hasher.needs_rehash(stored)


def test_argon2i_verifies_and_needs_rehash(hasher: PasswordHasher) -> None:
    legacy = argon2.PasswordHasher(time_cost=1, memory_cost=1024, type=argon2.Type.I)
    stored = legacy.hash("legacy password")
    assert stored.startswith("$argon2i$")
    assert hasher.verify(stored, "legacy password")
    assert not hasher.verify(stored, "other password")
    assert hasher.needs_rehash(stored)


@pytest.mark.parametrize("prefix", ["$2a$", "$2b$", "$2y$"])
def test_bcrypt_verifies_every_prefix_and_needs_rehash(hasher: PasswordHasher, prefix: str) -> None:
    stored = _bcrypt(b"imported password", prefix)
    assert stored.startswith(prefix)
    assert hasher.verify(stored, "imported password")
    assert not hasher.verify(stored, "imported passworD")
    assert hasher.needs_rehash(stored)


@pytest.mark.parametrize(
    "password",
    ["a" * 72 + "b", "a" * 72 + "bcdefgh", "é" * 37],  # 73, 79 and 74 UTF-8 bytes
)
def test_bcrypt_never_truncates_a_long_password(hasher: PasswordHasher, password: str) -> None:
    encoded = password.encode("utf-8")
    assert len(encoded) > 72
    stored = _bcrypt(encoded[:72])  # what a truncating verifier would accept
    assert not hasher.verify(stored, password)


def test_bcrypt_accepts_exactly_72_bytes(hasher: PasswordHasher) -> None:
    password = "x" * 72
    assert hasher.verify(_bcrypt(password.encode()), password)


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "plain-text-password",
        "$1$saltsalt$hash",
        "$argon2id$garbage",
        "$argon2id$v=19$m=1024,t=1,p=1$abc$def",
        "$argon2d$v=19$m=1024,t=1,p=1$c29tZXNhbHQ$" + "A" * 43,
        "$2b$garbage",
        "$2b$04$" + "x" * 53,
        "$2b$04$ü" + "x" * 52,
        "$2x$04$" + "x" * 53,
    ],
)
def test_garbage_hashes_answer_false_and_need_rehash(hasher: PasswordHasher, stored: str) -> None:
    assert hasher.verify(stored, "whatever password") is False
    assert hasher.needs_rehash(stored) is True


def test_nfkc_normalization(hasher: PasswordHasher) -> None:
    assert normalize_password("\ufb01sh") == "fish"  # the "ﬁ" ligature
    assert normalize_password("ｐａｓｓ") == "pass"  # full-width letters
    stored = hasher.hash("\ufb01sh and chips")
    assert hasher.verify(stored, "fish and chips")
    assert hasher.verify(hasher.hash("fish and chips"), "\ufb01sh and chips")


def test_nfkc_applies_to_bcrypt_too(hasher: PasswordHasher) -> None:
    stored = _bcrypt(b"fish and chips")
    assert hasher.verify(stored, "\ufb01sh and chips")


def test_dummy_verify_runs_a_real_argon2_verify_with_the_configured_params(
    hasher: PasswordHasher,
) -> None:
    original = argon2.PasswordHasher.verify
    with mock.patch.object(
        argon2.PasswordHasher, "verify", autospec=True, side_effect=original
    ) as spy:
        assert hasher.dummy_verify("some password") is None
    spy.assert_called_once()
    _self, dummy_hash, password = spy.call_args.args
    assert dummy_hash.startswith("$argon2id$v=19$m=1024,t=1,p=1$")
    assert password == "some password"


def test_dummy_verify_normalizes_like_a_real_verify(hasher: PasswordHasher) -> None:
    original = argon2.PasswordHasher.verify
    with mock.patch.object(
        argon2.PasswordHasher, "verify", autospec=True, side_effect=original
    ) as spy:
        hasher.dummy_verify("\ufb01sh")
    assert spy.call_args.args[2] == "fish"


def test_bcrypt_is_not_even_asked_about_a_password_over_72_bytes(hasher: PasswordHasher) -> None:
    stored = _bcrypt(b"a" * 72)
    with mock.patch.object(bcrypt, "checkpw", wraps=bcrypt.checkpw) as spy:
        assert not hasher.verify(stored, "a" * 73)
        spy.assert_not_called()
        assert hasher.verify(stored, "a" * 72)
        spy.assert_called_once()
