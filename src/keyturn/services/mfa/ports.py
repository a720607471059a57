"""What the MFA services need from storage: met structurally by ``keyturn.db``."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from keyturn.domain_mfa import MfaStatus, Passkey, TotpFactor


class TotpRepository(Protocol):
    async def get(self, user_id: uuid.UUID) -> TotpFactor | None: ...
    async def put_pending(self, factor: TotpFactor) -> bool:
        """Stores an unconfirmed enrolment, replacing an earlier unconfirmed one.

        Returns False (nothing written) when a confirmed factor exists.
        """

    async def confirm(self, user_id: uuid.UUID, *, step: int, now: datetime) -> bool:
        """Confirms the pending enrolment; True for exactly one caller."""

    async def use_step(self, user_id: uuid.UUID, step: int) -> bool:
        """Moves ``last_used_step`` forward to ``step``; False if it is there already.

        One conditional UPDATE: of two racing uses of one code, one wins (RFC 6238
        section 5.2: a verifier must not accept the second attempt of the same code).
        """

    async def delete(self, user_id: uuid.UUID) -> bool: ...
    async def delete_pending(self, *, created_before: datetime) -> int:
        """Drops enrolments never confirmed; returns how many."""

    async def sealed(self) -> list[tuple[uuid.UUID, bytes]]:
        """Every sealed seed, for ``keyturn secret rotate``."""

    async def replace_sealed(self, user_id: uuid.UUID, *, old: bytes, new: bytes) -> bool:
        """Swaps the sealed seed if it is still ``old`` (a concurrent change wins)."""


class RecoveryCodeRepository(Protocol):
    async def replace(self, user_id: uuid.UUID, digests: Sequence[str], now: datetime) -> None:
        """Deletes the user's codes and stores the new set."""

    async def use(self, user_id: uuid.UUID, digests: Sequence[str], now: datetime) -> bool:
        """Marks the matching unused code used; True for exactly one of racing callers."""

    async def count_left(self, user_id: uuid.UUID) -> int: ...
    async def delete_all(self, user_id: uuid.UUID) -> int: ...


class PasskeyRepository(Protocol):
    async def add(self, passkey: Passkey) -> bool:
        """False when the credential id is registered already (to anyone)."""

    async def list_for(self, user_id: uuid.UUID) -> list[Passkey]: ...
    async def get(self, passkey_id: uuid.UUID, user_id: uuid.UUID) -> Passkey | None: ...
    async def find(self, credential_id: bytes) -> Passkey | None: ...
    async def rename(self, passkey_id: uuid.UUID, user_id: uuid.UUID, name: str) -> bool: ...
    async def delete(self, passkey_id: uuid.UUID, user_id: uuid.UUID) -> bool: ...
    async def delete_all(self, user_id: uuid.UUID) -> int: ...
    async def record_use(
        self, passkey_id: uuid.UUID, *, old_count: int, new_count: int, now: datetime
    ) -> bool:
        """Stores the new signature counter if it is still ``old_count`` (compare-and-set)."""


class MfaStatusReader(Protocol):
    async def status(self, user_id: uuid.UUID) -> MfaStatus:
        """Which factors the user has (one round trip)."""

    async def statuses(self, user_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, MfaStatus]:
        """Which factors each user has, in a fixed number of round trips (admin lists)."""


class CeremonyStore(Protocol):
    """Short-lived WebAuthn ceremony state in the shared store (Redis when configured), so
    any replica finishes a ceremony another began. Met by ``keyturn.infra``."""

    async def put(self, key: str, value: bytes, *, ttl_seconds: int) -> None: ...
    async def take(self, key: str) -> bytes | None:
        """Returns and deletes the value in one step: of racing takers one gets it."""
