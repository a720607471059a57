"""Registration rules for OAuth 2.0 clients (RFC 7591 metadata): pure checks, no storage,
no HTTP. The URIs a client registers are checked by ``client_uris.py``.
See docs/technical/2026-11-26_backend_security-implementation.md (V10).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from keyturn.domain import (
    DEFAULT_SIGNING_ALG_FOR_ID,
    PERMISSIONS,
    PUBLIC_CLIENT_AUTH_METHOD,
    SELF_SERVICE_SCOPES,
)
from keyturn.errors import InvalidClientMetadata, UnknownScope
from keyturn.services.oauth2.client_uris import (
    check_cors_origin,
    check_page_uri,
    check_redirect_uri,
)

GRANT_TYPES: tuple[str, ...] = ("authorization_code", "refresh_token", "client_credentials")
RESPONSE_TYPES: tuple[str, ...] = ("code",)
# RFC 7591 section 2: the default method is client_secret_basic; "none" marks a public client.
AUTH_METHODS: tuple[str, ...] = (
    "client_secret_basic",
    "client_secret_post",
    PUBLIC_CLIENT_AUTH_METHOD,
)
DEFAULT_AUTH_METHOD = AUTH_METHODS[0]
# OpenID Connect Core section 5.4 and 11; the rest are Keyturn's own scopes, so a client
# may ask a user for exactly what a personal API key could hold.
OIDC_SCOPES: tuple[str, ...] = ("openid", "profile", "email", "offline_access")
ALLOWED_SCOPES: frozenset[str] = frozenset((*OIDC_SCOPES, *SELF_SERVICE_SCOPES, *PERMISSIONS))
DEFAULT_SCOPE = "openid"

MAX_LIST_ITEMS = 20
MAX_NAME_LENGTH = 200
MAX_SCOPE_LENGTH = 1000

# RFC 6749 section 3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")


@dataclass(frozen=True, slots=True)
class ClientMetadata:
    """The registrable metadata of a client (RFC 7591 section 2 names)."""

    client_name: str
    redirect_uris: tuple[str, ...] = ()
    post_logout_redirect_uris: tuple[str, ...] = ()
    grant_types: tuple[str, ...] = ("authorization_code",)
    # None: derived from the grant types (``["code"]`` with authorization_code, else []).
    response_types: tuple[str, ...] | None = None
    scope: str = DEFAULT_SCOPE
    token_endpoint_auth_method: str = DEFAULT_AUTH_METHOD
    allowed_cors_origins: tuple[str, ...] = ()
    require_pkce: bool = True
    id_token_signed_response_alg: str = DEFAULT_SIGNING_ALG_FOR_ID
    # RFC 7591 section 2 human-facing pages; None (or "" in a PATCH) when not registered.
    client_uri: str | None = None
    policy_uri: str | None = None
    tos_uri: str | None = None

    @property
    def is_public(self) -> bool:
        return self.token_endpoint_auth_method == PUBLIC_CLIENT_AUTH_METHOD


def _refuse(field: str, message: str) -> InvalidClientMetadata:
    return InvalidClientMetadata(
        f"{field}: {message}", errors=[{"field": field, "message": message}]
    )


def _page(uri: str | None, field: str) -> str | None:
    # "" (a PATCH removing the page) is stored as not registered.
    return check_page_uri(uri, field=field) if uri else None


def normalize_scope(scope: str) -> str:
    """The allowed scopes as a sorted, de-duplicated, space-delimited string.

    Raises:
        InvalidClientMetadata: When the string is empty or not RFC 6749 section 3.3 syntax.
        UnknownScope: Naming every scope Keyturn does not know.
    """
    if not scope or len(scope) > MAX_SCOPE_LENGTH:
        raise _refuse("scope", f"must be 1 to {MAX_SCOPE_LENGTH} characters")
    tokens = scope.split(" ")
    if any(not _SCOPE_TOKEN.match(token) for token in tokens):
        raise _refuse("scope", "scope tokens are separated by single spaces (RFC 6749 section 3.3)")
    unknown = sorted(set(tokens) - ALLOWED_SCOPES)
    if unknown:
        raise UnknownScope(
            f"Unknown scope(s): {', '.join(unknown)}.",
            errors=[{"field": "scope", "message": f"unknown: {name}"} for name in unknown],
        )
    return " ".join(sorted(set(tokens)))


def _unique(values: Sequence[str], field: str) -> tuple[str, ...]:
    if len(values) > MAX_LIST_ITEMS:
        raise _refuse(field, f"at most {MAX_LIST_ITEMS} entries")
    if len(set(values)) != len(values):
        raise _refuse(field, "an entry is listed twice")
    return tuple(values)


def check_metadata(meta: ClientMetadata, *, id_token_algs: Sequence[str]) -> ClientMetadata:
    """Checks a whole registration and fills the derived defaults.

    Args:
        meta: The registration.
        id_token_algs: ``KEYTURN_ID_TOKEN_ALGS``: what ``id_token_signed_response_alg`` may be.

    Returns:
        The metadata with ``response_types`` filled in and ``scope`` normalized.

    Raises:
        InvalidClientMetadata: For a rule of RFC 7591 section 2 or of this module.
        InvalidRedirectUri: For a redirect URI, post-logout redirect URI or CORS origin.
        UnknownScope: For a scope Keyturn does not know.
    """
    name = meta.client_name.strip()
    if not name or len(name) > MAX_NAME_LENGTH or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise _refuse("client_name", f"1 to {MAX_NAME_LENGTH} characters, no control characters")
    if meta.token_endpoint_auth_method not in AUTH_METHODS:
        raise _refuse("token_endpoint_auth_method", f"one of {', '.join(AUTH_METHODS)}")
    grants = _unique(meta.grant_types, "grant_types")
    if not grants:
        raise _refuse("grant_types", "at least one grant type")
    for grant in grants:
        if grant not in GRANT_TYPES:
            raise _refuse("grant_types", f"one of {', '.join(GRANT_TYPES)}")
    code_flow = "authorization_code" in grants
    if meta.is_public and "client_credentials" in grants:
        # RFC 6749 section 4.4: only a client that can authenticate may use it.
        raise _refuse(
            "grant_types", "a public client (auth method none) cannot use client_credentials"
        )
    if "refresh_token" in grants and not code_flow:
        # Keyturn issues refresh tokens only through the code flow (RFC 6749 section 4.4.3).
        raise _refuse("grant_types", "refresh_token needs authorization_code")
    response_types = (
        (("code",) if code_flow else ()) if meta.response_types is None else meta.response_types
    )
    response_types = _unique(response_types, "response_types")
    if any(value not in RESPONSE_TYPES for value in response_types):
        raise _refuse("response_types", 'only "code" (OAuth 2.1: no implicit flow)')
    if ("code" in response_types) != code_flow:
        # RFC 7591 section 2.1: response types and grant types must agree.
        raise _refuse("response_types", '["code"] exactly when grant_types has authorization_code')
    if meta.id_token_signed_response_alg not in id_token_algs:
        raise _refuse(
            "id_token_signed_response_alg",
            f"one of {', '.join(id_token_algs)} (KEYTURN_ID_TOKEN_ALGS)",
        )
    if meta.is_public and not meta.require_pkce:
        raise _refuse("require_pkce", "public clients always use PKCE (RFC 9700 section 2.1.1)")
    redirects = _unique(meta.redirect_uris, "redirect_uris")
    if code_flow and not redirects:
        raise _refuse("redirect_uris", "the authorization_code grant needs a redirect URI")
    for index, uri in enumerate(redirects):
        check_redirect_uri(uri, public=meta.is_public, field=f"redirect_uris.{index}")
    logout = _unique(meta.post_logout_redirect_uris, "post_logout_redirect_uris")
    for index, uri in enumerate(logout):
        check_redirect_uri(uri, public=meta.is_public, field=f"post_logout_redirect_uris.{index}")
    origins = _unique(meta.allowed_cors_origins, "allowed_cors_origins")
    for index, origin in enumerate(origins):
        check_cors_origin(origin, field=f"allowed_cors_origins.{index}")
    return replace(
        meta,
        client_uri=_page(meta.client_uri, "client_uri"),
        policy_uri=_page(meta.policy_uri, "policy_uri"),
        tos_uri=_page(meta.tos_uri, "tos_uri"),
        client_name=name,
        grant_types=grants,
        response_types=response_types,
        scope=normalize_scope(meta.scope),
    )
