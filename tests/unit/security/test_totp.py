"""RFC 6238 TOTP primitives: the appendix B vectors, the drift window, malformed input,
the seed's size and the QR code's form."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest

from keyturn.security import totp

# RFC 6238 appendix B: the SHA-1 seed is the ASCII string "12345678901234567890".
RFC_SEED = base64.b32encode(b"12345678901234567890").decode("ascii")
# (unix time, 8-digit code) rows of the SHA-1 column; a 6-digit code is the last six
# digits (RFC 4226 section 5.3: Snum mod 10^Digit).
RFC_VECTORS = [
    (59, "94287082"),
    (1111111109, "07081804"),
    (1111111111, "14050471"),
    (1234567890, "89005924"),
    (2000000000, "69279037"),
    (20000000000, "65353130"),
]


def _at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


@pytest.mark.parametrize(("seconds", "code8"), RFC_VECTORS)
def test_rfc_6238_appendix_b_sha1_vectors_truncated_to_six_digits(seconds: int, code8: str) -> None:
    step = seconds // 30
    assert totp.code_at(RFC_SEED, step) == code8[-6:]
    assert totp.matching_step(RFC_SEED, code8[-6:], _at(seconds), drift=0) == step


def test_codes_agree_with_an_independent_authenticator() -> None:
    secret = totp.new_secret()
    now = datetime(2026, 12, 6, 12, 0, 7, tzinfo=UTC)
    code = pyotp.TOTP(secret).at(now)
    assert totp.matching_step(secret, code, now) == totp.step_at(now)


def test_one_step_of_drift_each_way_is_accepted_two_are_not() -> None:
    secret = totp.new_secret()
    now = datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC)
    step = totp.step_at(now)
    for offset in (-1, 0, 1):
        code = totp.code_at(secret, step + offset)
        assert totp.matching_step(secret, code, now) == step + offset
    for offset in (-2, 2):
        code = totp.code_at(secret, step + offset)
        if code in {totp.code_at(secret, step + d) for d in (-1, 0, 1)}:
            continue  # a 1-in-10^6 collision with a step inside the window
        assert totp.matching_step(secret, code, now) is None
    assert totp.matching_step(secret, totp.code_at(secret, step + 1), now, drift=0) is None


def test_the_largest_matching_step_wins_and_every_step_is_compared(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    compared: list[int] = []

    class SameCodeEverywhere:
        """An authenticator whose codes collide on every step of the window."""

        def generate_otp(self, step: int) -> str:
            compared.append(step)
            return "123456"

    monkeypatch.setattr(totp, "_totp", lambda secret: SameCodeEverywhere())
    now = datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC)
    step = totp.step_at(now)
    # The verifier stores the step it returns: the newest one keeps every step <= it used.
    assert totp.matching_step("ignored", "123456", now) == step + 1
    assert compared == [step - 1, step, step + 1]


@pytest.mark.parametrize(
    "code",
    ["", "12345", "1234567", "12a456", "١٢٣٤٥٦", "¹²³⁴⁵⁶", "123456\n", "-12345", "9" * 100],
)
def test_malformed_codes_match_nothing(code: str) -> None:
    secret = totp.new_secret()
    assert totp.matching_step(secret, code, datetime.now(UTC)) is None


def test_spaces_inside_a_code_are_ignored() -> None:
    secret = totp.new_secret()
    now = datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC)
    code = totp.code_at(secret, totp.step_at(now))
    assert totp.matching_step(secret, f" {code[:3]} {code[3:]} ", now) == totp.step_at(now)


def test_a_new_secret_holds_160_random_bits() -> None:
    secrets = {totp.new_secret() for _ in range(50)}
    assert len(secrets) == 50
    for secret in secrets:
        assert len(base64.b32decode(secret)) == 20


def test_provisioning_uri_names_account_and_issuer() -> None:
    secret = totp.new_secret()
    uri = totp.provisioning_uri(secret, "ada@example.com", "Acme Login")
    parts = urlsplit(uri)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp")
    assert parts.path == "/Acme%20Login:ada%40example.com"
    query = parse_qs(parts.query)
    assert query["secret"] == [secret]
    assert query["issuer"] == ["Acme Login"]
    # The defaults (SHA1, 6 digits, 30 s) are what the verifier uses.
    assert pyotp.parse_uri(uri).now() == pyotp.TOTP(secret).now()


def test_qr_svg_is_an_inline_svg_without_declaration_or_external_reference() -> None:
    svg = totp.qr_svg(totp.provisioning_uri(totp.new_secret(), "a@example.com", "Keyturn"))
    assert svg.startswith("<svg")
    assert "<?xml" not in svg
    assert "href" not in svg
    assert "<image" not in svg
    assert "<script" not in svg
    assert svg.startswith('<svg xmlns="http://www.w3.org/2000/svg"')
    assert svg.endswith("</svg>")


def test_step_boundaries_follow_the_unix_epoch() -> None:
    start = datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC)
    assert totp.step_at(start + timedelta(seconds=29)) == totp.step_at(start)
    assert totp.step_at(start + timedelta(seconds=30)) == totp.step_at(start) + 1
