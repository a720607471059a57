"""A software WebAuthn authenticator and client for tests (W3C WebAuthn Level 3).

It plays browser and authenticator at once: from the JSON options Keyturn gives it
builds the JSON a browser's ``credential.toJSON()`` sends, with an EC P-256 (ES256)
credential, attestation format "none", and authenticator data carrying the UP / UV / BE /
BS flags, a signature counter and the RP ID hash (sections 6.1, 6.5.4, 8.7). Every part an
attacker could change can be forged per call: the origin, the RP ID, the challenge, the
counter, the flags, the user handle.

    authenticator = Authenticator("localhost", "http://localhost:8000")
    credential = authenticator.register(creation_options)
    assertion = authenticator.authenticate(request_options)
    forged = authenticator.authenticate(request_options, origin="https://evil.example")
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import struct
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from webauthn.helpers import encode_cbor

UP, UV, BE, BS, AT = 0x01, 0x04, 0x08, 0x10, 0x40
# An all-zero AAGUID: what a "none" attestation of an anonymous authenticator reports.
AAGUID = bytes(16)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Credential:
    id: bytes
    key: ec.EllipticCurvePrivateKey
    user_handle: bytes
    counter: int = 0


class Authenticator:
    """Holds credentials and answers creation and request options with forged parts on demand.

    Args:
        rp_id: The RP ID it computes the RP ID hash of (unless a call forges another).
        origin: The origin its clientDataJSON names (unless a call forges another).
        backup_eligible: Sets BE (a synced passkey, "swk"); ``backed_up`` sets BS.
        counting: Whether the signature counter moves (some synced passkeys send 0).
    """

    def __init__(
        self,
        rp_id: str,
        origin: str,
        *,
        backup_eligible: bool = False,
        backed_up: bool = False,
        counting: bool = True,
    ) -> None:
        self.rp_id = rp_id
        self.origin = origin
        self.backup_eligible = backup_eligible
        self.backed_up = backed_up
        self.counting = counting
        self.credentials: list[Credential] = []

    @property
    def credential(self) -> Credential:
        """The credential registered last."""
        return self.credentials[-1]

    def _flags(self, *, up: bool, uv: bool, extra: int = 0) -> int:
        flags = extra | (UP if up else 0) | (UV if uv else 0)
        flags |= (BE if self.backup_eligible else 0) | (BS if self.backed_up else 0)
        return flags

    def _client_data(self, kind: str, challenge: str, origin: str | None) -> bytes:
        return json.dumps(
            {
                "type": kind,
                "challenge": challenge,
                "origin": origin or self.origin,
                "crossOrigin": False,
            }
        ).encode()

    def register(
        self,
        options: dict[str, Any],
        *,
        origin: str | None = None,
        rp_id: str | None = None,
        challenge: str | None = None,
        uv: bool = True,
        up: bool = True,
        reuse: Credential | None = None,
    ) -> dict[str, Any]:
        """``RegistrationResponseJSON`` for ``PublicKeyCredentialCreationOptionsJSON``;
        ``reuse`` registers an existing credential again (its id and key)."""
        credential = reuse or Credential(
            id=secrets.token_bytes(32),
            key=ec.generate_private_key(ec.SECP256R1()),
            user_handle=unb64url(options["user"]["id"]),
        )
        numbers = credential.key.public_key().public_numbers()
        cose_key = encode_cbor(
            {
                1: 2,  # kty: EC2
                3: -7,  # alg: ES256
                -1: 1,  # crv: P-256
                -2: numbers.x.to_bytes(32, "big"),
                -3: numbers.y.to_bytes(32, "big"),
            }
        )
        attested = AAGUID + struct.pack(">H", len(credential.id)) + credential.id + cose_key
        auth_data = (
            hashlib.sha256((rp_id or self.rp_id).encode()).digest()
            + bytes([self._flags(up=up, uv=uv, extra=AT)])
            + struct.pack(">I", 0)
            + attested
        )
        attestation = encode_cbor({"fmt": "none", "attStmt": {}, "authData": auth_data})
        client_data = self._client_data(
            "webauthn.create", challenge or options["challenge"], origin
        )
        if reuse is None:
            self.credentials.append(credential)
        return {
            "id": b64url(credential.id),
            "rawId": b64url(credential.id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "attestationObject": b64url(attestation),
                "transports": ["internal", "hybrid"],
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        }

    def authenticate(
        self,
        options: dict[str, Any],
        *,
        origin: str | None = None,
        rp_id: str | None = None,
        challenge: str | None = None,
        counter: int | None = None,
        uv: bool = True,
        up: bool = True,
        credential: Credential | None = None,
        user_handle: bytes | None = None,
    ) -> dict[str, Any]:
        """``AuthenticationResponseJSON`` for ``PublicKeyCredentialRequestOptionsJSON``.

        ``counter`` forces the signature counter (e.g. backwards); otherwise it moves up
        by one when the authenticator counts.
        """
        chosen = credential or self._choose(options)
        if counter is None:
            counter = chosen.counter + 1 if self.counting else 0
        chosen.counter = max(chosen.counter, counter)
        auth_data = (
            hashlib.sha256((rp_id or self.rp_id).encode()).digest()
            + bytes([self._flags(up=up, uv=uv)])
            + struct.pack(">I", counter)
        )
        client_data = self._client_data("webauthn.get", challenge or options["challenge"], origin)
        signature = chosen.key.sign(
            auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256())
        )
        return {
            "id": b64url(chosen.id),
            "rawId": b64url(chosen.id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "authenticatorData": b64url(auth_data),
                "signature": b64url(signature),
                "userHandle": b64url(user_handle or chosen.user_handle),
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        }

    def _choose(self, options: dict[str, Any]) -> Credential:
        allowed = {unb64url(c["id"]) for c in options.get("allowCredentials") or ()}
        for credential in reversed(self.credentials):
            if not allowed or credential.id in allowed:
                return credential
        raise LookupError("no credential of this authenticator is allowed")
