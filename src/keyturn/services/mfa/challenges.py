"""WebAuthn challenges in the shared ``CeremonyStore`` (W3C WebAuthn Level 3 section 13.4.3).

A challenge (32 random bytes) is stored under a digest of itself with what it was issued
for (:class:`Ceremony`: purpose, user, binding) for 5 minutes. A response names its
challenge in ``clientDataJSON``; :meth:`Challenges.take` removes it from the store (single
use, on any replica) and checks that it was issued for the same ceremony.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from keyturn.errors import ServiceUnavailable, StoreUnavailable
from keyturn.services.mfa.ports import CeremonyStore
from keyturn.services.mfa.webauthn_ceremony import (
    CHALLENGE_BYTES,
    CHALLENGE_TTL,
    Rejected,
    challenge_key,
    client_challenge,
)

_STORE_DOWN = "Passkeys are unavailable for a moment (shared store unreachable); retry."


@dataclass(frozen=True, slots=True)
class Ceremony:
    """What a challenge was issued for; a response must answer the same."""

    purpose: str
    user_id: str | None
    binding: str | None

    def encode(self) -> bytes:
        return json.dumps(
            {"purpose": self.purpose, "user_id": self.user_id, "binding": self.binding}
        ).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Ceremony:
        value = json.loads(raw)
        return cls(purpose=value["purpose"], user_id=value["user_id"], binding=value["binding"])


class Challenges:
    """Issues challenges and takes them back, once."""

    def __init__(self, store: CeremonyStore) -> None:
        self._store = store

    async def begin(self, ceremony: Ceremony) -> bytes:
        """A fresh challenge for ``ceremony``, stored for ``CHALLENGE_TTL`` seconds.

        Raises:
            ServiceUnavailable: The shared store is unreachable.
        """
        challenge = secrets.token_bytes(CHALLENGE_BYTES)
        try:
            await self._store.put(
                challenge_key(challenge), ceremony.encode(), ttl_seconds=CHALLENGE_TTL
            )
        except StoreUnavailable as exc:
            raise ServiceUnavailable(_STORE_DOWN) from exc
        return challenge

    async def take(self, credential: Mapping[str, Any], expected: Ceremony) -> bytes:
        """The response's challenge, taken out of the store and checked against ``expected``.

        Raises:
            Rejected: No challenge, an unknown, expired or used one, or another ceremony's.
            ServiceUnavailable: The shared store is unreachable (never a pass).
        """
        challenge = client_challenge(credential)
        if challenge is None:
            raise Rejected("challenge", "The response carries no challenge.")
        try:
            stored = await self._store.take(challenge_key(challenge))
        except StoreUnavailable as exc:
            raise ServiceUnavailable(_STORE_DOWN) from exc
        if stored is None:
            raise Rejected("challenge", "The challenge is unknown, expired or already used.")
        if Ceremony.decode(stored) != expected:
            raise Rejected("challenge", "The challenge was issued for another ceremony.")
        return challenge
