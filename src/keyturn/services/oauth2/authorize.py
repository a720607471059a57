"""The authorization endpoint's decisions (RFC 6749 section 4.1.1, OIDC Core section 3.1.2).

Order matters (RFC 6749 section 4.1.2.1, RFC 9700 section 4.1): ``client_id`` and
``redirect_uri`` are checked first, and a failure there is never sent to any URI
(:class:`UnsafeAuthorizationRequest`, shown to the user instead). Only once the redirect
URI is known to be registered for the client do errors travel back to it.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

import structlog

from keyturn.domain import SELF_SERVICE_SCOPES, AuthorizationCode, Consent, OAuthClient, utcnow
from keyturn.errors import (
    InteractionRequired,
    InvalidScopeRequest,
    OAuthInvalidRequest,
    RequestObjectNotSupported,
    UnauthorizedClient,
    UnsafeAuthorizationRequest,
    UnsupportedResponseType,
)
from keyturn.security import pkce
from keyturn.security.digests import Digester, KeyRing
from keyturn.services.oauth2.browser_sessions import BrowserSession
from keyturn.services.oauth2.client_rules import (
    ALLOWED_SCOPES,
    OIDC_SCOPES,
    registered_redirect,
)
from keyturn.services.oauth2.clients import CLIENT_ID_SHAPE
from keyturn.services.oauth2.id_tokens import IdTokenHints
from keyturn.services.ports import UnitOfWork, UnitOfWorkFactory

log = structlog.get_logger(__name__)

# RFC 9700 section 4.2.1 / RFC 6749 section 4.1.2: short-lived; 60 seconds.
CODE_TTL = timedelta(seconds=60)
# Used and expired codes stay this long: a replay within it still finds the row and
# revokes what the first use issued (RFC 6749 section 4.1.2); older rows are deleted.
CODE_RETENTION = timedelta(days=1)
CODE_DIGEST_PURPOSE = "oauth-authorization-code"
RESPONSE_MODES = ("query", "form_post")
# OpenID Connect Core section 3.1.2.1 prompt values Keyturn acts on.
PROMPTS = frozenset({"none", "login", "consent"})
# Set by Keyturn on the URLs it sends the browser on with (sign-in for prompt=login or
# max_age, consent): the sign-in must be at or after this instant (epoch milliseconds).
# It pins the freshness test to the moment of the authorization request, so signing in
# (or reading the consent page) is never judged again against a later "now": no loop.
AUTH_AFTER = "kt_auth_after"
# OIDC Core section 2 ``acr``: "1" is one authentication factor (the password), the level
# every Keyturn sign-in reaches today; "0" (a long-lived cookie alone) is never claimed.
ONE_FACTOR_ACR = "1"
MAX_STATE = 1024
MAX_NONCE = 512
MAX_LOGIN_HINT = 320
MAX_ID_TOKEN_HINT = 8192
# Scopes every user holds besides their permissions (consent decides the rest).
_USER_SCOPES = frozenset(OIDC_SCOPES) | frozenset(SELF_SERVICE_SCOPES)


class Next(Enum):
    LOGIN = "login"
    CONSENT = "consent"
    ISSUE = "issue"


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    """A validated authorization request (everything the code will remember)."""

    client: OAuthClient
    redirect_uri: str
    state: str | None
    response_mode: str
    scopes: frozenset[str]
    nonce: str | None
    code_challenge: str | None
    prompt: frozenset[str]
    max_age: int | None
    # The instant (epoch ms) the sign-in must not be older than, fixed once per request
    # (:func:`fresh_since`): ``kt_auth_after`` when sent, else request time - max_age.
    auth_after: int | None
    login_hint: str | None
    # The user named by a valid id_token_hint (OIDC Core section 3.1.2.1).
    hinted_user: uuid.UUID | None = None

    @property
    def scope(self) -> str:
        return " ".join(sorted(self.scopes))

    @property
    def is_oidc(self) -> bool:
        return "openid" in self.scopes


@dataclass(frozen=True, slots=True)
class Redirectable:
    """Where an error or a code goes back to (after the redirect URI was validated)."""

    redirect_uri: str
    state: str | None
    response_mode: str
    # Who asks: the sign-in page names the application (client_name, RFC 7591 section 2).
    client_name: str | None = None


def _one(params: Mapping[str, str], name: str, limit: int = 2048) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if len(value) > limit:
        raise OAuthInvalidRequest(f"The {name} parameter is too long.")
    return value


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
        self._hints = hints
        # RFC 9207: the iss of every authorization response.
        self.issuer = issuer
        self._digester = Digester(key_ring, CODE_DIGEST_PURPOSE)

    @property
    def digester(self) -> Digester:
        return self._digester

    async def client_and_redirect(self, params: Mapping[str, str]) -> Redirectable:
        """Step one: the client and its redirect URI (RFC 6749 section 3.1.2.3).

        Raises:
            UnsafeAuthorizationRequest: Unknown client, or a missing, unregistered or
                mismatched redirect URI. Never redirected anywhere.
        """
        client = await self._client(params)
        requested = params.get("redirect_uri")
        if requested is None or requested == "":
            # RFC 6749 section 3.1.2.3: optional only when exactly one URI is registered;
            # OpenID Connect Core section 3.1.2.1 makes it REQUIRED in an OpenID request.
            openid = "openid" in params.get("scope", "").split(" ")
            if openid or len(client.redirect_uris) != 1:
                raise UnsafeAuthorizationRequest("The redirect_uri parameter is missing.")
            redirect_uri = client.redirect_uris[0]
        elif registered_redirect(client, requested):
            # Exact string comparison (RFC 9700 section 4.1.3), no normalisation; only a
            # native client's loopback port may differ (RFC 8252 section 7.3). The code
            # remembers the URI as requested: the token request must repeat it, port
            # included (RFC 6749 section 4.1.3).
            redirect_uri = requested
        else:
            raise UnsafeAuthorizationRequest("The redirect_uri is not registered for this client.")
        mode = params.get("response_mode") or "query"
        # An unknown mode cannot carry the error either: answer it in the query.
        return Redirectable(
            redirect_uri=redirect_uri,
            state=params.get("state") or None,
            response_mode=mode if mode in RESPONSE_MODES else "query",
            client_name=client.client_name,
        )

    async def _client(self, params: Mapping[str, str]) -> OAuthClient:
        client_id = params.get("client_id", "")
        found = None
        if CLIENT_ID_SHAPE.match(client_id):
            async with self._uow_factory() as uow:
                found = await uow.clients.find(client_id)
        if found is None:
            raise UnsafeAuthorizationRequest("The client_id is missing or unknown.")
        return found[0]

    async def parse(self, params: Mapping[str, str], target: Redirectable) -> AuthorizationRequest:
        """Step two: every other parameter; errors here go back to the redirect URI.

        Raises:
            OAuthError: ``unsupported_response_type``, ``unauthorized_client``,
                ``invalid_request`` or ``invalid_scope`` (RFC 6749 section 4.1.2.1).
        """
        client = await self._client(params)
        for parameter in ("request", "request_uri"):
            # OIDC Core section 6.1/6.2: refusing beats ignoring, which would act on the
            # outer parameters while the client meant the signed ones.
            if params.get(parameter):
                raise RequestObjectNotSupported(parameter)
        if (params.get("response_mode") or "query") not in RESPONSE_MODES:
            raise OAuthInvalidRequest("response_mode must be query or form_post.")
        if len(target.state or "") > MAX_STATE:
            raise OAuthInvalidRequest("The state parameter is too long.")
        response_type = params.get("response_type")
        if not response_type:
            raise OAuthInvalidRequest("The response_type parameter is missing.")
        if response_type != "code":
            # RFC 6749 section 3.1.1: only the authorization code flow exists here.
            raise UnsupportedResponseType("Only response_type=code is supported.")
        if "code" not in client.response_types or "authorization_code" not in client.grant_types:
            raise UnauthorizedClient("This client may not use the authorization code flow.")
        challenge = _one(params, "code_challenge", 128)
        method = _one(params, "code_challenge_method", 16)
        if challenge is None:
            if method is not None:
                raise OAuthInvalidRequest("code_challenge_method without code_challenge.")
            # RFC 7636 section 4.4.1 / RFC 9700 section 2.1.1: public clients always.
            if client.require_pkce or client.is_public:
                raise OAuthInvalidRequest("PKCE is required: send code_challenge (S256).")
        else:
            # RFC 7636 section 4.3: absent means plain, and plain is never accepted.
            if method != "S256":
                raise OAuthInvalidRequest("code_challenge_method must be S256.")
            if not pkce.challenge_is_valid(challenge):
                raise OAuthInvalidRequest("The code_challenge is not an S256 challenge.")
        scopes = self._scopes(params.get("scope"), client)
        max_age = _seconds(params, "max_age")
        prompt = frozenset((params.get("prompt") or "").split())
        if prompt - PROMPTS:
            raise OAuthInvalidRequest("prompt may hold none, login and consent.")
        if "none" in prompt and len(prompt) > 1:
            # OIDC Core section 3.1.2.1: none with any other value is an error.
            raise OAuthInvalidRequest("prompt=none cannot be combined with other values.")
        return AuthorizationRequest(
            client=client,
            redirect_uri=target.redirect_uri,
            state=target.state,
            response_mode=target.response_mode,
            scopes=scopes,
            nonce=_one(params, "nonce", MAX_NONCE),
            code_challenge=challenge,
            prompt=prompt,
            max_age=max_age,
            auth_after=fresh_since(max_age, _seconds(params, AUTH_AFTER, limit=15)),
            login_hint=_one(params, "login_hint", MAX_LOGIN_HINT),
            hinted_user=await self._hinted_user(params),
        )

    async def _hinted_user(self, params: Mapping[str, str]) -> uuid.UUID | None:
        hint = _one(params, "id_token_hint", MAX_ID_TOKEN_HINT)
        if hint is None:
            return None
        read = await self._hints.read(hint)
        if read is None:
            # OIDC Core section 3.1.2.1 leaves a bad hint's answer open; failing loudly
            # beats signing in whoever holds the browser for a client that named a user.
            raise OAuthInvalidRequest("The id_token_hint is not an ID Token of this server.")
        return read[0]

    @staticmethod
    def _scopes(scope: str | None, client: OAuthClient) -> frozenset[str]:
        allowed = frozenset(client.scope.split())
        if scope is None or scope == "":
            # RFC 6749 section 3.3: the registered scope is the documented default.
            return allowed
        requested = frozenset(scope.split(" "))
        if "openid" in requested:
            # OIDC Core section 3.1.2.1: scope values the server does not understand
            # (address, phone, another provider's names) SHOULD be ignored. Only those:
            # a known scope beyond the client's registration is still refused below.
            requested &= ALLOWED_SCOPES | {""}
        # RFC 6749 section 3.3: a plain OAuth request naming an unknown scope is refused
        # (never silently narrowed: without openid nothing says the client expects that).
        if "" in requested or not requested <= allowed:
            raise InvalidScopeRequest("The scope is malformed or beyond the client's scope.")
        return requested

    async def next_step(
        self, request: AuthorizationRequest, browser: BrowserSession | None
    ) -> tuple[Next, Consent | None]:
        """Sign-in, consent or a code (OIDC Core sections 3.1.2.3 and 3.1.2.4).

        Raises:
            InteractionRequired: ``prompt=none`` and the user would have to act
                (``login_required`` / ``consent_required``, section 3.1.2.6).
        """
        none = "none" in request.prompt
        if browser is None or self.needs_login(request, browser):
            if none:
                raise InteractionRequired("login_required", "The user is not signed in.")
            return Next.LOGIN, None
        consent = await self.covering_consent(request, browser)
        if consent is None or "consent" in request.prompt:
            if none:
                raise InteractionRequired("consent_required", "The user has not consented.")
            return Next.CONSENT, None
        return Next.ISSUE, consent

    @staticmethod
    def needs_login(request: AuthorizationRequest, browser: BrowserSession) -> bool:
        """Whether the user must sign in (again) for this request."""
        if "login" in request.prompt:
            return True
        # OIDC Core section 3.1.2.1 id_token_hint: a positive answer only for the hinted
        # user; anyone else signed in must sign in as that user (or, with prompt=none,
        # the client gets login_required).
        if request.hinted_user is not None and request.hinted_user != browser.user.id:
            return True
        floor = request.auth_after
        return floor is not None and browser.auth_time.timestamp() * 1000 < floor

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


def fresh_since(max_age: int | None, auth_after: int | None) -> int | None:
    """The instant (epoch ms) a sign-in must not be older than, if any.

    OIDC Core section 3.1.2.1 ``max_age`` counts back from the authorization request, so
    the first pass through the endpoint pins it as :data:`AUTH_AFTER` on the URLs it sends
    the browser on with, and later passes (after signing in, on the consent page) keep
    that pin instead of counting back from their own "now" again: else ``max_age=0``
    would ask for a sign-in forever, and a consent slower than ``max_age`` would be sent
    back to sign in. The pin travels through the browser like ``max_age`` itself: a user
    who edits it could as well drop ``max_age``, so the relying party checks
    ``auth_time`` (section 3.1.3.7 item 13), which the ID Token always carries.
    """
    if auth_after is not None:
        return auth_after
    if max_age is None:
        return None
    return int(utcnow().timestamp() * 1000) - max_age * 1000


def acr_for(amr: tuple[str, ...]) -> str | None:
    """The ``acr`` a sign-in with these methods reaches (OIDC Core section 2)."""
    return ONE_FACTOR_ACR if "pwd" in amr else None


def _seconds(params: Mapping[str, str], name: str, *, limit: int = 12) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if not value.isascii() or not value.isdigit() or len(value) > limit:
        raise OAuthInvalidRequest(f"{name} must be a non-negative number of seconds.")
    return int(value)


__all__ = [
    "AUTH_AFTER",
    "ONE_FACTOR_ACR",
    "AuthorizationRequest",
    "AuthorizationService",
    "Next",
    "Redirectable",
    "acr_for",
    "fresh_since",
]
