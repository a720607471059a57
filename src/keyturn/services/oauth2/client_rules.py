"""Registration rules for OAuth 2.0 clients: pure checks, no storage, no HTTP.

Redirect URIs follow RFC 6749 3.1.2, RFC 9700 2.1 / 4.1 and RFC 8252 7.1, 7.3, 8.3; CORS
origins are bare serialized origins (RFC 6454 6.1).
See docs/technical/2026-11-26_backend_security-implementation.md (V10).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from urllib.parse import SplitResult, urlsplit

from keyturn.domain import (
    DEFAULT_SIGNING_ALG_FOR_ID,
    PERMISSIONS,
    PUBLIC_CLIENT_AUTH_METHOD,
    SELF_SERVICE_SCOPES,
    OAuthClient,
)
from keyturn.errors import InvalidClientMetadata, InvalidRedirectUri, UnknownScope

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

MAX_URI_LENGTH = 2000
MAX_LIST_ITEMS = 20
MAX_NAME_LENGTH = 200
MAX_SCOPE_LENGTH = 1000
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1"})

# RFC 3986 section 2: unreserved, reserved and '%'. Anything else (space, quotes, '<>',
# '\\', non-ASCII, controls) must be percent-encoded; '\\' in particular is read as '/'
# by browsers (WHATWG URL) but not by urlsplit, a classic redirect-check bypass.
_URI_CHARS = re.compile(r"^[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+$")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*$")
# RFC 8252 section 7.1: a reverse domain name the app controls, e.g. com.example.app.
_PRIVATE_SCHEME = re.compile(r"^[a-z][a-z0-9\-]*(\.[a-z0-9\-]+)+$")
_HOST_NAME = re.compile(
    r"^[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?)*$"
)
_ORIGIN = re.compile(r"^(https?)://([^/?#@\\]+)$")
# RFC 8252 section 7.3: the loopback IP literals whose port a native app picks at run
# time ('localhost' is not one: RFC 8252 section 8.3, and registration refuses it).
_LOOPBACK_PREFIXES = ("http://127.0.0.1", "http://[::1]")
# A port as a browser sends it: 1..65535 written without leading zeros, followed by the
# path, the query or nothing (never '@', '#' or more host).
_PORT = re.compile(r"^:([1-9][0-9]{0,4})(?=[/?]|$)")
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


def _refuse_uri(field: str, message: str) -> InvalidRedirectUri:
    return InvalidRedirectUri(f"{field}: {message}", errors=[{"field": field, "message": message}])


def _refuse(field: str, message: str) -> InvalidClientMetadata:
    return InvalidClientMetadata(
        f"{field}: {message}", errors=[{"field": field, "message": message}]
    )


def check_page_uri(uri: str, *, field: str) -> str:
    """Checks a page the consent screen links to (``client_uri``, ``policy_uri``, ``tos_uri``).

    https only: a user follows these links from our page (no ``http:``, ``javascript:``).

    Raises:
        InvalidClientMetadata: Naming the rule the URI breaks.
    """
    if len(uri) > MAX_URI_LENGTH or not _URI_CHARS.match(uri) or _BAD_PERCENT.search(uri):
        raise _refuse(field, f"an https URL of RFC 3986 characters, at most {MAX_URI_LENGTH}")
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        raise _refuse(field, "not a valid URL") from None
    if parts.scheme != "https" or not parts.hostname or port == 0:
        raise _refuse(field, "must be an https URL with a host (RFC 7591 section 2)")
    if "@" in parts.netloc:
        raise _refuse(field, "userinfo ('user@') is not allowed")
    return uri


def _page(uri: str | None, field: str) -> str | None:
    # "" (a PATCH removing the page) is stored as not registered.
    return check_page_uri(uri, field=field) if uri else None


def _check_host(host: str, field: str) -> None:
    if host == "localhost" or host.endswith(".localhost"):
        raise _refuse_uri(
            field, "localhost is refused; use 127.0.0.1 or [::1] (RFC 8252 section 8.3)"
        )
    if host.startswith("["):
        if not host.endswith("]"):
            raise _refuse_uri(field, "the host is not valid")
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError as exc:
            raise _refuse_uri(field, "the IPv6 literal is not valid") from exc
        return
    if not _HOST_NAME.match(host):
        raise _refuse_uri(field, "the host must be a lower-case DNS name or an IP address")


def _split(uri: str, field: str) -> SplitResult:
    try:
        parts = urlsplit(uri)
        port = parts.port  # raises ValueError when not 0..65535
    except ValueError as exc:
        raise _refuse_uri(field, "the host or port is not valid") from exc
    if port == 0 or parts.netloc.endswith(":"):
        raise _refuse_uri(field, "the port must be 1 to 65535")
    return parts


def _split_netloc(netloc: str) -> str:
    """The host part of ``host[:port]`` / ``[v6][:port]`` exactly as written."""
    if netloc.startswith("["):
        return netloc[: netloc.find("]") + 1] if "]" in netloc else netloc
    return netloc.split(":", 1)[0]


def check_redirect_uri(uri: str, *, public: bool, field: str = "redirect_uris") -> str:
    """Checks one redirect URI; returns it unchanged (stored exactly as given).

    Args:
        uri: The URI as registered.
        public: Whether the client is public (may use a private-use scheme).
        field: The field name reported in the error.

    Returns:
        ``uri``, unchanged.

    Raises:
        InvalidRedirectUri: Naming the rule the URI breaks.
    """
    if not uri or len(uri) > MAX_URI_LENGTH:
        raise _refuse_uri(field, f"must be 1 to {MAX_URI_LENGTH} characters")
    if not _URI_CHARS.match(uri):
        raise _refuse_uri(
            field, "only RFC 3986 characters are allowed; percent-encode anything else"
        )
    if "*" in uri:
        raise _refuse_uri(field, "wildcards are not allowed (exact match, RFC 9700 section 4.1.3)")
    if "#" in uri:
        raise _refuse_uri(field, "a fragment is not allowed (RFC 6749 section 3.1.2)")
    if _BAD_PERCENT.search(uri):
        raise _refuse_uri(field, "a '%' must start a percent-encoding like %2F")
    scheme, colon, rest = uri.partition(":")
    if not colon or not _SCHEME.match(scheme):
        raise _refuse_uri(field, "must be an absolute URI (RFC 6749 section 3.1.2)")
    parts = _split(uri, field)
    if "@" in parts.netloc:
        raise _refuse_uri(field, "userinfo ('user@') is not allowed")
    if scheme in ("https", "http"):
        if not rest.startswith("//") or not parts.netloc:
            raise _refuse_uri(field, f"an {scheme} URI needs a host")
        host = _split_netloc(parts.netloc)
        _check_host(host, field)
        if scheme == "http" and (parts.hostname or "") not in LOOPBACK_HOSTS:
            raise _refuse_uri(
                field,
                "https is required; plain http only for the loopback addresses "
                "127.0.0.1 and [::1] (RFC 8252 section 7.3)",
            )
        return uri
    if scheme.lower() in ("https", "http"):
        raise _refuse_uri(field, "write the scheme in lower case")
    if not public:
        raise _refuse_uri(
            field,
            "private-use URI schemes are for public (native) clients only "
            "(RFC 8252 section 7.1); confidential clients use https",
        )
    if not _PRIVATE_SCHEME.match(scheme):
        raise _refuse_uri(
            field,
            "a private-use scheme must be a reverse domain name such as com.example.app "
            "(RFC 8252 section 7.1)",
        )
    if parts.netloc or not parts.path.startswith("/") or rest.startswith("//"):
        raise _refuse_uri(
            field, "write a private-use redirect as com.example.app:/path (RFC 8252 section 7.1)"
        )
    return uri


def _without_port(rest: str) -> str | None:
    """What follows ``scheme://host`` once an explicit port is removed; None if the port
    is not one (zero, too large, leading zeros, or followed by anything but a path)."""
    if not rest.startswith(":"):
        return rest
    found = _PORT.match(rest)
    if found is None or int(found.group(1)) > 65535:
        return None
    return rest[found.end() :]


def redirect_uri_matches(registered: str, requested: str, *, public: bool) -> bool:
    """Whether ``requested`` is the redirect URI ``registered`` (RFC 9700 section 4.1.3).

    Exact string comparison, except that a public (native) client's loopback IP redirect
    URI matches at any port (RFC 8252 section 7.3: the app listens on a port the
    operating system hands out). Nothing else may vary: not the scheme, not the host
    (``localhost`` is no loopback IP here), not the path or the query. Confidential
    clients are web servers with a fixed address: they always match exactly.
    """
    if requested == registered:
        return True
    if not public:
        return False
    for prefix in _LOOPBACK_PREFIXES:
        if registered.startswith(prefix) and requested.startswith(prefix):
            wanted = _without_port(registered[len(prefix) :])
            given = _without_port(requested[len(prefix) :])
            return wanted is not None and wanted == given
    return False


def registered_redirect(client: OAuthClient, requested: str) -> bool:
    """Whether ``requested`` matches one of the client's redirect URIs (see above)."""
    return any(
        redirect_uri_matches(registered, requested, public=client.is_public)
        for registered in client.redirect_uris
    )


def check_cors_origin(origin: str, field: str = "allowed_cors_origins") -> str:
    """Checks one CORS origin: ``https://host[:port]`` (http only on loopback)."""
    match = _ORIGIN.match(origin) if len(origin) <= MAX_URI_LENGTH else None
    if match is None or not _URI_CHARS.match(origin):
        raise _refuse_uri(field, "must be a bare origin scheme://host[:port], no path")
    if "*" in origin:
        raise _refuse_uri(field, "wildcards are not allowed")
    scheme, netloc = match.groups()
    host = _split_netloc(netloc)
    if origin != origin.lower():
        raise _refuse_uri(field, "write the origin in lower case, as browsers send it")
    _check_host(host, field)
    _split(origin, field)
    default_port = {"https": ":443", "http": ":80"}[scheme]
    if netloc.endswith(default_port):
        raise _refuse_uri(field, f"leave out the default port {default_port[1:]}")
    bare_host = host.strip("[]")
    if scheme == "http" and bare_host not in LOOPBACK_HOSTS:
        raise _refuse_uri(field, "https is required; plain http only for 127.0.0.1 and [::1]")
    return origin


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
