"""The storage ports services depend on; ``keyturn.db`` and ``keyturn.infra`` implement them.

Services never import SQLAlchemy or Redis (import-linter contract 3): they see only these
Protocols and the ``keyturn.domain`` dataclasses.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self

from keyturn.domain import (
    ApiKey,
    AuditEvent,
    AuditFilter,
    AuditRecord,
    ChainReport,
    OneTimeToken,
    OutboxEntry,
    PruneResult,
    RefreshToken,
    Role,
    Session,
    SigningKeyRecord,
    User,
)

if TYPE_CHECKING:  # the packages' own ports (importing them here would be a cycle)
    from keyturn.services.mfa import (
        MfaStatusReader,
        PasskeyRepository,
        RecoveryCodeRepository,
        TotpRepository,
    )
    from keyturn.services.oauth2 import (
        AuthorizationCodeRepository,
        ConsentRepository,
        OAuthClientRepository,
    )


class UserRepository(Protocol):
    async def get(self, user_id: uuid.UUID, *, lock: bool = False) -> User | None:
        """The user; ``lock`` holds a shared row lock to the commit (``revoke_all`` waits)."""

    async def get_by_email(self, email: str) -> User | None: ...
    async def add(self, user: User) -> bool:
        """Inserts the user; False when the email is taken (nothing written)."""

    async def update_name(self, user_id: uuid.UUID, name: str | None, now: datetime) -> None: ...
    async def set_password_hash(
        self, user_id: uuid.UUID, password_hash: str | None, now: datetime
    ) -> None: ...
    async def upgrade_password_hash(
        self, user_id: uuid.UUID, current: str, upgraded: str, now: datetime
    ) -> bool:
        """Replaces the hash only while it is still ``current``; False when it changed.

        A login re-hashes a right password after its check: a password change or reset
        that landed in between must not be undone by the old password's new hash.
        """

    async def grant_role(self, user_id: uuid.UUID, role_name: str) -> None: ...
    async def mark_email_verified(self, user_id: uuid.UUID, now: datetime) -> None: ...
    async def change_email(self, user_id: uuid.UUID, email: str, now: datetime) -> bool:
        """Sets a new (verified) address; False when another account holds it."""

    async def lock(self, user_id: uuid.UUID, *, now: datetime, until: datetime, count: int) -> bool:
        """Locks an unlocked account until ``until``; False when it was locked already."""

    async def admin_lock(self, user_id: uuid.UUID, *, now: datetime, until: datetime) -> None:
        """An administrator's lock; it replaces an automatic one in force."""

    async def unlock(self, user_id: uuid.UUID, now: datetime) -> None:
        """Lifts any lock (an administrator's unlock)."""

    async def unlock_automatic(self, user_id: uuid.UUID, now: datetime) -> bool:
        """Lifts an automatic lock; never an administrator's (False then)."""

    async def search(
        self, prefix: str | None, *, limit: int, after: tuple[str, uuid.UUID] | None
    ) -> list[User]:
        """Users whose email or name starts with ``prefix``, by email, keyset-paged."""

    async def update_admin_fields(
        self,
        user_id: uuid.UUID,
        now: datetime,
        *,
        name: str | None,
        email_verified: bool | None,
        disabled: bool | None,
        set_name: bool,
    ) -> None: ...
    async def delete(self, user_id: uuid.UUID) -> None:
        """Removes the account and, by cascade, its sessions, tokens and role grants."""


class SessionRepository(Protocol):
    async def add(self, session: Session, *, epoch: int) -> bool:
        """Inserts it while the user is usable and at ``session_epoch == epoch``, else False."""

    async def get(self, session_id: uuid.UUID, *, lock: bool = False) -> Session | None:
        """The session; ``lock`` holds a shared row lock to the commit."""

    async def list_active(
        self,
        user_id: uuid.UUID,
        now: datetime,
        *,
        idle_since: datetime,
        limit: int,
        after: tuple[datetime, uuid.UUID] | None,
    ) -> list[Session]:
        """Live sessions (not revoked, not expired, used since ``idle_since``), newest first."""

    async def list_active_for_users(
        self,
        user_ids: Sequence[uuid.UUID],
        now: datetime,
        *,
        idle_since: datetime,
        limit_per_user: int,
    ) -> list[Session]:
        """``list_active`` for many users in one query: up to ``limit_per_user`` each."""

    async def touch(self, session_id: uuid.UUID, now: datetime) -> None: ...
    async def revoke(self, session_id: uuid.UUID, now: datetime, reason: str) -> bool:
        """Marks one live session revoked; False when it was already revoked or absent."""

    async def revoked_since(self, since: datetime) -> list[tuple[uuid.UUID, datetime]]:
        """Sessions revoked at or after ``since`` and when (to rebuild the deny-list)."""

    async def revoke_all(
        self, user_id: uuid.UUID, now: datetime, reason: str, *, keep: uuid.UUID | None = None
    ) -> list[uuid.UUID]:
        """Revokes every live session of the user but ``keep``; returns their ids. Also bumps
        ``session_epoch`` (a credential checked before cannot open a session) and expires
        the user's pending authorization codes except those approved by ``keep``."""

    async def revoke_for_consent(
        self, consent_id: uuid.UUID, now: datetime, reason: str
    ) -> list[uuid.UUID]:
        """Revokes every live grant session opened under the consent; returns their ids."""

    async def revoke_for_client(
        self, client_id: str, now: datetime, reason: str
    ) -> list[uuid.UUID]:
        """Revokes every live grant session of the OAuth client; returns their ids."""

    async def open_signed_in(
        self,
        session: Session,
        token: tuple[RefreshToken, str] | None,
        event: AuditRecord,
        *,
        epoch: int,
    ) -> bool:
        """A new session, its first refresh token (with its digest) if any and the audit
        row of the sign-in, together, under :meth:`add`'s rule (a sign-in that also
        upgrades the password hash; the others go through ``SignInStore.open``)."""


class RefreshTokenRepository(Protocol):
    async def add(self, token: RefreshToken, digest: str) -> None: ...
    async def find(self, digests: Sequence[str]) -> RefreshToken | None: ...
    async def find_with_session(
        self, digests: Sequence[str]
    ) -> tuple[RefreshToken, Session, User, frozenset[str]] | None:
        """The token, its session, its user and the user's permissions, in one read."""

    async def rotate(
        self, token: RefreshToken, successor: RefreshToken, digest: str, now: datetime
    ) -> bool:
        """Claims ``token``, stores ``successor``, touches the session, atomically: True for
        one caller only; False too when the session was revoked since it was read."""

    async def get(self, token_id: uuid.UUID) -> RefreshToken | None: ...
    async def mark_rotated(self, token_id: uuid.UUID, now: datetime) -> bool:
        """Atomically claims the right to rotate: True for exactly one caller."""

    async def successor(self, token_id: uuid.UUID) -> tuple[RefreshToken, str] | None:
        """The token minted from ``token_id`` and its stored digest."""


class OneTimeTokenRepository(Protocol):
    async def add(self, token: OneTimeToken, digest: str) -> None: ...
    async def add_spent_for_email(
        self, email: str, purpose: str, digest: str, now: datetime
    ) -> None:
        """A used-up token for the account holding ``email`` (equal work, no lookup)."""

    async def find(self, digests: Sequence[str]) -> OneTimeToken | None: ...
    async def consume(self, token_id: uuid.UUID, now: datetime) -> bool:
        """Marks the token used; True for exactly one caller (single use, atomically)."""

    async def fail(self, token_id: uuid.UUID, now: datetime, *, limit: int) -> bool:
        """Counts a wrong attempt, burning the token at ``limit``; False if already dead."""

    async def invalidate(self, user_id: uuid.UUID, purpose: str, now: datetime) -> int:
        """Burns the user's live tokens for ``purpose``; returns how many."""


class OutboxRepository(Protocol):
    async def add(
        self, *, message_id: str, kind: str, payload: bytes, now: datetime
    ) -> uuid.UUID: ...
    async def due(self, now: datetime, *, limit: int) -> list[uuid.UUID]:
        """Ids of messages ready to send: pending and due, or with an expired lease."""

    async def claim(
        self, entry_id: uuid.UUID, *, owner: str, now: datetime, lease_until: datetime
    ) -> OutboxEntry | None:
        """Takes the sending lease if still free (compare-and-set); counts an attempt."""

    async def mark_sent(self, entry_id: uuid.UUID, *, owner: str, now: datetime) -> bool: ...
    async def mark_failed(
        self,
        entry_id: uuid.UUID,
        *,
        owner: str,
        error: str,
        retry_at: datetime | None,
    ) -> bool:
        """Back to pending until ``retry_at``, or dead (``retry_at`` None)."""

    async def counts(self) -> dict[str, int]:
        """Number of messages per status (for metrics and operators)."""

    async def list_by_status(self, status: str, *, limit: int) -> list[OutboxEntry]: ...


class RoleRepository(Protocol):
    async def list(self) -> list[Role]: ...
    async def get(self, name: str) -> Role | None: ...
    async def add(self, role: Role) -> bool:
        """Inserts the role; False when the name is taken."""

    async def update(
        self, name: str, *, description: str, permissions: tuple[str, ...]
    ) -> None: ...
    async def delete(self, name: str) -> None: ...
    async def assign(self, user_id: uuid.UUID, role_id: uuid.UUID) -> bool: ...
    async def unassign(self, user_id: uuid.UUID, role_id: uuid.UUID) -> bool: ...
    async def permissions_of(self, user_id: uuid.UUID) -> frozenset[str]: ...
    async def lock_role(self, name: str) -> None:
        """Serialises changes that may remove a holder of the role (to the commit)."""

    async def holders(self, name: str, *, now: datetime) -> dict[uuid.UUID, bool]:
        """Every holder of the role -> whether the account is usable at ``now``."""


class ApiKeyRepository(Protocol):
    async def add(self, key: ApiKey, digest: str) -> bool:
        """Inserts the key; False when its prefix (or digest) is taken (nothing written)."""

    async def find_by_prefix(self, prefix: str) -> tuple[ApiKey, str] | None:
        """The key with this public prefix and its stored digest, revoked or not."""

    async def list_for(self, user_id: uuid.UUID) -> list[ApiKey]:
        """The user's keys that are not revoked, newest first."""

    async def revoke(self, key_id: uuid.UUID, user_id: uuid.UUID, now: datetime) -> bool:
        """Revokes the user's live key; False when absent, revoked or someone else's."""

    async def revoke_all(self, user_id: uuid.UUID, now: datetime) -> list[uuid.UUID]:
        """Revokes every key of the user not yet revoked; returns their ids."""

    async def mark_used(self, used: Mapping[uuid.UUID, datetime]) -> None:
        """Moves ``last_used_at`` forward for a batch of keys (never backwards)."""


class SigningKeyRepository(Protocol):
    async def list_published(
        self, *, retired_since: datetime | None = None
    ) -> list[SigningKeyRecord]:
        """`next`, `active`, and `retired` since ``retired_since`` (all if None); newest first."""

    async def list_all(self) -> list[SigningKeyRecord]:
        """Every key in any state (including `expired` and `revoked`), newest first."""

    async def get(self, kid: str) -> SigningKeyRecord | None:
        """The key ``kid`` in any state; None when unknown."""

    async def revoke(self, kid: str, *, now: datetime) -> bool:
        """Any state -> `revoked` (private part wiped); False when it already was."""

    async def revoked_since(self, since: datetime) -> list[tuple[str, datetime]]:
        """The kids revoked at or after ``since``, with their revocation times."""

    async def add(self, record: SigningKeyRecord) -> None: ...
    async def activate(self, kid: str, *, now: datetime) -> bool:
        """Compare-and-set `next` -> `active`; False when the key is no longer `next`."""

    async def lock_chains(self) -> None:
        """Serialises key-chain creation (first start) until the transaction ends."""

    async def retire_active(self, *, alg: str, keep: str, now: datetime) -> list[str]:
        """Every `active` key of ``alg`` but ``keep`` becomes `retired`; returns their kids."""

    async def expire_retired(self, *, retired_before: datetime) -> int:
        """`retired` keys retired before the instant become `expired`, private part wiped."""

    async def replace_private_key(self, kid: str, *, old: bytes, new: bytes) -> bool:
        """Compare-and-set of the sealed private key (for ``keyturn secret rotate``)."""


class AuditRepository(Protocol):
    async def record(
        self,
        event_type: str,
        *,
        now: datetime,
        user_id: uuid.UUID | None = None,
        session_id: uuid.UUID | None = None,
        ip: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None: ...

    async def record_many(self, events: Sequence[AuditRecord]) -> None:
        """Writes unsealed events in one statement of a shape that does not depend on
        their number."""

    async def for_user(self, user_id: uuid.UUID, *, limit: int) -> list[AuditEvent]:
        """The user's own events, newest first (for the data export)."""

    async def search(
        self, where: AuditFilter, *, limit: int, before_id: int | None
    ) -> list[AuditEvent]: ...
    async def seal_pending(self, *, limit: int, wait: bool = False) -> int | None:
        """Chains up to ``limit`` unsealed rows; ``None`` when another sealer holds the lock."""

    async def verify(
        self, *, batch_size: int, progress: Callable[[int], None] | None = None
    ) -> ChainReport: ...
    async def prune(self, *, before: datetime, now: datetime) -> PruneResult:
        """Seals, then deletes the sealed rows older than ``before`` behind a checkpoint."""


class UnitOfWork(Protocol):
    """One transaction per use case: repositories flush, ``commit`` ends the work."""

    @property
    def users(self) -> UserRepository: ...
    @property
    def sessions(self) -> SessionRepository: ...
    @property
    def refresh_tokens(self) -> RefreshTokenRepository: ...
    @property
    def signing_keys(self) -> SigningKeyRepository: ...
    @property
    def audit(self) -> AuditRepository: ...
    @property
    def one_time_tokens(self) -> OneTimeTokenRepository: ...
    @property
    def outbox(self) -> OutboxRepository: ...
    @property
    def roles(self) -> RoleRepository: ...
    @property
    def api_keys(self) -> ApiKeyRepository: ...
    @property
    def clients(self) -> OAuthClientRepository: ...
    @property
    def authorization_codes(self) -> AuthorizationCodeRepository: ...
    @property
    def consents(self) -> ConsentRepository: ...
    @property
    def totp(self) -> TotpRepository: ...
    @property
    def recovery_codes(self) -> RecoveryCodeRepository: ...
    @property
    def passkeys(self) -> PasskeyRepository: ...
    @property
    def mfa(self) -> MfaStatusReader: ...

    async def commit(self) -> None: ...
    async def __aenter__(self) -> Self: ...
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


# Two kinds are handed to services (``app.py``): the ordinary one, and one for pure reads
# (on PostgreSQL without BEGIN/ROLLBACK; writes refused).
UnitOfWorkFactory = Callable[[], UnitOfWork]
