"""The one JWT facade: sign and verify JWS compact tokens (RFC 7515, RFC 7519, RFC 9068).

joserfc does the JOSE work for RS256 and EdDSA through its public API
(``serialize_compact``, ``extract_compact`` + ``validate_compact``) and a registry holding
only our algorithms; ``JWTClaimsRegistry`` checks the claims of every token. ES256, the
default and the algorithm of every hot path, is signed and verified with ``cryptography``
directly (``ecdsa.es256_sign``/``es256_verify``, RFC 7518 section 3.4) inside the same
calls: joserfc's generic JWS path made a typical access token cost 46.5 us to sign and
111 us to verify, the direct path 26.5 us and 83 us (issue 18, timeit, best of three
rounds; ECDSA verify alone is 64 us). The facade adds Keyturn's policy in one call for
every algorithm: an allow-list (``JosePolicy``), the key chosen by ``kid`` only, ``typ``,
a header allow-list and low-S ECDSA.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc.errors import ClaimError, ExpiredTokenError, JoseError, MissingClaimError
from joserfc.jwa import EdDSAAlgorithm, ESAlgorithm, RSAAlgorithm
from joserfc.jwk import ECKey, OKPKey, RSAKey, import_key
from joserfc.jws import JWSRegistry, extract_compact, serialize_compact, validate_compact
from joserfc.jwt import JWTClaimsRegistry
from joserfc.util import urlsafe_b64decode, urlsafe_b64encode

from keyturn.errors import AccessTokenExpired, InvalidToken
from keyturn.security.checked_signatures import CheckedSignatures
from keyturn.security.ecdsa import ECDSA_ORDER, es256_sign, es256_verify, is_high_s
from keyturn.security.keys import SUPPORTED_ALGORITHMS, KeyMaterial, import_private_key

__all__ = ["CheckedSignatures", "JosePolicy", "Signer", "Verifier", "header_kid"]

# Our tokens are well under 2 KB; a cap bounds the work any hostile input can cause.
MAX_TOKEN_LENGTH = 8192
# Only these header parameters appear in tokens we issue. Anything else (crit, b64, jku,
# jwk, x5u, ...) is refused rather than interpreted (RFC 8725 section 3.10).
_ALLOWED_HEADER = frozenset({"alg", "kid", "typ"})
# joserfc's segment caps (JWSRegistry), kept on the direct ES256 path so a refusal reads
# the same whichever path a token takes.
_MAX_HEADER_SEGMENT = 512
_MAX_SIGNATURE_SEGMENT = 1024
_JoseKey = ECKey | RSAKey | OKPKey

# What a refused token is told, in plain words (they reach the client as the problem's
# detail and the challenge's error_description): no library codes, no token input.
_MALFORMED = "The token is not a well-formed signed token."
_BAD_SIGNATURE = "The token's signature is not valid."
_CLAIM_PROBLEMS = {
    "iss": "The token was issued by another server.",
    "aud": "The token is not meant for this service.",
    "exp": "The token's expiry time is not valid.",
    "nbf": "The token is not valid yet.",
    "iat": "The token's issue time is not valid.",
}


class _Ed25519Only(EdDSAAlgorithm):
    # RFC 9864 deprecates "EdDSA" because the name leaves the curve open; the Verifier
    # pins Ed25519 keys, so joserfc's per-call SecurityWarning (given when this is
    # non-empty) would only be noise.
    security_warning = ""


class _Registry(JWSRegistry):
    """joserfc's registry over our three models only."""

    def __init__(self) -> None:
        super().__init__(algorithms=SUPPORTED_ALGORITHMS)
        # Per instance: JWSRegistry.register fills the shared class-level table, so
        # nothing registered elsewhere (HMAC, "none") can ever reach this registry.
        self.algorithms = {
            model.name: model
            for model in (
                # Never signs or verifies (ES256 takes the direct path); it checks keys.
                ESAlgorithm("ES256", "P-256", 256, recommended=True),
                RSAAlgorithm(256, recommended=True),
                _Ed25519Only(),
            )
        }


_REGISTRY = _Registry()


def _normalize_typ(value: str) -> str:
    # RFC 7515 section 4.1.9 and RFC 9068 section 4: compare case-insensitively, and
    # "application/at+jwt" is the same media type as "at+jwt".
    lowered = value.lower()
    return lowered.removeprefix("application/")


@dataclass(frozen=True)
class JosePolicy:
    """What a verifier accepts: an explicit allow-list, never inferred from the token.

    Attributes:
        algorithms: Accepted ``alg`` values; a subset of ``SUPPORTED_ALGORITHMS`` (so
            ``none`` and HMAC algorithms can never be allowed).
        issuer: The exact ``iss`` required.
        audience: The value ``aud`` must equal or contain.
        typ: The required ``typ`` header (``at+jwt`` for access tokens, RFC 9068).
        leeway: Clock skew tolerated on ``exp``/``nbf``/``iat``, in seconds.
        audience_claim: When set, ``audience`` is ignored and ``aud`` must instead equal
            the token's own claim of this name (``client_id``: an OAuth access token's
            audience is the client it was issued to, RFC 9068 section 2.2). ``aud`` and
            that claim stay required; only the expected value comes from the signed
            claims, never from unsigned input.
        any_audience: When true, ``audience`` is ignored and any non-empty ``aud`` passes:
            only for an ID Token used as a logout hint (OpenID Connect RP-Initiated
            Logout 1.0 section 2), whose caller then looks the client up by ``aud``.

    Raises:
        ValueError: When the policy allows an unsupported algorithm or is incomplete.
    """

    algorithms: frozenset[str]
    issuer: str
    audience: str
    typ: str = "at+jwt"
    leeway: int = 0
    audience_claim: str | None = None
    any_audience: bool = False

    def __post_init__(self) -> None:
        unsupported = self.algorithms - set(SUPPORTED_ALGORITHMS)
        if not self.algorithms or unsupported:
            # Refusing "none"/HS256 here means no configuration can reopen alg confusion.
            raise ValueError(f"algorithms must be a non-empty subset of {SUPPORTED_ALGORITHMS}")
        if (
            not self.issuer
            or not (self.audience or self.audience_claim or self.any_audience)
            or not self.typ
            or self.leeway < 0
        ):
            raise ValueError("issuer, audience and typ are required and leeway must be >= 0")


class Signer:
    """Signs JWS compact tokens with one private key.

    Args:
        key: The signing key.
    """

    def __init__(self, key: KeyMaterial) -> None:
        self.kid = key.kid
        self.alg = key.alg
        # Parsed once: signing runs on every token issue.
        self._key = import_private_key(key.alg, key.private_pem)
        self._es256 = (
            self._key.private_key if key.alg == "ES256" and isinstance(self._key, ECKey) else None
        )

    def sign(self, claims: Mapping[str, Any], *, typ: str = "at+jwt") -> str:
        """Sign claims into a compact JWS with the header ``{alg, kid, typ}``.

        Args:
            claims: JSON-serialisable claims; time claims are integers (NumericDate).
            typ: The ``typ`` header, e.g. ``at+jwt`` (RFC 9068) or ``JWT`` for ID tokens.

        Returns:
            The token.
        """
        # Compact UTF-8 JSON (RFC 8259), the same bytes json.dumps gave with separators.
        payload = orjson.dumps(claims)
        header = {"alg": self.alg, "kid": self.kid, "typ": typ}
        if self._es256 is None:
            return serialize_compact(header, payload, self._key, registry=_REGISTRY)
        # RFC 7515 section 7.1: BASE64URL(header) '.' BASE64URL(payload) '.' BASE64URL(sig),
        # base64url without padding (RFC 7515 section 2).
        signing_input = urlsafe_b64encode(orjson.dumps(header)) + b"." + urlsafe_b64encode(payload)
        signature = urlsafe_b64encode(es256_sign(self._es256, signing_input))
        return (signing_input + b"." + signature).decode("ascii")


class Verifier:
    """Verifies tokens against a fixed set of public keys, chosen by ``kid``.

    Args:
        public_jwks: Public JWKs, each with ``kid`` and ``alg`` (``KeyMaterial.public_jwk``
            or JWKS entries).
        checked: The tokens whose signature already held (``checked_signatures``); the
            key cache hands the same one to each verifier it builds, so a reload of the
            keys does not forget them. A verifier of its own by default.

    Raises:
        ValueError: When a JWK lacks ``kid``/``alg``, has a private part, an unsupported
            algorithm, a key that does not fit its algorithm, or a duplicate ``kid``.
    """

    def __init__(
        self, public_jwks: Iterable[Mapping[str, Any]], *, checked: CheckedSignatures | None = None
    ) -> None:
        self._checked = CheckedSignatures() if checked is None else checked
        # kid -> (alg, joserfc key, the ``cryptography`` key of the direct ES256 path).
        self._keys: dict[str, tuple[str, _JoseKey, ec.EllipticCurvePublicKey | None]] = {}
        for jwk in public_jwks:
            kid, alg = jwk.get("kid"), jwk.get("alg")
            if not isinstance(kid, str) or not kid or alg not in SUPPORTED_ALGORITHMS:
                raise ValueError("each JWK needs a kid and a supported alg")
            if "d" in jwk:
                # A verifier must never hold private keys.
                raise ValueError(f"JWK {kid} contains a private part")
            if kid in self._keys:
                raise ValueError(f"duplicate kid {kid}")
            try:
                key = import_key(dict(jwk))
            except (JoseError, KeyError, TypeError) as exc:
                raise ValueError(f"JWK {kid} is not a valid key") from exc
            if not isinstance(key, ECKey | RSAKey | OKPKey):
                # Symmetric ("oct") keys can never verify our tokens.
                raise ValueError(f"JWK {kid} is not an asymmetric key")
            # Rejects e.g. an RSA key labelled ES256 or a P-384 key for ES256, once.
            try:
                _REGISTRY.get_alg(alg).check_key(key)
            except JoseError as exc:
                raise ValueError(f"JWK {kid} does not fit {alg}") from exc
            if isinstance(key, OKPKey) and key.curve_name != "Ed25519":
                raise ValueError(f"JWK {kid}: EdDSA keys must be Ed25519")
            direct = key.public_key if alg == "ES256" and isinstance(key, ECKey) else None
            self._keys[kid] = (alg, key, direct)

    def verify(self, token: str, policy: JosePolicy, *, now: int | None = None) -> dict[str, Any]:
        """Verify a token completely, in one call.

        Checks, in order: compact form, header (only ``alg``/``kid``/``typ``), ``alg`` in
        the policy, ``kid`` known, the key's ``alg`` equal to the header's, ``typ``, the
        signature, then ``iss``, ``aud``, ``exp`` (required), ``nbf`` (if present) and
        ``iat`` (required).

        Args:
            token: The compact JWS.
            policy: What to accept.
            now: The current Unix time; defaults to the clock (injectable for tests).

        Returns:
            The claims.

        Raises:
            InvalidToken: On any failure, whatever the input; nothing else is raised.
        """
        try:
            claims = self._verify(token, policy)
            _claims_registry(policy, int(time.time()) if now is None else now).validate(claims)
            if policy.audience_claim is not None:
                _check_own_audience(claims, policy.audience_claim)
            if policy.any_audience and not _audiences(claims):
                raise InvalidToken(_CLAIM_PROBLEMS["aud"])
        except InvalidToken:
            raise
        except ExpiredTokenError:
            # Its own code (token_expired): the client refreshes instead of signing in again.
            raise AccessTokenExpired("The token has expired; get a new one.") from None
        except JoseError as exc:
            # Plain words chosen by us: joserfc's description may echo token input.
            raise InvalidToken(_plain(exc)) from None
        except (ValueError, TypeError, RecursionError):
            # Any parse failure of untrusted input (bad base64, JSON, UTF-8, nesting).
            raise InvalidToken(_MALFORMED) from None
        return claims

    def _verify(self, token: str, policy: JosePolicy) -> dict[str, Any]:
        if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
            raise InvalidToken(_MALFORMED)
        # RFC 7515 section 7.1: compact JWS is three base64url segments, ASCII only.
        raw = token.encode("ascii")
        if raw.count(b".") != 2:
            raise InvalidToken(_MALFORMED)
        header_segment, payload_segment, signature_segment = raw.split(b".")
        if (
            len(header_segment) > _MAX_HEADER_SEGMENT
            or len(signature_segment) > _MAX_SIGNATURE_SEGMENT
        ):
            raise InvalidToken(_MALFORMED)
        # Strict base64url (RFC 7515 section 2): no padding, no '+' or '/', canonical last
        # character, so one token has one string. Both segments are decoded before any
        # policy check, so bad base64 anywhere reads "malformed" whatever else is wrong.
        header = orjson.loads(urlsafe_b64decode(header_segment))
        payload = urlsafe_b64decode(payload_segment)
        if not isinstance(header, dict) or "alg" not in header:
            raise InvalidToken(_MALFORMED)
        if not header.keys() <= _ALLOWED_HEADER:
            raise InvalidToken("The token's header carries parameters that are not accepted.")
        alg, kid, typ = header.get("alg"), header.get("kid"), header.get("typ")
        # RFC 8725 section 3.1: only the policy's algorithms, never "none" or HMAC.
        if not isinstance(alg, str) or alg not in policy.algorithms:
            raise InvalidToken("The token is signed with an algorithm that is not accepted.")
        entry = self._keys.get(kid) if isinstance(kid, str) else None
        if entry is None:
            raise InvalidToken("The token was signed by an unknown or withdrawn key.")
        key_alg, key, es256_key = entry
        # RFC 8725 section 3.1: the key decides the algorithm, so a public key can never
        # be used as an HMAC secret or with another algorithm.
        if key_alg != alg:
            raise InvalidToken("The token's algorithm does not match its signing key.")
        if not isinstance(typ, str) or _normalize_typ(typ) != _normalize_typ(policy.typ):
            raise InvalidToken("The token is of the wrong kind for this use.")
        signature = urlsafe_b64decode(signature_segment)
        digest = self._checked.digest(raw)
        if digest not in self._checked:
            self._check_signature(raw, alg, key, es256_key, signature)
            self._checked.add(digest)
        # Parsed only after the signature holds: unsigned JSON never reaches the parser.
        claims = orjson.loads(payload)
        if not isinstance(claims, dict):
            raise InvalidToken("The token's content is not readable.")
        return claims

    @staticmethod
    def _check_signature(
        raw: bytes,
        alg: str,
        key: _JoseKey,
        es256_key: ec.EllipticCurvePublicKey | None,
        signature: bytes,
    ) -> None:
        header_segment, payload_segment, _ = raw.split(b".")
        if es256_key is not None:
            # RFC 7515 section 5.2 step 8: the signature is over the ASCII of the first two
            # segments exactly as received.
            valid = es256_verify(es256_key, header_segment + b"." + payload_segment, signature)
        else:
            # RS256 and EdDSA: joserfc's public API (parses the header again; cold paths).
            valid = validate_compact(
                extract_compact(raw, registry=_REGISTRY), key, registry=_REGISTRY
            )
        if not valid:
            raise InvalidToken(_BAD_SIGNATURE)
        # A valid but non-canonical ECDSA signature (s > n/2) is the twin of a token we
        # issued (n - s), never one we signed: refused so every token has one string.
        if alg in ECDSA_ORDER and is_high_s(alg, signature):
            raise InvalidToken("The token's signature is not in its one accepted form.")


def header_kid(token: str) -> str | None:
    """The ``kid`` of a compact JWS header; None when there is none or it cannot be read.

    Meant for a token ``Verifier.verify`` already accepted (the key it names is then known);
    it checks nothing itself.
    """
    try:
        header = orjson.loads(urlsafe_b64decode(token.split(".", 1)[0].encode("ascii")))
    except (ValueError, TypeError, RecursionError):
        return None
    kid = header.get("kid") if isinstance(header, dict) else None
    return kid if isinstance(kid, str) else None


def _audiences(claims: dict[str, Any]) -> list[str]:
    aud = claims.get("aud")
    values = aud if isinstance(aud, list) else [aud]
    return [value for value in values if isinstance(value, str) and value]


def _check_own_audience(claims: dict[str, Any], name: str) -> None:
    # The expected audience is the signed claim ``name`` (e.g. client_id): a non-empty
    # string that ``aud`` equals (or, as a list, contains; RFC 7519 section 4.1.3).
    expected = claims.get(name)
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    if not isinstance(expected, str) or not expected or expected not in audiences:
        raise InvalidToken(_CLAIM_PROBLEMS["aud"])


def _claims_registry(policy: JosePolicy, now: int) -> JWTClaimsRegistry:
    # RFC 7519 section 4.1 and RFC 9068 section 2.2: iss, aud, exp, iat are required;
    # joserfc also refuses non-finite NumericDates and an iat in the future.
    return JWTClaimsRegistry(
        now=now,
        leeway=policy.leeway,
        iss={"essential": True, "value": policy.issuer},
        aud=(
            {"essential": True}
            if policy.audience_claim is not None or policy.any_audience
            else {"essential": True, "value": policy.audience}
        ),
        exp={"essential": True},
        iat={"essential": True},
    )


def _plain(exc: JoseError) -> str:
    """A joserfc refusal in plain words (the claim it names picks the sentence)."""
    if isinstance(exc, MissingClaimError):
        return "The token lacks a required claim (iss, aud, exp or iat)."
    if isinstance(exc, ClaimError):
        return _CLAIM_PROBLEMS.get(exc.claim, "The token carries a claim that is not valid.")
    return _MALFORMED
