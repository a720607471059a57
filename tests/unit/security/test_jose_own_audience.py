"""``JosePolicy.audience_claim``: ``aud`` must equal the token's own signed ``client_id``."""

from __future__ import annotations

from typing import Any

import pytest

from keyturn.errors import InvalidToken
from keyturn.security.jose import JosePolicy, Signer, Verifier
from keyturn.security.keys import generate_key

ISS = "https://id.example.test"
NOW = 1_700_000_000
KEY = generate_key("ES256")
POLICY = JosePolicy(frozenset({"ES256"}), ISS, "", audience_claim="client_id")


def token(**claims: Any) -> str:
    base = {"iss": ISS, "sub": "u", "exp": NOW + 60, "iat": NOW, "aud": "c1", "client_id": "c1"}
    base.update(claims)
    return Signer(KEY).sign({k: v for k, v in base.items() if v is not None})


def test_aud_equal_to_client_id_is_accepted() -> None:
    verifier = Verifier([KEY.public_jwk])
    assert verifier.verify(token(), POLICY, now=NOW)["client_id"] == "c1"
    assert verifier.verify(token(aud=["x", "c1"]), POLICY, now=NOW)["aud"] == ["x", "c1"]


@pytest.mark.parametrize(
    "changes",
    [
        {"aud": "c2"},
        {"aud": None},
        {"client_id": None},
        {"client_id": ""},
        {"client_id": ["c1"]},
        {"aud": ["c2"]},
        {"iss": "https://evil.example"},
        {"exp": NOW - 1},
    ],
)
def test_anything_else_is_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(InvalidToken):
        Verifier([KEY.public_jwk]).verify(token(**changes), POLICY, now=NOW)


def test_a_policy_needs_an_audience_or_an_audience_claim() -> None:
    with pytest.raises(ValueError, match="audience"):
        JosePolicy(frozenset({"ES256"}), ISS, "")


def test_any_audience_still_requires_one() -> None:
    hint = JosePolicy(frozenset({"ES256"}), ISS, "", typ="at+jwt", any_audience=True)
    verifier = Verifier([KEY.public_jwk])
    assert verifier.verify(token(aud="any-client"), hint, now=NOW)["aud"] == "any-client"
    for aud in (None, "", [], [""]):
        with pytest.raises(InvalidToken):
            verifier.verify(token(aud=aud), hint, now=NOW)
