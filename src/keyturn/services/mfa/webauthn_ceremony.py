"""The WebAuthn Relying Party operations (W3C WebAuthn Level 3 sections 7.1 and 7.2) on
top of py_webauthn, with every check named so a refusal says which one failed.

The named checks (client data type, challenge, origin, RP ID hash, user presence, user
verification) run here on the parsed structures first; the library then repeats them and
adds the attestation (fmt "none" and the others) and the signature. The signature counter
is left to the caller (section 6.1.1), which compares it with the stored one only once the
signature is known to be genuine, so a forged response can never raise a clone alarm.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import webauthn
from webauthn.helpers import (
    options_to_json_dict,
    parse_attestation_object,
    parse_authentication_credential_json,
    parse_authenticator_data,
    parse_client_data_json,
    parse_registration_credential_json,
)
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticatorData,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    ClientDataType,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from keyturn.domain_mfa import Passkey
from keyturn.errors import WebAuthnRejected

# Section 5.4 / 5.5 "timeout": a hint to the browser, in milliseconds; the challenge
# itself lives CHALLENGE_TTL seconds in the ceremony store.
CHALLENGE_TTL = 300
_TIMEOUT_MS = CHALLENGE_TTL * 1000
# Section 13.4.3: at least 16 random bytes; 32 as the brief fixes.
CHALLENGE_BYTES = 32
_KNOWN_TRANSPORTS = {transport.value for transport in AuthenticatorTransport}


class Rejected(WebAuthnRejected):
    """A refused response; ``check`` names the check for the audit row."""

    def __init__(self, check: str, detail: str) -> None:
        super().__init__(detail)
        self.check = check


@dataclass(frozen=True, slots=True)
class RelyingParty:
    """Who this server is to an authenticator (section 5.4.2) and where it is served.

    Built once in wiring (:meth:`for_issuer`): the one place the RP ID and the allowed
    origins are derived from the settings.
    """

    id: str
    name: str
    origins: tuple[str, ...]
    # Second-factor policy ("required", "preferred", "discouraged"); passwordless always
    # requires user verification (the passkey is then the only factor).
    user_verification: str

    @classmethod
    def for_issuer(
        cls,
        issuer: str,
        *,
        rp_id: str | None,
        origins: Sequence[str],
        name: str,
        user_verification: str,
    ) -> RelyingParty:
        """The RP from the settings: unset values default to the issuer's host and origin.

        Section 5.1.3: the RP ID is a registrable domain suffix of the origin's host;
        browsers refuse an IP address, so development uses ``http://localhost:PORT``.
        """
        parts = urlsplit(issuer)
        issuer_origin = f"{parts.scheme}://{parts.netloc}".lower()
        return cls(
            id=(rp_id or parts.hostname or "localhost").lower(),
            name=name,
            origins=tuple(o.rstrip("/") for o in origins) or (issuer_origin,),
            user_verification=user_verification,
        )

    @property
    def uv_required(self) -> bool:
        return self.user_verification == "required"


def challenge_key(challenge: bytes) -> str:
    """The ceremony-store key of a challenge: a digest, so the store never holds one."""
    digest = hashlib.sha256(challenge).digest()
    return "webauthn:" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _b64url_decode(value: object) -> bytes:
    if not isinstance(value, str) or len(value) > 65_536:
        raise ValueError("not a base64url string")
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def client_challenge(credential: Mapping[str, Any]) -> bytes | None:
    """The challenge a response's ``clientDataJSON`` answers, or None when it has none."""
    try:
        response = credential.get("response")
        if not isinstance(response, Mapping):
            return None
        client_data = json.loads(_b64url_decode(response.get("clientDataJSON")))
        return _b64url_decode(client_data["challenge"]) if isinstance(client_data, dict) else None
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None


def credential_id(credential: Mapping[str, Any]) -> bytes | None:
    """The ``rawId`` of a response, or None when it is missing or not base64url."""
    try:
        raw = _b64url_decode(credential.get("rawId"))
    except (ValueError, binascii.Error):
        return None
    return raw or None


def user_handle(credential: Mapping[str, Any]) -> bytes | None:
    """The ``userHandle`` of an assertion (section 5.2.2), or None."""
    response = credential.get("response")
    try:
        return _b64url_decode(response.get("userHandle")) if isinstance(response, Mapping) else None
    except (ValueError, binascii.Error):
        return None


def _descriptor(passkey: Passkey) -> PublicKeyCredentialDescriptor:
    transports = [AuthenticatorTransport(t) for t in passkey.transports if t in _KNOWN_TRANSPORTS]
    return PublicKeyCredentialDescriptor(id=passkey.credential_id, transports=transports or None)


def creation_options(
    rp: RelyingParty,
    *,
    challenge: bytes,
    user_id: bytes,
    user_name: str,
    display_name: str,
    exclude: Sequence[Passkey],
) -> dict[str, Any]:
    """``PublicKeyCredentialCreationOptionsJSON`` (section 5.4): a discoverable credential
    (usernameless sign-in needs it), no attestation, the user's passkeys excluded."""
    options = webauthn.generate_registration_options(
        rp_id=rp.id,
        rp_name=rp.name,
        user_name=user_name,
        user_id=user_id,
        user_display_name=display_name,
        challenge=challenge,
        timeout=_TIMEOUT_MS,
        attestation=AttestationConveyancePreference.NONE,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            require_resident_key=True,
            user_verification=UserVerificationRequirement(rp.user_verification),
        ),
        exclude_credentials=[_descriptor(p) for p in exclude],
    )
    return options_to_json_dict(options)


def request_options(
    rp: RelyingParty, *, challenge: bytes, allow: Sequence[Passkey], user_verification: str
) -> dict[str, Any]:
    """``PublicKeyCredentialRequestOptionsJSON`` (section 5.5)."""
    options = webauthn.generate_authentication_options(
        rp_id=rp.id,
        challenge=challenge,
        timeout=_TIMEOUT_MS,
        allow_credentials=[_descriptor(p) for p in allow],
        user_verification=UserVerificationRequirement(user_verification),
    )
    return options_to_json_dict(options)


def _check_client_data(
    rp: RelyingParty, raw: bytes, expected_type: ClientDataType, challenge: bytes
) -> None:
    """Section 7.1 steps 7-9 / 7.2 steps 11-13."""
    try:
        client_data = parse_client_data_json(raw)
    except Exception as exc:  # the library raises bare exceptions on junk
        raise Rejected("client_data", "clientDataJSON is malformed.") from exc
    if client_data.type != expected_type:
        raise Rejected("type", f"clientDataJSON.type must be {expected_type.value}.")
    if not hmac.compare_digest(client_data.challenge, challenge):
        raise Rejected("challenge", "The challenge does not match.")
    if client_data.origin not in rp.origins:
        raise Rejected("origin", "The origin is not allowed for this relying party.")


def _check_flags(rp: RelyingParty, data: AuthenticatorData, *, require_uv: bool) -> None:
    """Section 7.1 steps 13-16 / 7.2 steps 15-17."""
    expected = hashlib.sha256(rp.id.encode()).digest()
    if not hmac.compare_digest(data.rp_id_hash, expected):
        raise Rejected("rp_id", "The RP ID hash does not match this relying party.")
    if not data.flags.up:
        raise Rejected("user_presence", "The authenticator did not test user presence.")
    if require_uv and not data.flags.uv:
        raise Rejected("user_verification", "The authenticator did not verify the user.")


@dataclass(frozen=True, slots=True)
class NewCredential:
    credential_id: bytes
    public_key: bytes
    sign_count: int
    aaguid: str
    transports: tuple[str, ...]
    backup_eligible: bool
    backed_up: bool


def verify_registration(
    rp: RelyingParty, credential: Mapping[str, Any], *, challenge: bytes, require_uv: bool
) -> NewCredential:
    """Section 7.1 "Registering a New Credential".

    Raises:
        Rejected: A check failed; ``check`` says which.
    """
    try:
        parsed = parse_registration_credential_json(dict(credential))
        attestation = parse_attestation_object(parsed.response.attestation_object)
    except Exception as exc:  # junk of any shape: a refusal, never a 500
        raise Rejected("format", "The credential is malformed.") from exc
    _check_client_data(
        rp, parsed.response.client_data_json, ClientDataType.WEBAUTHN_CREATE, challenge
    )
    _check_flags(rp, attestation.auth_data, require_uv=require_uv)
    try:
        verified = webauthn.verify_registration_response(
            credential=parsed,
            expected_challenge=challenge,
            expected_rp_id=rp.id,
            expected_origin=list(rp.origins),
            require_user_verification=require_uv,
        )
    except Exception as exc:  # InvalidRegistrationResponse, or a library error on junk
        raise Rejected("attestation", "The attestation could not be verified.") from exc
    if not hmac.compare_digest(verified.credential_id, parsed.raw_id):
        # The id the client names must be the one the authenticator attested (section 7.1
        # stores the attested one): a mismatch is a forged or garbled response.
        raise Rejected("credential", "rawId is not the attested credential id.")
    flags = attestation.auth_data.flags
    transports = tuple(t.value for t in parsed.response.transports or ())
    return NewCredential(
        credential_id=verified.credential_id,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        aaguid=verified.aaguid,
        transports=transports,
        backup_eligible=bool(flags.be),
        backed_up=bool(flags.bs),
    )


@dataclass(frozen=True, slots=True)
class Assertion:
    sign_count: int
    user_verified: bool
    backup_eligible: bool
    backed_up: bool


def verify_assertion(
    rp: RelyingParty,
    credential: Mapping[str, Any],
    passkey: Passkey,
    *,
    challenge: bytes,
    require_uv: bool,
) -> Assertion:
    """Section 7.2 "Verifying an Authentication Assertion", the counter aside.

    Raises:
        Rejected: A check failed; ``check`` says which.
    """
    try:
        parsed = parse_authentication_credential_json(dict(credential))
        data = parse_authenticator_data(parsed.response.authenticator_data)
    except Exception as exc:  # junk of any shape: a refusal, never a 500
        raise Rejected("format", "The credential is malformed.") from exc
    _check_client_data(rp, parsed.response.client_data_json, ClientDataType.WEBAUTHN_GET, challenge)
    _check_flags(rp, data, require_uv=require_uv)
    try:
        verified = webauthn.verify_authentication_response(
            credential=parsed,
            expected_challenge=challenge,
            expected_rp_id=rp.id,
            expected_origin=list(rp.origins),
            credential_public_key=passkey.public_key,
            # 0: the library's own counter rule stays off; the caller applies it after
            # the signature (a forged low counter must not pass for a clone).
            credential_current_sign_count=0,
            require_user_verification=require_uv,
        )
    except Exception as exc:  # InvalidAuthenticationResponse, or a library error on junk
        raise Rejected("signature", "The signature could not be verified.") from exc
    return Assertion(
        sign_count=verified.new_sign_count,
        user_verified=verified.user_verified,
        backup_eligible=bool(data.flags.be),
        backed_up=bool(data.flags.bs),
    )
