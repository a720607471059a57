"""The authorization endpoint's decisions (RFC 6749 section 4.1.1, OIDC Core section 3.1.2):
sign-in, consent or a code, once ``authorization_request.py`` has validated the request."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import Enum

import structlog

from keyturn.domain import SELF_SERVICE_SCOPES, AuthorizationCode, Consent, utcnow
from keyturn.domain_mfa import acr_for
from keyturn.errors import (
    InteractionRequired,
)
from keyturn.security.digests import Digester, KeyRing
from keyturn.services.oauth2.authorization_request import (
    AuthorizationRequest,
    AuthorizationRequests,
    Redirectable,
)
from keyturn.services.oauth2.browser_sessions import BrowserSession
from keyturn.services.oauth2.client_rules import (
    OIDC_SCOPES,
)
from keyturn.services.oauth2.id_tokens import IdTokenHints
from keyturn.services.ports import UnitOfWork, UnitOfWorkFactory

log = structlog.get_logger(__name__)

# RFC 9700 section 4.2.1 / RFC 6749 section 4.1.2: short-lived; 60 seconds.
CODE_TTL = timedelta(seconds=60)
# Used and expired codes stay this long: a replay within it still finds the row and
# revokes what the first use issued (RFC 6749 section 4.1.2); older rows are deleted.
CODE_RETENTION = timedelta(days=1)
CODE_DIGEST_PURPOSE = "oauth-authorization-code"
# Scopes every user holds besides their permissions (consent decides the rest).
_USER_SCOPES = frozenset(OIDC_SCOPES) | frozenset(SELF_SERVICE_SCOPES)


class Next(Enum):
    LOGIN = "login"
    CONSENT = "consent"
    ISSUE = "issue"


class AuthorizationService:
    """Validates authorization requests, remembers consents and issues codes."""

    def __init__(
        self,
        *,
        uow_factory: UnitOfWorkFactory,
        key_ring: KeyRing,
        issuer: str,
        hints: IdTokenHints,
    ) -> None:
        self._uow_factory = uow_factory
        self._requests = AuthorizationRequests(uow_factory=uow_factory, hints=hints)
        # RFC 9207: the iss of every authorization response.
        self.issuer = issuer
        self._digester = Digester(key_ring, CODE_DIGEST_PURPOSE)

    @property
    def digester(self) -> Digester:
        return self._digester

    async def client_and_redirect(self, params: Mapping[str, str]) -> Redirectable:
        """Step one: the client and its redirect URI (``AuthorizationRequests``)."""
        return await self._requests.client_and_redirect(params)

    async def parse(self, params: Mapping[str, str], target: Redirectable) -> AuthorizationRequest:
        """Step two: every other parameter (``AuthorizationRequests``)."""
        return await self._requests.parse(params, target)

    async def next_step(
        self, request: AuthorizationRequest, browser: BrowserSession | None
    ) -> tuple[Next, Consent | None]:
        """Sign-in, consent or a code (OIDC Core sections 3.1.2.3 and 3.1.2.4).

        Raises:
            InteractionRequired: ``prompt=none`` and the user would have to act
                (``login_required`` / ``consent_required``, section 3.1.2.6).
        """
        none = "none" in request.prompt
        if browser is None or await self.needs_login(request, browser):
            if none:
                raise InteractionRequired("login_required", "The user is not signed in.")
            return Next.LOGIN, None
        consent = await self.covering_consent(request, browser)
        if consent is None or "consent" in request.prompt:
            if none:
                raise InteractionRequired("consent_required", "The user has not consented.")
            return Next.CONSENT, None
        return Next.ISSUE, consent

    async def needs_login(self, request: AuthorizationRequest, browser: BrowserSession) -> bool:
        """Whether the user must sign in (again) for this request."""
        if "login" in request.prompt:
            return True
        # OIDC Core section 3.1.2.1 id_token_hint: a positive answer only for the hinted
        # user; anyone else signed in must sign in as that user (or, with prompt=none,
        # the client gets login_required).
        if request.hinted_user is not None and request.hinted_user != browser.user.id:
            return True
        floor = request.auth_after
        if floor is not None and browser.auth_time.timestamp() * 1000 < floor:
            return True
        return await self._needs_step_up(request, browser)

    async def _needs_step_up(self, request: AuthorizationRequest, browser: BrowserSession) -> bool:
        """``acr_values`` asks for more than one factor and this sign-in used one (issue 15).

        Only an account with a factor can step up: for one without, signing in again would
        reach the same level, so the request goes on and the ID Token's ``acr`` says "1"
        (OIDC Core section 3.1.2.1: acr_values is a voluntary request the client checks).
        """
        if not request.wants_mfa or "mfa" in browser.amr:
            return False
        async with self._uow_factory() as uow:
            return (await uow.mfa.status(browser.user.id)).enabled

    async def granted_scopes(self, request: AuthorizationRequest, user_id: uuid.UUID) -> str:
        """Requested scopes the user holds: OIDC and self-service scopes, and the admin
        permissions the user's roles grant (like a personal API key)."""
        async with self._uow_factory() as uow:
            held = await uow.roles.permissions_of(user_id)
        return " ".join(sorted(request.scopes & (_USER_SCOPES | held)))

    async def covering_consent(
        self, request: AuthorizationRequest, browser: BrowserSession
    ) -> Consent | None:
        """The user's consent for this client that covers the request's scopes."""
        wanted = frozenset((await self.granted_scopes(request, browser.user.id)).split())
        async with self._uow_factory() as uow:
            consents = await uow.consents.live_for(browser.user.id, request.client.client_id)
        return next((c for c in consents if c.covers(wanted)), None)

    async def consent_and_issue(
        self, request: AuthorizationRequest, browser: BrowserSession, *, ip: str | None
    ) -> str:
        """The user allowed the request on the consent page: remember it, issue a code."""
        now = utcnow()
        scope = await self.granted_scopes(request, browser.user.id)
        consent = Consent(
            id=uuid.uuid4(),
            user_id=browser.user.id,
            client_id=request.client.client_id,
            scope=scope,
            created_at=now,
        )
        async with self._uow_factory() as uow:
            await uow.consents.add(consent)
            await uow.audit.record(
                "oauth.consent_granted",
                now=now,
                user_id=browser.user.id,
                session_id=browser.session_id,
                ip=ip,
                data={"client_id": request.client.client_id, "scope": scope},
            )
            code = await self._issue(uow, request, browser, consent, scope, now)
            await uow.commit()
        return code

    async def issue(
        self, request: AuthorizationRequest, browser: BrowserSession, consent: Consent
    ) -> str:
        """A code for a request an earlier consent covers."""
        now = utcnow()
        scope = await self.granted_scopes(request, browser.user.id)
        async with self._uow_factory() as uow:
            code = await self._issue(uow, request, browser, consent, scope, now)
            await uow.commit()
        return code

    async def prune_codes(self) -> int:
        """Deletes codes that expired more than :data:`CODE_RETENTION` ago."""
        async with self._uow_factory() as uow:
            pruned = await uow.authorization_codes.delete_expired(utcnow() - CODE_RETENTION)
            await uow.commit()
        if pruned:
            log.info("authorization_codes_pruned", count=pruned)
        return pruned

    async def deny(
        self, request: AuthorizationRequest, browser: BrowserSession, *, ip: str | None
    ) -> None:
        async with self._uow_factory() as uow:
            await uow.audit.record(
                "oauth.consent_denied",
                now=utcnow(),
                user_id=browser.user.id,
                session_id=browser.session_id,
                ip=ip,
                data={"client_id": request.client.client_id},
            )
            await uow.commit()

    async def _issue(
        self,
        uow: UnitOfWork,
        request: AuthorizationRequest,
        browser: BrowserSession,
        consent: Consent,
        scope: str,
        now: datetime,
    ) -> str:
        # RFC 6749 section 10.10: 256 random bits; only the keyed digest is stored.
        value = secrets.token_urlsafe(32)
        record = AuthorizationCode(
            id=uuid.uuid4(),
            client_id=request.client.client_id,
            user_id=browser.user.id,
            browser_session_id=browser.session_id,
            redirect_uri=request.redirect_uri,
            scope=scope,
            nonce=request.nonce,
            code_challenge=request.code_challenge,
            auth_time=browser.auth_time,
            amr=browser.amr,
            acr=acr_for(browser.amr),
            consent_id=consent.id,
            created_at=now,
            expires_at=now + CODE_TTL,
        )
        await uow.authorization_codes.add(record, self._digester.digest(value))
        return value


__all__ = ["AuthorizationService", "Next"]
