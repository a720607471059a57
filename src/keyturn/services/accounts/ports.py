"""The ports of accounts beside the unit of work: rate limits, the session deny-list,
the second-factor gate and a login's own storage.

Met structurally by ``keyturn.infra.rate_limit`` and ``keyturn.infra.revocation`` (memory
and Redis, one contract suite each), ``MfaGate`` and ``keyturn.db.sign_in``, which never
import services.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from keyturn.domain import AuditRecord, ClientInfo, RateDecision, RefreshToken, Session, User
from keyturn.domain_mfa import MfaChallenge, MfaStatus

__all__ = ["RateLimiter", "RevocationStore", "SecondFactorGate", "SignInStore"]


class SignInStore(Protocol):
    """A password login's storage: the lookup before the hash and the write after it, each
    a statement of its own (no unit of work around them; issue 18).

    Both raise ``DatabaseUnavailable`` on a database outage, as a unit of work does.
    """

    async def read(self, email: str) -> tuple[User, MfaStatus] | None:
        """The user by (normalised) address with its roles and second factors, or None."""
        ...

    async def open(
        self,
        session: Session,
        token: tuple[RefreshToken, str] | None,
        event: AuditRecord,
        *,
        epoch: int,
    ) -> bool:
        """Writes the session, its first refresh token (with its digest) if any and the
        sign-in's audit row together, if the user is still usable and its ``session_epoch``
        is still ``epoch`` (``SessionRepository.add``'s rule); False when nothing was
        written."""
        ...


class SecondFactorGate(Protocol):
    """Decides after a right password whether a login needs a second step (issue 15).

    Met by ``MfaGate`` (``second_factor.py``), which only reads the MFA storage port; the
    ``keyturn.services.mfa`` package that redeems the challenge depends on accounts, never
    the reverse.
    """

    async def challenge(
        self, user: User, status: MfaStatus, client: ClientInfo, *, channel: str
    ) -> MfaChallenge | None:
        """A second step for this login, or None when the password alone signs in.

        ``status`` is the user's factors as the password check's lookup read them.
        """
        ...


class RateLimiter(Protocol):
    """Sliding-window counters keyed by caller-chosen strings (e.g. ``"login:acct:ip"``)."""

    async def hit(
        self, key: str, *, limit: int, window_seconds: int, cost: int = 1
    ) -> RateDecision:
        """Record ``cost`` hits on ``key`` if they fit, else record nothing.

        Raises:
            ValueError: ``limit`` or ``window_seconds`` below 1, or ``cost`` outside
                ``1..limit``.
            StoreUnavailable: The shared store could not be reached; the caller decides
                how to degrade, never by allowing (or use ``FallbackRateLimiter``).
        """
        ...

    async def peek(self, key: str, *, limit: int, window_seconds: int) -> RateDecision:
        """Return exactly what ``hit(key, cost=1)`` would return now, recording nothing.

        Lets a caller refuse a blocked account+IP before the expensive password check
        and then ``hit`` only on failure.

        Raises:
            ValueError: As for ``hit``.
            StoreUnavailable: As for ``hit``.
        """
        ...

    async def hit_and_peek(
        self,
        hit_key: str,
        peek_key: str,
        *,
        hit_limit: int,
        hit_window: int,
        peek_limit: int,
        peek_window: int,
    ) -> tuple[RateDecision, RateDecision]:
        """``hit(hit_key)`` then ``peek(peek_key)`` as one atomic step: one round trip.

        A credential request's per-IP hit and its account+IP peek (issue 18). The hit is
        recorded if it fits whatever the peek says; the peek sees the hit when the keys
        are the same.

        Raises:
            ValueError: As for ``hit``, for either part.
            StoreUnavailable: As for ``hit``; then neither part was recorded, or both
                were and the answer was lost.
        """
        ...

    async def reset(self, key: str) -> None:
        """Forget every hit on ``key``; raises ``StoreUnavailable`` like ``hit``."""
        ...

    async def ping(self) -> None:
        """Return when the store answers (readiness); else raise ``StoreUnavailable``."""
        ...

    async def close(self) -> None:
        """Release what the limiter owns."""
        ...


class RevocationStore(Protocol):
    """Deny-list of revoked session ids, shared by everything that verifies tokens."""

    async def revoke(self, sid: str, ttl_seconds: int) -> None:
        """Deny ``sid`` for ``ttl_seconds`` (a later call replaces the TTL).

        Raises:
            ValueError: ``ttl_seconds`` is below 1.
            StoreUnavailable: The shared store could not be reached.
        """
        ...

    async def is_revoked(self, sid: str) -> bool:
        """Tell whether ``sid`` is currently denied.

        Raises:
            StoreUnavailable: The shared store could not be reached; the caller must
                fall back to the database, never assume "not revoked".
        """
        ...

    async def revoked_among(self, sids: Sequence[str]) -> frozenset[str]:
        """Those of ``sids`` currently denied, in one round trip (issue 18).

        Raises:
            StoreUnavailable: As for ``is_revoked`` (unreachable, or unsealed); an empty
                ``sids`` asks nothing and answers the empty set.
        """
        ...

    async def seal(self) -> None:
        """Mark the list complete (after it was restored from the database).

        Until then a store that cannot vouch for its contents (Redis restarted empty)
        answers ``is_revoked`` with ``StoreUnavailable``, so the caller asks the database.
        """
        ...

    async def ping(self) -> None:
        """Return when the store answers (readiness probe).

        Raises:
            StoreUnavailable: The shared store could not be reached.
        """
        ...

    async def close(self) -> None:
        """Release connections the store owns."""
        ...
