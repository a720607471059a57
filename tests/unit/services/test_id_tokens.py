"""ID Token signing primitive (OpenID Connect Core 1.0 section 2), with a fake manager."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import jwt as pyjwt
import pytest

from keyturn.security.jose import Signer
from keyturn.security.keys import KeyMaterial, generate_key
from keyturn.services.oauth2 import ID_TOKEN_TYP, IdTokenSigner
from keyturn.services.signing_keys import KeyManager

CLAIMS = {"iss": "https://id.example.test", "sub": "u1", "aud": "c1", "exp": 2, "iat": 1}


class FakeKeys:
    """Just what IdTokenSigner uses of a KeyManager: its algorithms and sign()."""

    def __init__(self, *algs: str) -> None:
        self.material: dict[str, KeyMaterial] = {alg: generate_key(alg) for alg in algs}
        self.algorithms = algs

    def sign(self, claims: Mapping[str, Any], *, typ: str, alg: str | None = None) -> str:
        return Signer(self.material[alg or self.algorithms[0]]).sign(claims, typ=typ)


def signer(keys: FakeKeys, algorithms: tuple[str, ...]) -> IdTokenSigner:
    return IdTokenSigner(keys=cast(KeyManager, keys), algorithms=algorithms)


@pytest.fixture(scope="module")
def keys() -> FakeKeys:
    return FakeKeys("ES256", "RS256")


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_signs_with_typ_jwt_and_the_chosen_algorithm(keys: FakeKeys, alg: str) -> None:
    token = signer(keys, ("RS256", "ES256")).sign(CLAIMS, alg=alg)
    key = keys.material[alg]
    assert pyjwt.get_unverified_header(token) == {"alg": alg, "kid": key.kid, "typ": "JWT"}
    assert ID_TOKEN_TYP == "JWT"
    decoded = pyjwt.decode(
        token,
        pyjwt.PyJWK(key.public_jwk),
        algorithms=[alg],
        audience="c1",
        options={"verify_exp": False, "verify_iat": False},
    )
    assert decoded == CLAIMS


def test_rs256_is_the_default(keys: FakeKeys) -> None:
    token = signer(keys, ("RS256", "ES256")).sign(CLAIMS)
    assert pyjwt.get_unverified_header(token)["alg"] == "RS256"


def test_an_algorithm_not_configured_for_id_tokens_is_refused(keys: FakeKeys) -> None:
    only_rs256 = signer(keys, ("RS256",))
    assert only_rs256.algorithms == ("RS256",)
    with pytest.raises(ValueError, match="not an ID-token signing algorithm"):
        only_rs256.sign(CLAIMS, alg="ES256")  # the access-token chain, not an ID-token one
    with pytest.raises(ValueError, match="not an ID-token signing algorithm"):
        only_rs256.sign(CLAIMS, alg="HS256")


@pytest.mark.parametrize("claim", ["iss", "sub", "aud", "exp", "iat"])
def test_a_required_claim_missing_is_refused(keys: FakeKeys, claim: str) -> None:
    claims = {name: value for name, value in CLAIMS.items() if name != claim}
    with pytest.raises(ValueError, match=claim):
        signer(keys, ("RS256",)).sign(claims)


def test_algorithms_without_a_key_chain_are_refused(keys: FakeKeys) -> None:
    with pytest.raises(ValueError, match="EdDSA"):
        signer(keys, ("RS256", "EdDSA"))
    with pytest.raises(ValueError, match="no signing-key chain"):
        signer(keys, ())
