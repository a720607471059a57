"""Errors of the OAuth 2.0 / OpenID Connect provider (RFC 6749, 6750, 7591; OIDC Core).

On ``/oauth2/*`` the edge renders every Keyturn error as RFC 6749 section 5.2 JSON
(``{"error": code, "error_description": detail}``); at the authorization endpoint an
``OAuthError`` travels back to the client's registered redirect URI (section 4.1.2.1).
"""

from __future__ import annotations

from keyturn.errors.base import AuthenticationFailed, InvalidInput, KeyturnError


class InvalidClientMetadata(InvalidInput):
    """OAuth client metadata that breaks a registration rule (RFC 7591 section 3.2.2)."""

    code = "invalid_client_metadata"
    title = "The client metadata is not valid"


class InvalidRedirectUri(InvalidClientMetadata):
    """A redirect URI (or post-logout one, or a CORS origin) that breaks RFC 9700 / RFC 8252."""

    code = "invalid_redirect_uri"
    title = "A redirect URI is not acceptable"


class InvalidClient(AuthenticationFailed):
    """OAuth client authentication failed (RFC 6749 section 5.2 ``invalid_client``).

    One answer for an unknown client, a wrong secret and a method the client did not
    register, so the answer reveals nothing about which client ids exist.
    """

    code = "invalid_client"
    title = "Client authentication failed"


class OAuthError(KeyturnError):
    """An OAuth 2.0 / OpenID Connect protocol error; ``code`` is the registered error code."""

    code = "invalid_request"
    status = 400
    title = "The OAuth request is not valid"


class OAuthInvalidRequest(OAuthError):
    """RFC 6749 section 5.2 ``invalid_request``: a missing, repeated or malformed parameter."""


class UnsafeAuthorizationRequest(OAuthInvalidRequest):
    """Unknown client or unregistered redirect URI at the authorization endpoint: shown to
    the user as a page and never redirected (RFC 6749 section 4.1.2.1, RFC 9700 section
    4.1.3)."""


class InvalidGrant(OAuthError):
    """RFC 6749 section 5.2: the code or refresh token is invalid, expired, used or foreign."""

    code = "invalid_grant"
    title = "The grant is not valid"


class UnauthorizedClient(OAuthError):
    """RFC 6749 section 5.2: the client may not use this grant or response type."""

    code = "unauthorized_client"
    title = "The client may not do this"


class UnsupportedGrantType(OAuthError):
    code = "unsupported_grant_type"
    title = "The grant type is not supported"


class UnsupportedResponseType(OAuthError):
    code = "unsupported_response_type"
    title = "The response type is not supported"


class InvalidScopeRequest(OAuthError):
    """RFC 6749 section 5.2 ``invalid_scope``: unknown, malformed or beyond the client."""

    code = "invalid_scope"
    title = "The scope is not valid"


class InsufficientScope(OAuthError):
    """RFC 6750 section 3.1: the access token lacks a scope the resource needs (403)."""

    code = "insufficient_scope"
    status = 403
    title = "The access token lacks a required scope"


class AccessDenied(OAuthError):
    """RFC 6749 section 4.1.2.1: the user (or Keyturn) refused the request."""

    code = "access_denied"
    title = "Access denied"


class InteractionRequired(OAuthError):
    """OIDC Core section 3.1.2.6: ``prompt=none`` but the user must act.

    ``code`` is ``interaction_required``, ``login_required`` or ``consent_required``.
    """

    code = "interaction_required"
    title = "User interaction is required"

    def __init__(self, code: str = "interaction_required", detail: str | None = None) -> None:
        super().__init__(detail, code=code)


class RequestObjectNotSupported(OAuthError):
    """OIDC Core section 6 / 3.1.2.6: a ``request`` or ``request_uri`` parameter, which
    Keyturn does not support (discovery says so); ``code`` names which one."""

    code = "request_not_supported"
    title = "Request objects are not supported"

    def __init__(self, parameter: str) -> None:
        super().__init__(
            f"The {parameter} parameter is not supported.", code=f"{parameter}_not_supported"
        )
