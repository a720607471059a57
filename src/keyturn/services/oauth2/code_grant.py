"""The authorization code grant at the token endpoint (RFC 6749 section 4.1.3, RFC 7636,
OIDC Core 3.1.3): a code is spent by its first use, whatever fails after, and a replay
revokes what the first use issued."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime

import structlog

from keyturn.domain import AuthorizationCode, ClientInfo, OAuthClient, Session, User, utcnow
from keyturn.errors import AuthenticationFailed, InvalidGrant, OAuthInvalidRequest
from keyturn.security import pkce
from keyturn.security.digests import Digester
from keyturn.services.accounts import AccessTokenService, AuthService, CredentialGuard
from keyturn.services.oauth2.client_uris import registered_redirect
from keyturn.services.oauth2.grant_scope import user_grant_scope
from keyturn.services.oauth2.issuing import GrantIssuing, TokenResponse
from keyturn.services.ports import UnitOfWork, UnitOfWorkFactory

log = structlog.get_logger(__name__)

# secrets.token_urlsafe(32): anything else is refused before any lookup.
CODE_SHAPE = re.compile(r"^[A-Za-z0-9_-]{43}$")
# Failed code redemptions name no account: counted per client IP like refresh tokens.
CODE_ACCOUNT = "oauth-code"


class AuthorizationCodeGrant:
    """Redeems authorization codes; every failure counts through the credential guard."""

    def __init__(
        self,
        *,
        uow_factory: UnitOfWorkFactory,
        auth: AuthService,
        codes: Digester,
        access_tokens: AccessTokenService,
        issuing: GrantIssuing,
        guard: CredentialGuard,
    ) -> None:
        self._uow_factory = uow_factory
        self._auth = auth
        self._codes = codes
        self._access_tokens = access_tokens
        self._issuing = issuing
        self._guard = guard

    async def grant(
        self, client: OAuthClient, form: Mapping[str, str], info: ClientInfo
    ) -> TokenResponse:
        await self._guard.before(CODE_ACCOUNT, info)
        try:
            return await self._redeem(client, form, info)
        except InvalidGrant:
            await self._guard.failed(
                CODE_ACCOUNT,
                None,
                info,
                event="oauth.code_failed",
                factor="authorization_code",
                data={"client_id": client.client_id},
            )
            raise

    async def _redeem(
        self, client: OAuthClient, form: Mapping[str, str], info: ClientInfo
    ) -> TokenResponse:
        value = form.get("code", "")
        if not value:
            raise OAuthInvalidRequest("The code parameter is missing.")
        if not CODE_SHAPE.match(value):
            raise InvalidGrant("The authorization code is not valid.")
        now = utcnow()
        async with self._uow_factory() as uow:
            code = await uow.authorization_codes.find(self._codes.candidates(value))
            if code is None or code.client_id != client.client_id:
                # Another client's code answers like an unknown one (section 4.1.3).
                raise InvalidGrant("The authorization code is not valid.")
            # The user row first, locked to the commit (issue 12 finding 20): the order
            # sessions.revoke_all takes (user, then sessions and codes), so a password
            # change or logout everywhere either commits before these checks read its
            # result or waits for this grant and then revokes it; never a deadlock.
            owner = await uow.users.get(code.user_id, lock=True)
            if not await uow.authorization_codes.consume(code.id, now):
                # Read it again: a concurrent winner may have committed after our first
                # read (our UPDATE waited for its row lock), and only the fresh row names
                # the session the winner opened, which this replay must revoke.
                spent = await uow.authorization_codes.find(self._codes.candidates(value))
                await self._replayed(uow, spent or code, info, now)
                raise InvalidGrant("The authorization code was already used.")
            # From here on the code is spent, whatever fails (a failed PKCE check burns
            # it: authentik CVE-2023-48228, RFC 9700 section 4.8).
            try:
                self._check_code(code, client, form, now)
                user = await self._approved_by_live_session(uow, code, owner, now)
                # What the user and the client still hold (a role or a registered scope
                # may have gone since the consent): the grant starts with no more than that.
                held = await uow.roles.permissions_of(user.id)
                scope = " ".join(sorted(user_grant_scope(code.scope, client, held)))
                response, session = await self._issue_for_code(
                    uow, client, replace(code, scope=scope), user, info, now
                )
            except _Burned as burned:
                await uow.commit()
                raise burned.error from None
            await uow.authorization_codes.set_issued_session(code.id, session.id)
            await uow.audit.record(
                "oauth.token_issued",
                now=now,
                user_id=user.id,
                session_id=session.id,
                ip=info.ip,
                data={"client_id": client.client_id, "grant_type": "authorization_code"},
            )
            await uow.commit()
        return response

    async def _approved_by_live_session(
        self, uow: UnitOfWork, code: AuthorizationCode, user: User | None, now: datetime
    ) -> User:
        """The account, if it and the browser session that approved the code are still good.

        A code approved by a session that has ended since (logout, a password change or
        reset, "end my other sessions", a lock) is refused (issue 12 finding 21): whoever
        stole that session's cookie gets no 30-day grant out of a code minted a moment
        before the owner recovered.
        """
        if user is None or user.disabled or user.locked(now):
            raise _Burned(InvalidGrant("The authorization code is not valid."))
        # Locked to the commit: a logout of this one session waits for the grant (and the
        # grant's session is then the user's to end), or is seen here.
        approving = await uow.sessions.get(code.browser_session_id, lock=True)
        if approving is None or not self._auth.session_live(approving, now):
            raise _Burned(InvalidGrant("The sign-in that approved this code has ended."))
        return user

    def _check_code(
        self, code: AuthorizationCode, client: OAuthClient, form: Mapping[str, str], now: datetime
    ) -> None:
        # _Burned: the caller commits the consumed code before raising the OAuth error.
        if now >= code.expires_at:
            raise _Burned(InvalidGrant("The authorization code has expired."))
        if not registered_redirect(client, code.redirect_uri):
            # The URI was unregistered after the code was sent there (RFC 6749 section
            # 3.1.2.2: only registered redirection endpoints receive grants); a native
            # client's loopback port may still differ (RFC 8252 section 7.3).
            raise _Burned(InvalidGrant("The redirect_uri is no longer registered."))
        redirect_uri = form.get("redirect_uri")
        if redirect_uri is None:
            # RFC 6749 section 4.1.3: required when the request had one; Keyturn accepts
            # its absence only when the client has that single URI registered.
            if client.redirect_uris != (code.redirect_uri,):
                raise _Burned(OAuthInvalidRequest("The redirect_uri parameter is missing."))
        elif redirect_uri != code.redirect_uri:
            raise _Burned(InvalidGrant("The redirect_uri differs from the authorization request."))
        verifier = form.get("code_verifier")
        if code.code_challenge is None:
            if verifier is not None:
                # RFC 9700 section 2.1.1: a verifier without a challenge is a downgrade.
                raise _Burned(InvalidGrant("No code_challenge was sent with this request."))
        elif verifier is None or not pkce.verify(verifier, code.code_challenge):
            # RFC 7636 section 4.6.
            raise _Burned(InvalidGrant("The code_verifier does not match the code_challenge."))

    async def _replayed(
        self, uow: UnitOfWork, code: AuthorizationCode, info: ClientInfo, now: datetime
    ) -> None:
        """RFC 6749 section 4.1.2: a second use revokes what the first use issued."""
        revoked = False
        if code.issued_session_id is not None:
            revoked = await uow.sessions.revoke(code.issued_session_id, now, "code_replayed")
        await uow.audit.record(
            "oauth.code_replayed",
            now=now,
            user_id=code.user_id,
            session_id=code.issued_session_id,
            ip=info.ip,
            data={"client_id": code.client_id},
        )
        await uow.commit()
        if code.issued_session_id is not None:
            await self._access_tokens.deny([code.issued_session_id])
        log.warning("authorization_code_replayed", revoked=revoked)

    async def _issue_for_code(
        self,
        uow: UnitOfWork,
        client: OAuthClient,
        code: AuthorizationCode,
        user: User,
        info: ClientInfo,
        now: datetime,
    ) -> tuple[TokenResponse, Session]:
        scopes = code.scope.split()
        session = Session(
            id=uuid.uuid4(),
            user_id=user.id,
            created_at=now,
            last_seen_at=now,
            expires_at=now + self._auth.session_lifetime,
            auth_time=code.auth_time,
            amr=code.amr,
            ip=info.ip,
            user_agent=(info.user_agent or "")[:512] or None,
            client_id=client.client_id,
            scope=code.scope,
            consent_id=code.consent_id,
        )
        # OIDC Core section 11: a refresh token only with offline_access and the grant.
        wants_refresh = "offline_access" in scopes and "refresh_token" in client.grant_types
        try:
            refresh = await self._auth.open_grant(
                uow, session, epoch=user.session_epoch, refresh=wants_refresh
            )
        except AuthenticationFailed:
            # The account changed between the read and the insert (the row lock taken in
            # _redeem rules this out on PostgreSQL; kept as the insert's own guarantee).
            raise _Burned(InvalidGrant("The authorization code is not valid.")) from None
        access = self._access_tokens.issue_for_client(
            subject=str(user.id), client_id=client.client_id, scope=code.scope, session=session
        )
        id_token = None
        if "openid" in scopes:
            id_token = self._issuing.id_token(
                client,
                user,
                access,
                now,
                auth_time=code.auth_time,
                amr=code.amr,
                acr=code.acr,
                nonce=code.nonce,
                sid=code.browser_session_id,
            )
        response = TokenResponse(
            access_token=access,
            expires_in=self._access_tokens.ttl,
            scope=code.scope,
            refresh_token=refresh,
            id_token=id_token,
        )
        return response, session


class _Burned(Exception):
    """A check failed after the code was consumed: commit the burn, then raise ``error``."""

    def __init__(self, error: InvalidGrant | OAuthInvalidRequest) -> None:
        super().__init__(error.detail)
        self.error = error
