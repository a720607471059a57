"""Browser sessions of the hosted pages: a Keyturn session proven by a cookie, plus CSRF.

A browser session is an ordinary row of the sessions table (the ``Session`` the API
uses: ``amr`` ["pwd"], ``auth_time``), created by the same password check as
``POST /v1/auth/login`` (``AuthService.login_browser``). Its cookie is the session id plus
a MAC (``keyturn.security.browser``). Every request re-checks the session: the deny-list
first (a logout or revocation reaches every replica at once), then the row (revoked,
absolute expiry, idle expiry) and the account (deleted, disabled, locked). So whatever
ends the session elsewhere (API logout of that session, ``DELETE /v1/me/sessions/{id}``,
an admin, a password reset) ends the cookie too.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from keyturn.domain import SELF_SERVICE_SCOPES, ClientInfo, Principal, Session, User, utcnow
from keyturn.domain_mfa import MfaChallenge
from keyturn.security.browser import (
    csrf_token,
    csrf_token_matches,
    new_csrf_secret,
    open_session_cookie,
    seal_session_cookie,
)
from keyturn.security.digests import KeyRing
from keyturn.services.accounts import AccessTokenService, AuthService
from keyturn.services.ports import UnitOfWorkFactory

# last_seen_at is written at most this often per session: a page view is not a DB write.
TOUCH_INTERVAL = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class BrowserSession:
    """The signed-in browser: what ``/oauth2/authorize`` needs to decide.

    Attributes:
        user: The account, as read on this request.
        session: The live session row.
    """

    user: User
    session: Session

    @property
    def session_id(self) -> uuid.UUID:
        return self.session.id

    @property
    def auth_time(self) -> datetime:
        """When the user last proved a credential (OpenID Connect Core ``auth_time``)."""
        return self.session.auth_time

    @property
    def amr(self) -> tuple[str, ...]:
        """Authentication methods of that proof (RFC 8176), e.g. ``("pwd",)``."""
        return self.session.amr

    def principal(self) -> Principal:
        """The caller as the services see an access token of this session."""
        return Principal(
            user_id=self.user.id,
            session_id=self.session.id,
            scopes=frozenset(SELF_SERVICE_SCOPES),
            roles=self.user.roles,
        )


@dataclass(frozen=True, slots=True)
class BrowserLogin:
    """A successful page login: the session and the cookie value that proves it."""

    session: Session
    cookie: str


class BrowserSessions:
    """Login, lookup and logout of cookie sessions; CSRF tokens of the hosted forms."""

    def __init__(
        self,
        *,
        uow_factory: UnitOfWorkFactory,
        auth: AuthService,
        access_tokens: AccessTokenService,
        key_ring: KeyRing,
        idle_ttl: int,
    ) -> None:
        self._uow_factory = uow_factory
        self._auth = auth
        self._access_tokens = access_tokens
        self._session_keys = key_ring.derive("browser-session")
        self._csrf_keys = key_ring.derive("csrf")
        self._idle_ttl = timedelta(seconds=idle_ttl)

    async def login(
        self, email: str, password: str, client: ClientInfo, *, replacing: str | None = None
    ) -> BrowserLogin | MfaChallenge:
        """Checks the password exactly like the API login and opens a cookie session, or
        answers the second step the account needs (issue 15).

        Args:
            email: As typed.
            password: As typed.
            client: The caller (throttling keys and audit rows).
            replacing: The browser's current session cookie, if any: that session ends,
                so a browser holds one session at a time (no fixation of an old one).
        """
        signed_in = await self._auth.login_browser(email, password, client)
        if isinstance(signed_in, MfaChallenge):
            return signed_in
        return await self.adopt(signed_in, client, replacing=replacing)

    async def adopt(
        self, session: Session, client: ClientInfo, *, replacing: str | None
    ) -> BrowserLogin:
        """The cookie for a session a sign-in just opened (password, second step or
        passkey); the browser's previous session (``replacing``) ends."""
        if replacing:
            previous = await self.current(replacing)
            if previous is not None and previous.session_id != session.id:
                await self._end(previous.session, client, reason="replaced")
        cookie = seal_session_cookie(self._session_keys[0], session.id)
        return BrowserLogin(session=session, cookie=cookie)

    async def current(self, cookie: str | None) -> BrowserSession | None:
        """The live session a cookie proves, or None (no cookie, forged, ended, expired).

        Checked on every request; ``/oauth2/authorize`` calls it too.
        """
        session_id = open_session_cookie(self._session_keys, cookie) if cookie else None
        if session_id is None:
            return None
        # The shared deny-list answers first: a logout on another replica counts at once.
        if await self._access_tokens.is_revoked(session_id):
            return None
        now = utcnow()
        async with self._uow_factory() as uow:
            session = await uow.sessions.get(session_id)
            user = await uow.users.get(session.user_id) if session else None
            if session is None or user is None or not self._live(session, user, now):
                return None
            if now - session.last_seen_at >= TOUCH_INTERVAL:
                # Using the session keeps it from idling out, like a refresh does.
                await uow.sessions.touch(session.id, now)
                await uow.commit()
        return BrowserSession(user=user, session=session)

    def _live(self, session: Session, user: User, now: datetime) -> bool:
        return (
            session.revoked_at is None
            and now < session.expires_at
            and now < session.last_seen_at + self._idle_ttl
            # A locked or disabled account keeps no session usable (every pathway).
            and not user.disabled
            and not user.locked(now)
        )

    async def logout(self, cookie: str | None, client: ClientInfo) -> bool:
        """Ends the session the cookie proves; False when there was none to end."""
        current = await self.current(cookie)
        if current is None:
            return False
        await self._end(current.session, client, reason="logout")
        return True

    async def _end(self, session: Session, client: ClientInfo, *, reason: str) -> None:
        now = utcnow()
        async with self._uow_factory() as uow:
            await uow.sessions.revoke(session.id, now, reason)
            await uow.audit.record(
                "logout",
                now=now,
                user_id=session.user_id,
                session_id=session.id,
                ip=client.ip,
                data={"channel": "ui", "reason": reason},
            )
            await uow.commit()
        await self._access_tokens.deny([session.id])

    # -- CSRF (signed double-submit cookie) ---------------------------------------------

    @staticmethod
    def new_csrf_secret() -> str:
        return new_csrf_secret()

    def csrf_token(self, secret: str, purpose: str) -> str:
        return csrf_token(self._csrf_keys[0], secret, purpose)

    def csrf_valid(self, secret: str, purpose: str, presented: str) -> bool:
        return csrf_token_matches(self._csrf_keys, secret, purpose, presented)
