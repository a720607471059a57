"""``at_hash`` / ``c_hash`` (OpenID Connect Core 1.0 section 3.1.3.6 and 3.3.2.11)."""

from __future__ import annotations

import base64
import hashlib

import pytest

from keyturn.security.keys import SUPPORTED_ALGORITHMS
from keyturn.security.oidc_hashes import at_hash, c_hash, left_half_hash

# OpenID Connect Core 1.0 Appendix A.4 (code, c_hash) and A.5 (access token, at_hash);
# both examples are RS256.
SPEC_CODE = "Qcb0Orv1zh30vL1MPRsbm-diHiMwcLyZvn1arpZv-Jxf_11jnpEX3Tgfvk"
SPEC_C_HASH = "LDktKdoQak3Pk0cnXxCltA"
SPEC_ACCESS_TOKEN = "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"
SPEC_AT_HASH = "77QmUPtjPfzWtF2AnpK9RQ"


def test_the_specification_examples() -> None:
    assert c_hash(SPEC_CODE, "RS256") == SPEC_C_HASH
    assert at_hash(SPEC_ACCESS_TOKEN, "RS256") == SPEC_AT_HASH


def test_es256_hashes_with_sha256_like_rs256() -> None:
    assert at_hash(SPEC_ACCESS_TOKEN, "ES256") == SPEC_AT_HASH


def test_eddsa_hashes_with_sha512_the_hash_of_ed25519() -> None:
    digest = hashlib.sha512(SPEC_ACCESS_TOKEN.encode("ascii")).digest()
    expected = base64.urlsafe_b64encode(digest[:32]).rstrip(b"=").decode()
    assert at_hash(SPEC_ACCESS_TOKEN, "EdDSA") == expected
    assert len(expected) == 43  # 256 bits, unpadded base64url
    assert at_hash(SPEC_ACCESS_TOKEN, "EdDSA") != at_hash(SPEC_ACCESS_TOKEN, "RS256")


@pytest.mark.parametrize("alg", SUPPORTED_ALGORITHMS)
def test_every_signing_algorithm_has_a_hash(alg: str) -> None:
    value = left_half_hash("token", alg)
    assert "=" not in value
    assert value == at_hash("token", alg) == c_hash("token", alg)


@pytest.mark.parametrize("alg", ["HS256", "none", "PS256", "ES384", "", "rs256"])
def test_an_algorithm_without_a_known_hash_is_refused(alg: str) -> None:
    with pytest.raises(ValueError, match="no ID Token hash"):
        at_hash("token", alg)


def test_a_value_that_is_not_ascii_is_refused() -> None:
    with pytest.raises(UnicodeEncodeError):  # a ValueError
        c_hash("cöde", "RS256")
