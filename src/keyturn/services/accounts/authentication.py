"""First-party authentication: login (and its second step), refresh, logout; signup is in
``signup``, the rotation rules in ``refresh_rotation``."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog

from keyturn.domain import AuditRecord, ClientInfo, Principal, Session, TokenPair, User, utcnow
from keyturn.domain_mfa import MfaChallenge, MfaStatus
from keyturn.errors import (
    AuthenticationFailed,
    EmailNotVerified,
    InvalidRefreshToken,
    PermissionDenied,
)
from keyturn.observability.metrics import LOGINS
from keyturn.security.digests import (
    KeyRing,
)
from keyturn.security.passwords import HashPool
from keyturn.services.accounts.access_tokens import AccessTokenService
from keyturn.services.accounts.credential_rules import PasswordPolicy, normalize_email
from keyturn.services.accounts.lockout import CredentialGuard
from keyturn.services.accounts.ports import SecondFactorGate, SignInStore
from keyturn.services.accounts.refresh_rotation import RefreshRotation
from keyturn.services.ports import UnitOfWork, UnitOfWorkFactory

log = structlog.get_logger(__name__)

# Unknown refresh tokens name no account: their failures are counted per client IP.
REFRESH_ACCOUNT = "refresh-token"
_NO_FACTORS = MfaStatus(totp=False, passkeys=0, recovery_codes_left=0)


class AuthService:
    """Login, refresh and logout for first-party clients (DESIGN.md sections 3, 4)."""

    def __init__(
        self,
        *,
        uow_factory: UnitOfWorkFactory,
        hash_pool: HashPool,
        access_tokens: AccessTokenService,
        key_ring: KeyRing,
        policy: PasswordPolicy,
        refresh_ttl: int,
        idle_ttl: int,
        reuse_grace: int,
        require_verified_email: bool,
        guard: CredentialGuard,
        read_uow_factory: UnitOfWorkFactory,
        sign_in: SignInStore,
        second_factor: SecondFactorGate,
    ) -> None:
        self._guard = guard
        self._second_factor = second_factor
        self._uow_factory = uow_factory
        # Units of work that only read (one round trip per SELECT where the store allows).
        self._read_uow_factory = read_uow_factory
        # A password login's lookup and, without a hash upgrade, its write: one statement
        # each, no unit of work around them.
        self._sign_in_store = sign_in
        self._hash_pool = hash_pool
        self._access_tokens = access_tokens
        self._refresh = RefreshRotation(
            uow_factory=uow_factory,
            access_tokens=access_tokens,
            key_ring=key_ring,
            idle_ttl=idle_ttl,
            reuse_grace=reuse_grace,
        )
        self._policy = policy
        self._refresh_ttl = timedelta(seconds=refresh_ttl)
        # Absolute lifetime of a session (an OAuth grant session too).
        self.session_lifetime = self._refresh_ttl
        self._require_verified_email = require_verified_email

    async def login(
        self, email: str, password: str, client: ClientInfo
    ) -> TokenPair | MfaChallenge:
        """Checks the password; starts a session, or asks for a second step (issue 15)."""
        user, status, new_hash = await self._check_password(email, password, client)
        challenge = await self._second_step(user, status, new_hash, client, channel="api")
        if challenge is not None:
            return challenge
        return await self._sign_in(user, new_hash, client, amr=("pwd",))

    async def login_browser(
        self, email: str, password: str, client: ClientInfo
    ) -> Session | MfaChallenge:
        """The same check as :meth:`login`, for a hosted page: a session and no tokens.

        Throttling, the silent lock, the second step and the audit rows are those of
        :meth:`login` (one code path); the browser proves the session with a cookie.
        """
        user, status, new_hash = await self._check_password(email, password, client)
        challenge = await self._second_step(user, status, new_hash, client, channel="ui")
        if challenge is not None:
            return challenge
        return await self._sign_in_browser(user, new_hash, client, amr=("pwd",))

    async def _second_step(
        self,
        user: User,
        status: MfaStatus,
        new_hash: str | None,
        client: ClientInfo,
        *,
        channel: str,
    ) -> MfaChallenge | None:
        challenge = await self._second_factor.challenge(user, status, client, channel=channel)
        if challenge is not None and new_hash is not None and user.password_hash is not None:
            # The password was right: its hash upgrade need not wait for the second step,
            # but it must not undo a password change that landed since the check.
            async with self._uow_factory() as uow:
                await uow.users.upgrade_password_hash(
                    user.id, user.password_hash, new_hash, utcnow()
                )
                await uow.commit()
        return challenge

    async def finish_sign_in(
        self,
        user_id: uuid.UUID,
        client: ClientInfo,
        *,
        amr: tuple[str, ...],
        epoch: int | None,
    ) -> TokenPair:
        """Starts a first-party session for a user whose credentials were checked elsewhere:
        a second step (``epoch``: the ``session_epoch`` the password check read) or a
        passwordless passkey (``epoch`` None).

        Raises:
            AuthenticationFailed: The account is gone, disabled, locked, unverified where
                verification is required, or every session of it ended since ``epoch``.
        """
        user = await self._usable_user(user_id, epoch)
        return await self._sign_in(user, None, client, amr=amr)

    async def finish_browser_sign_in(
        self,
        user_id: uuid.UUID,
        client: ClientInfo,
        *,
        amr: tuple[str, ...],
        epoch: int | None,
    ) -> Session:
        """:meth:`finish_sign_in` for a hosted page: a browser session, no tokens."""
        user = await self._usable_user(user_id, epoch)
        return await self._sign_in_browser(user, None, client, amr=amr)

    async def _usable_user(self, user_id: uuid.UUID, epoch: int | None) -> User:
        async with self._read_uow_factory() as uow:
            user = await uow.users.get(user_id)
        if (
            user is None
            or user.disabled
            or user.locked(utcnow())
            or (epoch is not None and user.session_epoch != epoch)
        ):
            raise AuthenticationFailed
        if self._require_verified_email and not user.email_verified:
            raise EmailNotVerified
        return user

    async def _sign_in(
        self, user: User, new_hash: str | None, client: ClientInfo, *, amr: tuple[str, ...]
    ) -> TokenPair:
        session, refresh_token = await self._open_session(
            user, new_hash, client, channel="api", amr=amr, refresh=True
        )
        assert refresh_token is not None  # noqa: S101  (refresh=True always mints one)
        await self._access_tokens.prepare_signing()
        return self._pair(user, session, refresh_token)

    async def _sign_in_browser(
        self, user: User, new_hash: str | None, client: ClientInfo, *, amr: tuple[str, ...]
    ) -> Session:
        session, _ = await self._open_session(user, new_hash, client, channel="ui", amr=amr)
        return session

    async def _check_password(
        self, email: str, password: str, client: ClientInfo
    ) -> tuple[User, MfaStatus, str | None]:
        """The one password check of every login: throttle, equal work, lock, audit.

        Returns:
            The user, its second factors and, when the stored hash needs an upgrade, the
            new hash.
        """
        email = normalize_email(email)
        await self._guard.before(email, client)
        # A pure read: the session and audit writes come after the hash.
        found = await self._sign_in_store.read(email)
        user, status = found if found is not None else (None, _NO_FACTORS)
        now = utcnow()
        # A locked account does the same work and answers exactly like a wrong password.
        usable = (
            user is not None
            and not user.disabled
            and user.password_hash is not None
            and not user.locked(now)
        )
        if not self._policy.may_match(password):
            # Over the cap: it can never match, so it never reaches the hasher.
            result_ok, rehash = False, False
        else:
            result = await self._hash_pool.verify(
                user.password_hash if usable and user is not None else None, password
            )
            result_ok, rehash = result.ok, result.needs_rehash
        if not result_ok or not usable or user is None:
            LOGINS.labels("failure").inc()
            await self._guard.failed(email, user, client, event="login.failed", factor="pwd")
            raise AuthenticationFailed
        if self._require_verified_email and not user.email_verified:
            LOGINS.labels("unverified").inc()
            raise EmailNotVerified
        new_hash = await self._hash_pool.hash(password) if rehash else None
        return user, status, new_hash

    async def _open_session(
        self,
        user: User,
        new_hash: str | None,
        client: ClientInfo,
        *,
        channel: str,
        amr: tuple[str, ...],
        refresh: bool = False,
    ) -> tuple[Session, str | None]:
        """Opens the session of a sign-in under the user's ``session_epoch`` as the check
        read it, with its first refresh token when ``refresh``, and audits it."""
        now = utcnow()
        session = Session(
            id=uuid.uuid4(),
            user_id=user.id,
            created_at=now,
            last_seen_at=now,
            expires_at=now + self._refresh_ttl,
            auth_time=now,
            amr=amr,
            ip=client.ip,
            user_agent=(client.user_agent or "")[:512] or None,
        )
        value, token = None, None
        if refresh:
            value, refresh_token, digest = self._refresh.first_token(session)
            token = (refresh_token, digest)
        event = AuditRecord(
            "login.succeeded",
            now,
            user.id,
            session.id,
            client.ip,
            {"factor": "+".join(amr), "channel": channel},
        )
        epoch = user.session_epoch
        if new_hash is None:
            opened = await self._sign_in_store.open(session, token, event, epoch=epoch)
        else:
            async with self._uow_factory() as uow:
                # Transparent upgrade of imported bcrypt or older argon2 parameters, in one
                # transaction with the session: if that cannot open, neither is written.
                await uow.users.set_password_hash(user.id, new_hash, now)
                opened = await uow.sessions.open_signed_in(session, token, event, epoch=epoch)
                if opened:
                    await uow.commit()
        if not opened:
            # Every session of the account ended (or it was locked, disabled or deleted)
            # after the password was checked: the ordinary failure, nothing written. Not
            # counted against the account: the password was right (issue 12 finding 20).
            LOGINS.labels("failure").inc()
            log.info("login_lost_race_with_account_event", user_id=str(user.id))
            raise AuthenticationFailed
        LOGINS.labels("success").inc()
        return session, value

    async def open_grant(
        self, uow: UnitOfWork, session: Session, *, epoch: int, refresh: bool
    ) -> str | None:
        """Stores an OAuth grant session (``session.client_id`` set) in ``uow``.

        The grant's refresh tokens are ordinary refresh tokens of that session, so they
        rotate under :meth:`rotate` with every rule of DESIGN.md section 4.

        Args:
            uow: The caller's unit of work.
            session: The grant session.
            epoch: The user's ``session_epoch`` as the caller read it.
            refresh: Whether to mint a first refresh token.

        Returns:
            The first refresh token when ``refresh``, else None.

        Raises:
            AuthenticationFailed: The account is gone, disabled or locked, or every session
                of it ended since ``epoch`` was read (nothing written).
        """
        if not await uow.sessions.add(session, epoch=epoch):
            raise AuthenticationFailed
        return await self._add_refresh_token(uow, session) if refresh else None

    async def _add_refresh_token(self, uow: UnitOfWork, session: Session) -> str:
        value, token, digest = self._refresh.first_token(session)
        await uow.refresh_tokens.add(token, digest)
        return value

    def _pair(self, user: User, session: Session, refresh_token: str) -> TokenPair:
        return TokenPair(
            access_token=self._access_tokens.issue(user, session),
            expires_in=self._access_tokens.ttl,
            refresh_token=refresh_token,
            user=user,
        )

    def session_live(self, session: Session | None, now: datetime) -> bool:
        """Not revoked, within its absolute lifetime and used within the idle timeout."""
        return self._refresh.session_live(session, now)

    async def refresh(self, refresh_token: str, client: ClientInfo) -> TokenPair:
        """Rotates a refresh token with the grace and reuse rules of DESIGN.md section 4."""
        user, session, successor = await self.rotate(refresh_token, client, client_id=None)
        await self._access_tokens.prepare_signing()
        return self._pair(user, session, successor)

    async def rotate(
        self,
        refresh_token: str,
        client: ClientInfo,
        *,
        client_id: str | None,
        check: Callable[[Session, frozenset[str]], Session] | None = None,
    ) -> tuple[User, Session, str]:
        """The one refresh-token rotation (DESIGN.md section 4), first-party and OAuth alike.

        Args:
            refresh_token: The presented token.
            client: Where the request came from.
            client_id: The OAuth client the token must belong to (``/oauth2/token``), or
                None for a first-party token (``/v1/auth/refresh``). A token of another
                client, or of the other kind, is refused like an unknown one.
            check: Runs on the live session and the user's current permissions before
                anything is written and returns the session as the grant now stands; what
                it raises ends the request with the token unrotated (``/oauth2/token``
                checks the requested scope and narrows the grant to what the user and the
                client still hold here, so a refused scope never costs the client its
                token).

        Returns:
            The user, the session (as ``check`` returned it) and the successor token (the
            same successor again when the grace window applies).

        Raises:
            RateLimited: Too many failures from this IP.
            InvalidRefreshToken: Unknown, foreign, expired or reused (the family revoked).
        """
        # Refresh tokens are credentials too: failures per IP are throttled like passwords.
        await self._guard.before(REFRESH_ACCOUNT, client)
        try:
            return await self._refresh.rotate(refresh_token, client, client_id, check)
        except InvalidRefreshToken:
            await self._guard.failed(
                REFRESH_ACCOUNT, None, client, event="refresh.failed", factor="refresh_token"
            )
            raise

    async def logout(self, principal: Principal, client: ClientInfo) -> None:
        session_id = principal.session_id
        if session_id is None:
            raise PermissionDenied("An API key has no session to end; revoke the key instead.")
        now = utcnow()
        async with self._uow_factory() as uow:
            await uow.sessions.revoke(session_id, now, "logout")
            await uow.audit.record(
                "logout",
                now=now,
                user_id=principal.user_id,
                session_id=session_id,
                ip=client.ip,
            )
            await uow.commit()
        await self._access_tokens.deny([session_id])
