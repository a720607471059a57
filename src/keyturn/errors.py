"""The one exception tree of Keyturn.

Every domain error carries a stable machine-readable ``code`` (listed in the API
specification) and a ``status`` hint. Only ``keyturn.api.problems`` turns them into
HTTP answers; nothing else in the code base knows about HTTP.

::

    KeyturnError
    ├── InvalidInput                    invalid_request (400/422)
    │   ├── PasswordPolicyError         password_too_short / _too_long / _too_common / ...
    │   ├── UnknownPermission           unknown_permission (422)
    │   ├── UnknownScope                unknown_scope (422)
    │   ├── InvalidClientMetadata       invalid_client_metadata (422, RFC 7591 section 3.2.2)
    │   │   └── InvalidRedirectUri      invalid_redirect_uri (422, RFC 7591 section 3.2.2)
    │   ├── OneTimeTokenError           (400) token_malformed / token_invalid /
    │   │                               token_expired / token_used / token_wrong_purpose
    │   ├── MalformedBody               malformed_json (400)
    │   ├── UnsupportedMediaType        unsupported_media_type (415)
    │   └── GraphQLRequestInvalid       (400) missing_query / invalid_graphql_request
    ├── AuthenticationFailed            invalid_credentials (401)
    │   ├── InvalidToken                invalid_token (401)
    │   │   ├── CredentialsMissing      invalid_token (401, challenge without error)
    │   │   └── AccessTokenExpired      token_expired (401, challenge error invalid_token)
    │   ├── InvalidRefreshToken         invalid_refresh_token (401)
    │   ├── InvalidClient               invalid_client (401, RFC 6749 section 5.2)
    │   └── SessionRevoked              session_revoked (401)
    ├── EmailNotVerified                email_not_verified (403)
    ├── CurrentPasswordIncorrect        invalid_current_password (403)
    ├── PermissionDenied                permission_denied (403)
    │   ├── PermissionEscalation        permission_escalation (403)
    │   ├── TargetOutranksCaller        target_outranks_caller (403)
    │   └── FreshLoginRequired          fresh_login_required (403)
    │       └── ReauthenticationRequired  reauthentication_required (403)
    ├── NotFound                        not_found (404)
    │   └── UnknownRole                 unknown_role (404)
    ├── MethodNotAllowed                method_not_allowed (405, Allow)
    ├── Conflict                        conflict (409)
    │   ├── BuiltinRole                 builtin_role (409)
    │   └── LastAdmin                   last_admin (409)
    ├── OAuthError                      (400) the RFC 6749 / OIDC error codes, rendered as
    │   │                               {error, error_description} on /oauth2/*:
    │   ├── OAuthInvalidRequest         invalid_request
    │   │   └── UnsafeAuthorizationRequest  (a page at /oauth2/authorize, never a redirect)
    │   ├── InvalidGrant                invalid_grant
    │   ├── UnauthorizedClient          unauthorized_client
    │   ├── UnsupportedGrantType        unsupported_grant_type
    │   ├── UnsupportedResponseType     unsupported_response_type
    │   ├── UnsupportedTokenType        unsupported_token_type (RFC 7009 section 2.2.1)
    │   ├── InvalidScopeRequest         invalid_scope
    │   ├── InsufficientScope           insufficient_scope (403, RFC 6750 section 3.1)
    │   ├── AccessDenied                access_denied
    │   ├── InteractionRequired         interaction_required / login_required /
    │   │                               consent_required (OIDC Core section 3.1.2.6)
    │   └── RequestObjectNotSupported   request_not_supported / request_uri_not_supported
    │                                   (OIDC Core section 6)
    ├── RateLimited                     rate_limited (429, Retry-After, RateLimit-*)
    └── ServiceUnavailable              service_unavailable (503, Retry-After)
        └── HashQueueFull               hash_queue_full
"""

from __future__ import annotations


class KeyturnError(Exception):
    """Base of every error Keyturn raises on purpose."""

    code: str = "error"
    status: int = 500
    title: str = "Internal error"

    def __init__(self, detail: str | None = None, *, errors: list[dict[str, str]] | None = None):
        self.detail = detail or self.title
        self.errors = errors or []
        super().__init__(self.detail)


class InvalidInput(KeyturnError):
    code = "invalid_request"
    status = 422
    title = "The request is not valid"


class PasswordPolicyError(InvalidInput):
    """The new password breaks the password policy; ``code`` names the rule."""

    title = "The password does not meet the policy"

    def __init__(self, code: str, detail: str, *, field: str = "password"):
        super().__init__(detail, errors=[{"field": field, "message": detail}])
        self.code = code


class UnknownPermission(InvalidInput):
    code = "unknown_permission"
    title = "Unknown permission"


class UnknownScope(InvalidInput):
    """An API key asks for a string that is neither a self-service scope nor a permission."""

    code = "unknown_scope"
    title = "Unknown scope"


class InvalidClientMetadata(InvalidInput):
    """OAuth client metadata that breaks a registration rule (RFC 7591 section 3.2.2)."""

    code = "invalid_client_metadata"
    title = "The client metadata is not valid"


class InvalidRedirectUri(InvalidClientMetadata):
    """A redirect URI (or post-logout one, or a CORS origin) that breaks RFC 9700 / RFC 8252."""

    code = "invalid_redirect_uri"
    title = "A redirect URI is not acceptable"


class OneTimeTokenError(InvalidInput):
    """A verify / reset / email-change token was refused; ``code`` says why."""

    status = 400
    title = "The token cannot be used"


class TokenMalformed(OneTimeTokenError):
    code = "token_malformed"
    title = "The token is not well-formed"


class TokenInvalid(OneTimeTokenError):
    code = "token_invalid"
    title = "The token is unknown or no longer valid"


class TokenExpired(OneTimeTokenError):
    code = "token_expired"
    title = "The token has expired"


class TokenUsed(OneTimeTokenError):
    code = "token_used"
    title = "The token was already used"


class TokenWrongPurpose(OneTimeTokenError):
    code = "token_wrong_purpose"
    title = "The token was issued for something else"


class MalformedBody(InvalidInput):
    """The body cannot be decoded as JSON."""

    code = "malformed_json"
    status = 400
    title = "The body is not valid JSON"


class UnsupportedMediaType(InvalidInput):
    """A body sent without ``Content-Type: application/json`` (``curl -d`` sends a form)."""

    code = "unsupported_media_type"
    status = 415
    title = "The body must be sent as application/json"


class GraphQLRequestInvalid(InvalidInput):
    """A ``POST /graphql`` body that is JSON but no GraphQL request; ``code`` says why."""

    code = "invalid_graphql_request"
    status = 400
    title = "The body is not a GraphQL request"

    def __init__(self, detail: str | None = None, *, code: str = "invalid_graphql_request"):
        super().__init__(detail)
        self.code = code


class AuthenticationFailed(KeyturnError):
    code = "invalid_credentials"
    status = 401
    title = "Invalid credentials"


class InvalidToken(AuthenticationFailed):
    code = "invalid_token"
    title = "The access token is missing, malformed, expired or not for this service"


class CredentialsMissing(InvalidToken):
    """No bearer token at all (RFC 6750 section 3.1: the challenge then names no error)."""

    title = "A Bearer access token is required"


class AccessTokenExpired(InvalidToken):
    """A well-signed token past its ``exp``: the client should refresh, not sign in again.

    Still an ``InvalidToken`` (RFC 6750 section 3.1 ``invalid_token`` in the challenge), so
    every caller that refuses invalid tokens refuses this one too.
    """

    code = "token_expired"
    title = "The access token has expired"


class InvalidRefreshToken(AuthenticationFailed):
    code = "invalid_refresh_token"
    title = "The refresh token is invalid, expired or revoked"


class InvalidClient(AuthenticationFailed):
    """OAuth client authentication failed (RFC 6749 section 5.2 ``invalid_client``).

    One answer for an unknown client, a wrong secret and a method the client did not
    register, so the answer reveals nothing about which client ids exist.
    """

    code = "invalid_client"
    title = "Client authentication failed"


class SessionRevoked(AuthenticationFailed):
    code = "session_revoked"
    title = "The session has ended"


class EmailNotVerified(KeyturnError):
    code = "email_not_verified"
    status = 403
    title = "The email address must be verified before logging in"


class PermissionDenied(KeyturnError):
    code = "permission_denied"
    status = 403
    title = "Not allowed"


class PermissionEscalation(PermissionDenied):
    """Granting (or building a role with) a permission the actor does not hold."""

    code = "permission_escalation"
    title = "You cannot grant a permission you do not hold"


class TargetOutranksCaller(PermissionDenied):
    """Acting on a user who holds a permission the actor does not: nobody locks, resets,
    disables, deletes or re-roles an account more powerful than their own."""

    code = "target_outranks_caller"
    title = "The user holds permissions you do not hold"


class FreshLoginRequired(PermissionDenied):
    """An API key was used where only a password login may act (password, email, keys)."""

    code = "fresh_login_required"
    title = "This needs a signed-in session, not an API key"


class ReauthenticationRequired(FreshLoginRequired):
    """The session's password sign-in is too old for this change (confirming an email
    change): sign in again, then retry."""

    code = "reauthentication_required"
    title = "Sign in again: this needs a recent password sign-in"


class NotFound(KeyturnError):
    code = "not_found"
    status = 404
    title = "Not found"


class UnknownRole(NotFound):
    code = "unknown_role"
    title = "No role has this name"


class MethodNotAllowed(KeyturnError):
    """The path exists but not for this method; ``allow`` lists the ones it takes."""

    code = "method_not_allowed"
    status = 405
    title = "Method not allowed"

    def __init__(self, detail: str | None = None, *, allow: str):
        super().__init__(detail)
        self.allow = allow


class Conflict(KeyturnError):
    code = "conflict"
    status = 409
    title = "Conflict"


class BuiltinRole(Conflict):
    code = "builtin_role"
    title = "The built-in admin role cannot be changed or deleted"


class LastAdmin(Conflict):
    """The change would leave no active holder of the built-in admin role."""

    code = "last_admin"
    title = "The last active administrator cannot be removed, disabled or locked"


class RateLimited(KeyturnError):
    """Too many requests for this key (address, account+IP, IP); retry later."""

    code = "rate_limited"
    status = 429
    title = "Too many requests"

    def __init__(
        self, detail: str | None = None, *, retry_after: int, limit: int, reset_after: int
    ):
        super().__init__(detail)
        self.retry_after = retry_after
        self.limit = limit
        self.reset_after = reset_after


class ServiceUnavailable(KeyturnError):
    code = "service_unavailable"
    status = 503
    title = "Temporarily unavailable"

    def __init__(self, detail: str | None = None, *, retry_after: int = 1):
        super().__init__(detail)
        self.retry_after = retry_after


class HashQueueFull(ServiceUnavailable):
    """The password hashing pool and its queue are full; the client should retry."""

    code = "hash_queue_full"
    title = "Too many password checks in progress; retry shortly"


class CurrentPasswordIncorrect(KeyturnError):
    """Re-authentication inside a live session failed (not a reason to drop the session)."""

    code = "invalid_current_password"
    status = 403
    title = "The current password is not correct"


class OAuthError(KeyturnError):
    """An OAuth 2.0 / OpenID Connect protocol error; ``code`` is the registered error code.

    On ``/oauth2/*`` the edge renders every Keyturn error as RFC 6749 section 5.2 JSON
    (``{"error": code, "error_description": detail}``); at the authorization endpoint
    these travel back to the client's registered redirect URI (section 4.1.2.1).
    """

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


class UnsupportedTokenType(OAuthError):
    """RFC 7009 section 2.2.1: revocation of this token type is not supported."""

    code = "unsupported_token_type"
    title = "The token type is not supported"


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

    def __init__(self, code: str = "interaction_required", detail: str | None = None):
        super().__init__(detail)
        self.code = code


class RequestObjectNotSupported(OAuthError):
    """OIDC Core section 6 / 3.1.2.6: a ``request`` or ``request_uri`` parameter, which
    Keyturn does not support (discovery says so); ``code`` names which one."""

    code = "request_not_supported"
    title = "Request objects are not supported"

    def __init__(self, parameter: str) -> None:
        super().__init__(f"The {parameter} parameter is not supported.")
        self.code = f"{parameter}_not_supported"


class StoreUnavailable(Exception):
    """A shared store (Redis) could not be reached or did not answer in time.

    Not a domain error: it never reaches the edge. The service that catches it decides how
    to degrade (DESIGN.md section 6: Redis loss degrades to the database, never opens a
    door). The driver exception is chained as ``__cause__``.
    """


class MailDeliveryError(Exception):
    """A mail could not be handed to the mail server.

    The message never contains a credential or the body; the driver exception (if any)
    is chained as ``__cause__``.

    Attributes:
        permanent: ``True`` when retrying cannot help (the server refused this recipient
            or this message with a 5xx reply, or the message cannot be built); ``False``
            for connection failures, timeouts, 4xx replies and relay misconfiguration,
            which the worker retries.
    """

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent
