"""Personal API keys (DESIGN.md section 3, issue 5 item 3): create, list, revoke, verify.

``kt_<prefix>_<secret>``: the prefix finds the row, the secret is kept as a keyed digest;
``last_used_at`` is written in batches.
See docs/technical/2026-11-26_backend_security-implementation.md (V6).
"""

from __future__ import annotations

import asyncio
import base64
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog

from keyturn.domain import PERMISSIONS, SELF_SERVICE_SCOPES, ApiKey, ClientInfo, Principal, utcnow
from keyturn.errors import (
    InvalidInput,
    InvalidToken,
    NotFound,
    PermissionEscalation,
    ServiceUnavailable,
    UnknownScope,
)
from keyturn.security.digests import Digester, KeyRing, constant_time_equals, new_token
from keyturn.services.accounts import CredentialGuard
from keyturn.services.admin.permissions import Authorizer
from keyturn.services.ports import UnitOfWorkFactory

if TYPE_CHECKING:  # accounts imports this package first: a runtime import is a cycle
    from keyturn.services.accounts import RecentSignIn

log = structlog.get_logger(__name__)

KEY_MARKER = "kt_"
# Shape checked before any lookup: 8 lower-case base32 characters, then new_token(32).
KEY_SHAPE = re.compile(r"^kt_([a-z2-7]{8})_([A-Za-z0-9_-]{43})$")
PREFIX_BYTES = 5  # 40 bits -> exactly 8 base32 characters
PREFIX_ATTEMPTS = 3
DEFAULT_SCOPES: tuple[str, ...] = ("me:read",)
# Failed key checks name no account: like refresh tokens they are counted per client IP.
API_KEY_ACCOUNT = "api-key"
USAGE_FLUSH_SECONDS = 60.0


def looks_like_api_key(token: str) -> bool:
    """Whether a Bearer credential is meant as an API key (and not a JWT)."""
    return token.startswith(KEY_MARKER)


def _new_prefix() -> str:
    return base64.b32encode(secrets.token_bytes(PREFIX_BYTES)).decode("ascii").lower()


@dataclass(frozen=True, slots=True)
class CreatedApiKey:
    """A new key's record and the full key, which is shown exactly once."""

    record: ApiKey
    key: str


class ApiKeyService:
    def __init__(
        self,
        *,
        uow_factory: UnitOfWorkFactory,
        authorizer: Authorizer,
        guard: CredentialGuard,
        key_ring: KeyRing,
        recent_sign_in: RecentSignIn,
        usage_flush_seconds: float = USAGE_FLUSH_SECONDS,
    ) -> None:
        self._uow_factory = uow_factory
        self._recent_sign_in = recent_sign_in
        self._authorizer = authorizer
        self._guard = guard
        self._digester = Digester(key_ring, "api-key")
        # What an unknown prefix is compared against, so it costs the same work as a known one.
        self._dummy_digest = self._digester.digest(new_token())
        self._flush_seconds = usage_flush_seconds
        self._used: dict[uuid.UUID, datetime] = {}
        self._last_flush = time.monotonic()
        self._flushing: asyncio.Task[None] | None = None

    async def create(
        self,
        principal: Principal,
        *,
        name: str,
        scopes: list[str] | None,
        expires_at: datetime | None,
        client: ClientInfo,
    ) -> CreatedApiKey:
        """Creates a key for the caller: only a session signed in within the last minutes
        (issue 15: a stolen access token or refresh token cannot mint a lasting key)."""
        await self._recent_sign_in.require(principal)
        granted = await self._check_scopes(principal, DEFAULT_SCOPES if scopes is None else scopes)
        now = utcnow()
        expires = _future(expires_at, now)
        for _ in range(PREFIX_ATTEMPTS):
            prefix, secret = _new_prefix(), new_token(32)
            record = ApiKey(
                id=uuid.uuid4(),
                user_id=principal.user_id,
                name=name,
                prefix=prefix,
                scopes=granted,
                created_at=now,
                expires_at=expires,
            )
            async with self._uow_factory() as uow:
                user = await uow.users.get(principal.user_id)
                if user is None or user.disabled:
                    raise NotFound("The account no longer exists.")
                if not await uow.api_keys.add(record, self._digester.digest(secret)):
                    continue  # a prefix collision (40 random bits): draw a new key
                await uow.audit.record(
                    "key.created",
                    now=now,
                    user_id=principal.user_id,
                    session_id=principal.session_id,
                    ip=client.ip,
                    data={"key_id": str(record.id), "prefix": prefix, "scopes": list(granted)},
                )
                await uow.commit()
            return CreatedApiKey(record=record, key=f"{KEY_MARKER}{prefix}_{secret}")
        raise ServiceUnavailable("Could not draw a unique key prefix; try again.")

    async def _check_scopes(
        self, principal: Principal, requested: list[str] | tuple[str, ...]
    ) -> tuple[str, ...]:
        wanted = set(requested)
        unknown = sorted(wanted - set(SELF_SERVICE_SCOPES) - set(PERMISSIONS))
        if unknown:
            raise UnknownScope(
                f"Unknown scope(s): {', '.join(unknown)}.",
                errors=[{"field": "scopes", "message": f"unknown: {name}"} for name in unknown],
            )
        held = await self._authorizer.permissions(principal)
        beyond = sorted(wanted - set(SELF_SERVICE_SCOPES) - held)
        if beyond:
            # A key never holds more than its owner: no escalation through a key.
            raise PermissionEscalation(
                f"You do not hold: {', '.join(beyond)}.",
                errors=[{"field": "scopes", "message": f"not held: {name}"} for name in beyond],
            )
        return tuple(sorted(wanted))

    async def list_mine(self, principal: Principal) -> list[ApiKey]:
        """The caller's keys that are not revoked (expired ones included), newest first."""
        async with self._uow_factory() as uow:
            return await uow.api_keys.list_for(principal.user_id)

    async def revoke(self, principal: Principal, key_id: uuid.UUID, client: ClientInfo) -> None:
        now = utcnow()
        async with self._uow_factory() as uow:
            # Someone else's key answers exactly like a missing one.
            if not await uow.api_keys.revoke(key_id, principal.user_id, now):
                raise NotFound("No such API key.")
            await uow.audit.record(
                "key.revoked",
                now=now,
                user_id=principal.user_id,
                session_id=principal.session_id,
                ip=client.ip,
                data={"key_id": str(key_id)},
            )
            await uow.commit()

    async def authenticate(self, key: str, client: ClientInfo) -> Principal:
        """Verifies ``kt_<prefix>_<secret>``; every failure is a throttled credential failure."""
        # An API key is a credential: the per-IP failure limit holds (DESIGN.md section 5).
        await self._guard.before(API_KEY_ACCOUNT, client)
        try:
            return await self._verify(key)
        except InvalidToken:
            await self._guard.failed(
                API_KEY_ACCOUNT, None, client, event="key.failed", factor="api_key"
            )
            raise

    async def _verify(self, key: str) -> Principal:
        match = KEY_SHAPE.match(key)
        if match is None:
            raise InvalidToken("The API key is malformed.")
        prefix, secret = match.groups()
        now = utcnow()
        async with self._uow_factory() as uow:
            found = await uow.api_keys.find_by_prefix(prefix)
            user = await uow.users.get(found[0].user_id) if found else None
        # Equal work for an unknown prefix: the digests are computed and compared anyway.
        stored = found[1] if found else self._dummy_digest
        matched = False
        for candidate in self._digester.candidates(secret):
            matched |= constant_time_equals(candidate, stored)
        if found is None or user is None or not matched:
            raise InvalidToken("The API key is invalid, expired or revoked.")
        record = found[0]
        # A revoked or expired key, or a disabled or locked owner: the same refusal.
        if not record.usable(now) or user.disabled or user.locked(now):
            raise InvalidToken("The API key is invalid, expired or revoked.")
        self._note_use(record.id, now)
        return Principal(
            user_id=user.id,
            session_id=None,
            scopes=frozenset(record.scopes),
            roles=user.roles,
            api_key_id=record.id,
        )

    def _note_use(self, key_id: uuid.UUID, now: datetime) -> None:
        self._used[key_id] = now
        due = time.monotonic() - self._last_flush >= self._flush_seconds
        if due and self._flushing is None:
            self._flushing = asyncio.create_task(self._flush_in_background())

    async def _flush_in_background(self) -> None:
        try:
            await self.flush_usage()
        except Exception:
            # Only "last used" times are at stake; they were put back for the next flush.
            log.warning("api_key_usage_flush_failed", exc_info=True)
        finally:
            self._flushing = None

    async def flush_usage(self) -> int:
        """Writes the remembered ``last_used_at`` times in one batch; returns how many."""
        self._last_flush = time.monotonic()
        batch, self._used = self._used, {}
        if not batch:
            return 0
        try:
            async with self._uow_factory() as uow:
                await uow.api_keys.mark_used(batch)
                await uow.commit()
        except BaseException:
            for key_id, when in batch.items():
                self._used[key_id] = max(when, self._used.get(key_id, when))
            raise
        return len(batch)

    async def close(self) -> None:
        """Finishes a running flush and writes what is left (at shutdown)."""
        if self._flushing is not None:
            await asyncio.gather(self._flushing, return_exceptions=True)
        try:
            await self.flush_usage()
        except Exception:
            log.warning("api_key_usage_flush_failed", exc_info=True)


def _future(expires_at: datetime | None, now: datetime) -> datetime | None:
    """``expires_at`` in UTC, refused unless it has a zone and lies in the future."""
    if expires_at is None:
        return None
    try:
        if expires_at.tzinfo is None:
            raise ValueError("no time zone")
        moment = expires_at.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise InvalidInput(
            "expires_at must be an RFC 3339 time with a zone.",
            errors=[{"field": "expires_at", "message": "needs a time zone"}],
        ) from exc
    if moment <= now:
        raise InvalidInput(
            "expires_at must lie in the future.",
            errors=[{"field": "expires_at", "message": "must be in the future"}],
        )
    return moment
