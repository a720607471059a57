"""The token endpoint's grants (RFC 6749 section 4): the dispatch, refresh_token (section 6)
and client_credentials (section 4.4); authorization_code (4.1.3) is ``code_grant.py``.

Every failure of a grant counts through the credential guard, and every issued grant is
audited with user and client ids only (``issuing.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import replace

from keyturn.domain import ClientInfo, OAuthClient, Session, utcnow
from keyturn.domain_mfa import acr_for
from keyturn.errors import (
    InvalidGrant,
    InvalidRefreshToken,
    InvalidScopeRequest,
    OAuthInvalidRequest,
    UnauthorizedClient,
    UnsupportedGrantType,
)
from keyturn.services.accounts import AccessTokenService, AuthService, CredentialGuard
from keyturn.services.audit_batch import AuditBatch
from keyturn.services.oauth2.authorize import AuthorizationService
from keyturn.services.oauth2.code_grant import AuthorizationCodeGrant
from keyturn.services.oauth2.grant_scope import (
    refreshable,
    seconds_until_past_revocation,
    user_grant_scope,
)
from keyturn.services.oauth2.id_tokens import IdTokenSigner
from keyturn.services.oauth2.issuing import GrantIssuing, TokenResponse
from keyturn.services.ports import UnitOfWorkFactory

GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")


class TokenService:
    """Issues tokens to authenticated clients."""

    def __init__(
        self,
        *,
        uow_factory: UnitOfWorkFactory,
        auth: AuthService,
        authorizations: AuthorizationService,
        access_tokens: AccessTokenService,
        id_tokens: IdTokenSigner,
        guard: CredentialGuard,
        issuer: str,
        audit_batch: AuditBatch,
    ) -> None:
        self._auth = auth
        self._access_tokens = access_tokens
        self._issuing = GrantIssuing(
            uow_factory=uow_factory,
            access_tokens=access_tokens,
            id_tokens=id_tokens,
            issuer=issuer,
            audit_batch=audit_batch,
        )
        self._code_grant = AuthorizationCodeGrant(
            uow_factory=uow_factory,
            auth=auth,
            codes=authorizations.digester,
            access_tokens=access_tokens,
            issuing=self._issuing,
            guard=guard,
        )

    async def grant(
        self, client: OAuthClient, form: Mapping[str, str], info: ClientInfo
    ) -> TokenResponse:
        """Dispatches on ``grant_type`` (RFC 6749 section 4).

        Raises:
            OAuthError: ``unsupported_grant_type``, ``unauthorized_client``,
                ``invalid_grant``, ``invalid_scope`` or ``invalid_request``.
        """
        grant_type = form.get("grant_type", "")
        if not grant_type:
            raise OAuthInvalidRequest("The grant_type parameter is missing.")
        if grant_type not in GRANT_TYPES:
            raise UnsupportedGrantType(f"Supported grant types: {', '.join(GRANT_TYPES)}.")
        if grant_type not in client.grant_types:
            raise UnauthorizedClient(f"This client may not use the {grant_type} grant.")
        delay = seconds_until_past_revocation(client, utcnow())
        if delay > 0:
            # Right after a "revoke old tokens" rotation (within its second): a token
            # issued now would carry the same whole-second iat as the dead ones and be
            # refused with them, so it is issued in the next second instead.
            await asyncio.sleep(delay)
        await self._access_tokens.prepare_signing()
        if grant_type == "authorization_code":
            return await self._code_grant.grant(client, form, info)
        if grant_type == "refresh_token":
            return await self._refresh(client, form, info)
        return await self._client_credentials(client, form, info)

    # -- RFC 6749 section 6 ---------------------------------------------------------------

    async def _refresh(
        self, client: OAuthClient, form: Mapping[str, str], info: ClientInfo
    ) -> TokenResponse:
        value = form.get("refresh_token", "")
        if not value:
            raise OAuthInvalidRequest("The refresh_token parameter is missing.")
        requested = form.get("scope")
        wanted = frozenset(requested.split(" ")) if requested else None

        def within_grant(session: Session, held: frozenset[str]) -> Session:
            # Section 6: narrower is allowed, wider never; checked before the rotation.
            granted = frozenset((session.scope or "").split())
            if wanted is not None and ("" in wanted or not wanted <= granted):
                raise InvalidScopeRequest("The scope exceeds what was granted.")
            # The grant as the user and the client stand now (issue 12 finding 3): a lost
            # role or a cut registration takes its scopes out of every later token.
            current = user_grant_scope(session.scope or "", client, held)
            if not refreshable(current):
                raise InvalidGrant("The grant no longer covers what was granted.")
            if wanted is not None and not wanted & current:
                raise InvalidScopeRequest("The grant no longer covers the requested scope.")
            return replace(session, scope=" ".join(sorted(current)))

        try:
            # The one rotation of DESIGN.md section 4 (grace, reuse, lifetimes), bound to
            # this client.
            user, session, successor = await self._auth.rotate(
                value, info, client_id=client.client_id, check=within_grant
            )
        except InvalidRefreshToken as exc:
            raise InvalidGrant(exc.detail) from exc
        current = frozenset((session.scope or "").split())
        # A requested scope the grant no longer covers is left out (RFC 6749 section 3.3:
        # the answer's scope says what was issued).
        scope = " ".join(sorted(wanted & current)) if wanted is not None else session.scope or ""
        access = self._access_tokens.issue_for_client(
            subject=str(user.id), client_id=client.client_id, scope=scope, session=session
        )
        id_token = None
        if "openid" in scope.split():
            # OIDC Core section 12.2: the same iss, sub, aud and auth_time as at sign-in, a
            # new iat, no nonce (errata set 2: SHOULD NOT), no sid (the grant session is
            # not the browser session the first ID Token named).
            id_token = self._issuing.id_token(
                client,
                user,
                access,
                utcnow(),
                auth_time=session.auth_time,
                amr=session.amr,
                acr=acr_for(session.amr),
            )
        await self._issuing.audit(
            "refresh_token", client, info, user_id=user.id, session_id=session.id
        )
        return TokenResponse(
            access_token=access,
            expires_in=self._access_tokens.ttl,
            scope=scope,
            refresh_token=successor,
            id_token=id_token,
        )

    # -- RFC 6749 section 4.4 -------------------------------------------------------------

    async def _client_credentials(
        self, client: OAuthClient, form: Mapping[str, str], info: ClientInfo
    ) -> TokenResponse:
        if client.is_public:
            # Section 4.4: only confidential clients (registration refuses it anyway).
            raise UnauthorizedClient("A public client cannot use client_credentials.")
        allowed = frozenset(client.scope.split()) - {"openid", "offline_access"}
        requested = form.get("scope")
        if requested:
            wanted = frozenset(requested.split(" "))
            if "" in wanted or not wanted <= allowed:
                raise InvalidScopeRequest("The scope is malformed or beyond the client's scope.")
        else:
            wanted = allowed
        scope = " ".join(sorted(wanted))
        access = self._access_tokens.issue_for_client(
            subject=client.client_id, client_id=client.client_id, scope=scope, session=None
        )
        # No database round trip (audit_batch.py); a full queue refuses the grant, and the
        # token signed above then never leaves the process.
        self._issuing.audit_queued("client_credentials", client, info)
        # Section 4.4.3: no refresh token.
        return TokenResponse(access_token=access, expires_in=self._access_tokens.ttl, scope=scope)
