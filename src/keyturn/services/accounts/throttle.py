"""Throttling of credential checks (DESIGN.md section 5, ASVS v5.0.0-6.3.1).

Four limits on the shared rate limiter: per IP, failures per account + IP, failures per
account (silent lock), signups per IP. Accounts are keyed digests.
See docs/technical/2026-11-26_backend_security-implementation.md (Throttling).

One round trip per credential request (issue 18): the edge may defer a request's per-IP
hit (``defer_request``) to the request's first ``guard``, which then records the hit and
peeks the account+IP failures in one atomic ``hit_and_peek``. The deferred hit lives in a
request-scoped ``PendingRequest`` (a context variable, so it needs nothing from HTTP);
``settle`` records it at the end of the request when no guard did (a malformed body, an
unknown grant), so every request still counts and a refusal still answers 429.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from keyturn.domain import RateDecision
from keyturn.errors import RateLimited
from keyturn.security.digests import Digester
from keyturn.security.networks import ip_limit_key
from keyturn.services.accounts.ports import RateLimiter

ACCOUNT_IP_WINDOW = 15 * 60
ACCOUNT_WINDOW = 60 * 60
IP_WINDOW = 60
SIGNUP_WINDOW = 60 * 60


@dataclass(frozen=True, slots=True)
class Limits:
    failures_per_account_ip: int
    failures_per_account: int
    ip_per_minute: int
    signups_per_ip_per_hour: int
    ipv6_prefix: int = 64


@dataclass(slots=True)
class PendingRequest:
    """A credential request's per-IP hit, not yet recorded; ``counted`` once it is."""

    ip: str | None
    counted: bool = False


# Mutable holder on purpose: a guard running in a copied context (a child task, a thread)
# still marks the one hit of its request as counted.
_PENDING: ContextVar[PendingRequest | None] = ContextVar("keyturn_pending_request", default=None)

_IP_REFUSED = "Too many requests from this address; slow down."


def _refuse(decision: RateDecision, detail: str) -> RateLimited:
    return RateLimited(
        detail,
        retry_after=decision.retry_after,
        limit=decision.limit,
        reset_after=decision.reset_after,
    )


class Throttle:
    def __init__(self, *, limiter: RateLimiter, digester: Digester, limits: Limits) -> None:
        self._limiter = limiter
        self._digester = digester
        self._limits = limits

    def _net(self, ip: str | None) -> str:
        return ip_limit_key(ip, self._limits.ipv6_prefix)

    def _pair(self, account: str, ip: str | None) -> str:
        return f"fail:pair:{self._digester.digest(account)}:{self._net(ip)}"

    def _account(self, account: str) -> str:
        return f"fail:acct:{self._digester.digest(account)}"

    def _ip(self, ip: str | None) -> str:
        return f"ip:{self._net(ip)}"

    async def request(self, ip: str | None) -> None:
        """Counts one request to a credential endpoint from ``ip``."""
        decision = await self._limiter.hit(
            self._ip(ip), limit=self._limits.ip_per_minute, window_seconds=IP_WINDOW
        )
        if not decision.allowed:
            raise _refuse(decision, _IP_REFUSED)

    def defer_request(self, ip: str | None) -> PendingRequest:
        """Defers this request's per-IP hit to its first ``guard``; ``settle`` must follow.

        Only for a request whose first costly step (hash, secret compare, signature) is
        behind ``guard``: the ceiling is then still checked before any of them.
        """
        pending = PendingRequest(ip)
        _PENDING.set(pending)
        return pending

    async def settle(self, pending: PendingRequest) -> None:
        """Counts the deferred hit if no guard did; 429 when it is over the ceiling."""
        if _PENDING.get() is pending:
            _PENDING.set(None)
        if not pending.counted:
            pending.counted = True
            await self.request(pending.ip)

    async def signup(self, ip: str | None) -> None:
        decision = await self._limiter.hit(
            f"signup:{self._net(ip)}",
            limit=self._limits.signups_per_ip_per_hour,
            window_seconds=SIGNUP_WINDOW,
        )
        if not decision.allowed:
            raise _refuse(decision, "Too many signups from this address; try again later.")

    async def guard(self, account: str, ip: str | None) -> None:
        """Refuses (429) before any check when this account + IP failed too often.

        Also records the request's deferred per-IP hit, in the same round trip, and
        refuses when it is over the ceiling.
        """
        pending = _PENDING.get()
        if pending is not None and not pending.counted and pending.ip == ip:
            # Marked before the await: a concurrent guard of the same request peeks only.
            pending.counted = True
            per_ip, decision = await self._limiter.hit_and_peek(
                self._ip(ip),
                self._pair(account, ip),
                hit_limit=self._limits.ip_per_minute,
                hit_window=IP_WINDOW,
                peek_limit=self._limits.failures_per_account_ip,
                peek_window=ACCOUNT_IP_WINDOW,
            )
            if not per_ip.allowed:
                raise _refuse(per_ip, _IP_REFUSED)
        else:
            decision = await self._limiter.peek(
                self._pair(account, ip),
                limit=self._limits.failures_per_account_ip,
                window_seconds=ACCOUNT_IP_WINDOW,
            )
        if not decision.allowed:
            raise _refuse(decision, "Too many failed attempts; try again later.")

    async def failed(self, account: str, ip: str | None) -> bool:
        """Records one failed check; True when the account crossed its lock threshold."""
        await self._limiter.hit(
            self._pair(account, ip),
            limit=self._limits.failures_per_account_ip,
            window_seconds=ACCOUNT_IP_WINDOW,
        )
        overall = await self._limiter.hit(
            self._account(account),
            limit=self._limits.failures_per_account,
            window_seconds=ACCOUNT_WINDOW,
        )
        return not overall.allowed

    async def forgive(self, account: str) -> None:
        """Clears the account-wide failures (after a password reset proves the owner)."""
        await self._limiter.reset(self._account(account))
