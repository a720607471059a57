"""Bodies of ``/v1/me/passkeys`` and ``/v1/auth/passkey`` (WebAuthn, issue 15).

A ``credential`` is the JSON form of a ``PublicKeyCredential`` (W3C WebAuthn Level 3
sections 5.1.8 ``RegistrationResponseJSON`` and 5.1.9 ``AuthenticationResponseJSON``, what
``credential.toJSON()`` gives): its shape is checked here, so junk is a 422, and its
content by the service.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints

from keyturn.api.rest.schemas.common import NO_CONTROL_CHARACTERS, Page, Request
from keyturn.domain_mfa import Passkey

# Unpadded base64url (section 5.1.8); bounded against abuse of the parser: a credential
# id is at most 1023 bytes (section 5.8.3), the other members a few kilobytes.
Base64Url = Annotated[
    str, StringConstraints(min_length=1, max_length=16_384, pattern=r"^[A-Za-z0-9_-]+$")
]
CredentialIdText = Annotated[
    str, StringConstraints(min_length=1, max_length=1_400, pattern=r"^[A-Za-z0-9_-]+$")
]
PasskeyName = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=100, pattern=NO_CONTROL_CHARACTERS
    ),
]
Transport = Annotated[str, StringConstraints(min_length=1, max_length=32)]


class AttestationResponseIn(Request):
    """``AuthenticatorAttestationResponseJSON`` (section 5.2.1)."""

    client_data_json: Base64Url = Field(alias="clientDataJSON")
    attestation_object: Base64Url = Field(alias="attestationObject")
    authenticator_data: Base64Url | None = Field(default=None, alias="authenticatorData")
    transports: Annotated[list[Transport], Field(max_length=8)] | None = None
    public_key: Base64Url | None = Field(default=None, alias="publicKey")
    public_key_algorithm: int | None = Field(default=None, alias="publicKeyAlgorithm")


class AssertionResponseIn(Request):
    """``AuthenticatorAssertionResponseJSON`` (section 5.2.2)."""

    client_data_json: Base64Url = Field(alias="clientDataJSON")
    authenticator_data: Base64Url = Field(alias="authenticatorData")
    signature: Base64Url
    user_handle: CredentialIdText | None = Field(default=None, alias="userHandle")


class _CredentialIn(Request):
    id: CredentialIdText
    raw_id: CredentialIdText = Field(alias="rawId")
    type: Literal["public-key"]
    client_extension_results: Annotated[dict[str, Any], Field(max_length=16)] = Field(
        default_factory=dict, alias="clientExtensionResults"
    )
    authenticator_attachment: Literal["platform", "cross-platform"] | None = Field(
        default=None, alias="authenticatorAttachment"
    )

    def as_json(self) -> dict[str, Any]:
        """The credential as the browser sent it (camelCase), for the service."""
        return self.model_dump(by_alias=True, exclude_none=True)


class RegistrationCredentialIn(_CredentialIn):
    response: AttestationResponseIn


class AssertionCredentialIn(_CredentialIn):
    response: AssertionResponseIn


class PasskeyRegisterIn(Request):
    credential: RegistrationCredentialIn
    name: PasskeyName | None = None


class PasskeyRenameIn(Request):
    name: PasskeyName


class PasskeySignInIn(Request):
    credential: AssertionCredentialIn


class PasskeyOut(BaseModel):
    id: uuid.UUID
    name: str
    created_at: datetime
    last_used_at: datetime | None
    # A synced (multi-device) passkey, backed up by its provider.
    backed_up: bool

    @classmethod
    def of(cls, passkey: Passkey) -> PasskeyOut:
        return cls(
            id=passkey.id,
            name=passkey.name,
            created_at=passkey.created_at,
            last_used_at=passkey.last_used_at,
            backed_up=passkey.backed_up,
        )


class PasskeyCreated(BaseModel):
    passkey: PasskeyOut
    # Ten codes when this passkey is the account's first factor (shown once), else null.
    recovery_codes: list[str] | None


class PasskeyList(Page[PasskeyOut]):
    # Every passkey in one answer: never a next page.
    next_cursor: str | None = None
