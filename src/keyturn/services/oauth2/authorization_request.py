"""Authorization request validation (RFC 6749 section 4.1.1, OIDC Core section 3.1.2.1).

Order matters (RFC 6749 section 4.1.2.1, RFC 9700 section 4.1): ``client_id`` and
``redirect_uri`` are checked first, and a failure there is never sent to any URI
(:class:`UnsafeAuthorizationRequest`, shown to the user instead). Only once the redirect
URI is known to be registered for the client do errors travel back to it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from keyturn.domain import OAuthClient, utcnow
from keyturn.domain_mfa import MULTI_FACTOR_ACR
from keyturn.errors import (
    InvalidScopeRequest,
    OAuthInvalidRequest,
    RequestObjectNotSupported,
    UnauthorizedClient,
    UnsafeAuthorizationRequest,
    UnsupportedResponseType,
)
from keyturn.security import pkce
from keyturn.services.oauth2.client_rules import ALLOWED_SCOPES
from keyturn.services.oauth2.client_uris import registered_redirect
from keyturn.services.oauth2.clients import CLIENT_ID_SHAPE
from keyturn.services.oauth2.id_tokens import IdTokenHints
from keyturn.services.ports import UnitOfWorkFactory

RESPONSE_MODES = ("query", "form_post")
# OpenID Connect Core section 3.1.2.1 prompt values Keyturn acts on.
PROMPTS = frozenset({"none", "login", "consent"})
# Set by Keyturn on the URLs it sends the browser on with (sign-in for prompt=login or
# max_age, consent): the sign-in must be at or after this instant (epoch milliseconds).
# It pins the freshness test to the moment of the authorization request, so signing in
# (or reading the consent page) is never judged again against a later "now": no loop.
AUTH_AFTER = "kt_auth_after"
MAX_STATE = 1024
MAX_NONCE = 512
MAX_LOGIN_HINT = 320
MAX_ID_TOKEN_HINT = 8192
MAX_ACR_VALUES = 200


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
    # OIDC Core section 3.1.2.1 acr_values, in order of preference (issue 15: step-up).
    acr_values: tuple[str, ...] = ()

    @property
    def wants_mfa(self) -> bool:
        """The client asked for the multi-factor level (``acr_values`` holds it)."""
        return MULTI_FACTOR_ACR in self.acr_values

    @property
    def scope(self) -> str:
        return " ".join(sorted(self.scopes))


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


class AuthorizationRequests:
    """Reads an authorization request's parameters into an :class:`AuthorizationRequest`."""

    def __init__(self, *, uow_factory: UnitOfWorkFactory, hints: IdTokenHints) -> None:
        self._uow_factory = uow_factory
        self._hints = hints

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
            acr_values=tuple((_one(params, "acr_values", MAX_ACR_VALUES) or "").split()),
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


def _seconds(params: Mapping[str, str], name: str, *, limit: int = 12) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if not value.isascii() or not value.isdigit() or len(value) > limit:
        raise OAuthInvalidRequest(f"{name} must be a non-negative number of seconds.")
    return int(value)
