"""Helpers for the passkey tests: the relying party they run as, and enrolment over HTTP."""

from __future__ import annotations

from typing import Any

import httpx

from helpers import bearer
from webauthn_authenticator import Authenticator

# Browsers refuse an IP address as RP ID: the tests' issuer is a localhost URL.
ISSUER = "http://localhost:8000"
RP_ID = "localhost"
ORIGIN = "http://localhost:8000"


def authenticator(**flags: bool) -> Authenticator:
    """A software authenticator for this relying party (``backup_eligible``, ...)."""
    return Authenticator(RP_ID, ORIGIN, **flags)


async def creation_options(client: httpx.AsyncClient, access_token: str) -> dict[str, Any]:
    answer = await client.post("/v1/me/passkeys/options", headers=bearer(access_token))
    assert answer.status_code == 200, answer.text
    options: dict[str, Any] = answer.json()
    return options


async def enrol(
    client: httpx.AsyncClient,
    access_token: str,
    device: Authenticator,
    name: str | None = "Laptop",
) -> dict[str, Any]:
    """Registers a new passkey of ``device``; returns the 201 answer's body."""
    options = await creation_options(client, access_token)
    body: dict[str, Any] = {"credential": device.register(options)}
    if name is not None:
        body["name"] = name
    answer = await client.post("/v1/me/passkeys", json=body, headers=bearer(access_token))
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


async def passwordless(
    client: httpx.AsyncClient, device: Authenticator, **forge: Any
) -> httpx.Response:
    """A whole passwordless sign-in with ``device``; ``forge`` goes to ``authenticate``."""
    options = await client.post("/v1/auth/passkey/options", json={})
    assert options.status_code == 200, options.text
    return await client.post(
        "/v1/auth/passkey", json={"credential": device.authenticate(options.json(), **forge)}
    )


# Well-shaped ``PublicKeyCredential`` JSON whose content no check accepts: the body models
# pass them, so the route-derived security tests reach the service with them.
SHAPED_CREDENTIALS: dict[str, dict[str, Any]] = {
    "RegistrationCredentialIn": {
        "id": "AAAA",
        "rawId": "AAAA",
        "type": "public-key",
        "response": {"clientDataJSON": "e30", "attestationObject": "oA"},
        "clientExtensionResults": {},
    },
    "AssertionCredentialIn": {
        "id": "AAAA",
        "rawId": "AAAA",
        "type": "public-key",
        "response": {"clientDataJSON": "e30", "authenticatorData": "AA", "signature": "AA"},
        "clientExtensionResults": {},
    },
}
