"""ID Token signing for the OpenID Connect provider (OpenID Connect Core 1.0 section 2).

Only the primitive: the token endpoint builds the claims (``issuing.py``) and calls
``IdTokenSigner.sign``. An ID Token carries ``typ: JWT`` and is signed by the active key
of the chosen algorithm's chain; the access-token verifier requires ``typ: at+jwt``
(RFC 9068 section 4), so an ID Token is never accepted as an access token.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from keyturn.errors import InvalidToken
from keyturn.security.jose import JosePolicy
from keyturn.services.signing_keys import KeyManager

__all__ = ["ID_TOKEN_TYP", "IdTokenHints", "IdTokenSigner"]

ID_TOKEN_TYP = "JWT"  # noqa: S105  (OpenID Connect Core 1.0 section 2 type, not a secret)
# OpenID Connect Core 1.0 section 2: REQUIRED in every ID Token.
REQUIRED_CLAIMS = frozenset({"iss", "sub", "aud", "exp", "iat"})


class IdTokenSigner:
    """Signs ID Tokens with one of the configured ID-token algorithms.

    Args:
        keys: The key manager; it keeps a chain for every algorithm in ``algorithms``.
        algorithms: ``KEYTURN_ID_TOKEN_ALGS``, the values of the discovery document's
            ``id_token_signing_alg_values_supported``.

    Raises:
        ValueError: An algorithm the key manager keeps no chain for.
    """

    def __init__(self, *, keys: KeyManager, algorithms: Iterable[str]) -> None:
        self._keys = keys
        self.algorithms = tuple(dict.fromkeys(algorithms))
        unknown = set(self.algorithms) - set(keys.algorithms)
        if unknown or not self.algorithms:
            raise ValueError(f"no signing-key chain for ID-token algorithms {sorted(unknown)}")

    def sign(self, claims: Mapping[str, Any], *, alg: str = "RS256") -> str:
        """Signs an ID Token: header ``{alg, kid, typ: "JWT"}``.

        Args:
            claims: The ID Token claims; ``iss``, ``sub``, ``aud``, ``exp`` and ``iat``
                are required (section 2).
            alg: The client's ``id_token_signed_response_alg`` (RS256 by default, OpenID
                Connect Registration 1.0 section 2).

        Returns:
            The compact JWS.

        Raises:
            ValueError: ``alg`` is not an ID-token algorithm, or a required claim is missing.
        """
        if alg not in self.algorithms:
            raise ValueError(f"{alg!r} is not an ID-token signing algorithm")
        missing = REQUIRED_CLAIMS - claims.keys()
        if missing:
            raise ValueError(f"an ID Token needs the claims {sorted(missing)}")
        return self._keys.sign(claims, typ=ID_TOKEN_TYP, alg=alg)


class IdTokenHints:
    """Reads an ``id_token_hint``: an ID Token this server issued, sent back by a client.

    Used by the authorization endpoint (OIDC Core 1.0 section 3.1.2.1) and by RP-initiated
    logout (RP-Initiated Logout 1.0 section 2). Both say the OP "need not be listed as an
    audience" of a hint, and logout accepts an expired one; so any ``aud``, and ``exp``
    tolerated for ``max_age`` seconds (as long as a session can live). The signature (our
    keys, ID-token algorithms only), ``typ: JWT`` and ``iss`` are checked as for any token
    we issued, so an access token is never a hint.
    """

    def __init__(
        self, *, keys: KeyManager, issuer: str, algorithms: Iterable[str], max_age: int
    ) -> None:
        self._keys = keys
        self._policy = JosePolicy(
            algorithms=frozenset(algorithms),
            issuer=issuer,
            audience="",
            typ=ID_TOKEN_TYP,
            any_audience=True,
            leeway=max_age,
        )

    async def read(self, hint: str) -> tuple[uuid.UUID, str] | None:
        """The hint's user (``sub``) and client, or None when it is not our ID Token."""
        try:
            # A hint signed by a revoked key is refused like any other bad hint.
            claims = await self._keys.verify(hint, self._policy)
            subject = uuid.UUID(str(claims["sub"]))
        except (InvalidToken, KeyError, ValueError):
            return None
        aud = claims["aud"]
        # OIDC Core section 2: with several audiences, azp names the client.
        client = claims.get("azp") or (aud if isinstance(aud, str) else aud[0])
        return subject, str(client)
