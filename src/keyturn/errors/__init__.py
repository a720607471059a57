"""The one exception tree of Keyturn, one module per capability.

Every error carries a stable ``code`` and a ``status`` hint; only the edge
(``keyturn.api.problems``) turns them into answers. The bases (``base``)::

    KeyturnError
    ├── InvalidInput          422 (400 / 415 for malformed bodies)
    ├── AuthenticationFailed  401
    ├── PermissionDenied      403
    ├── NotFound              404
    ├── MethodNotAllowed      405, Allow
    ├── Conflict              409
    ├── OAuthError            400, the RFC 6749 / OIDC error codes (``oauth2``)
    ├── RateLimited           429, Retry-After, RateLimit-*
    └── ServiceUnavailable    503, Retry-After (DatabaseUnavailable: the database is down)

Each capability module (``accounts``, ``admin``, ``mfa``, ``oauth2``) refines them.
"""

from keyturn.errors.accounts import (
    AccessTokenExpired,
    CredentialsMissing,
    CurrentPasswordIncorrect,
    EmailNotVerified,
    FreshLoginRequired,
    InvalidRefreshToken,
    InvalidToken,
    OneTimeTokenError,
    PasswordPolicyError,
    ReauthenticationRequired,
    SessionRevoked,
    TokenExpired,
    TokenInvalid,
    TokenMalformed,
    TokenUsed,
    TokenWrongPurpose,
)
from keyturn.errors.adapters import MailDeliveryError, StoreUnavailable
from keyturn.errors.admin import (
    BuiltinRole,
    LastAdmin,
    PermissionEscalation,
    TargetOutranksCaller,
    UnknownPermission,
    UnknownRole,
    UnknownScope,
)
from keyturn.errors.base import (
    AuthenticationFailed,
    Conflict,
    DatabaseUnavailable,
    GraphQLRequestInvalid,
    HashQueueFull,
    InvalidInput,
    KeyturnError,
    MalformedBody,
    MethodNotAllowed,
    NotFound,
    PermissionDenied,
    RateLimited,
    ServiceUnavailable,
    UnsupportedMediaType,
)
from keyturn.errors.mfa import (
    FactorAlreadyEnrolled,
    FactorNotEnrolled,
    MfaCodeInvalid,
    MfaTokenInvalid,
    WebAuthnRejected,
)
from keyturn.errors.oauth2 import (
    AccessDenied,
    InsufficientScope,
    InteractionRequired,
    InvalidClient,
    InvalidClientMetadata,
    InvalidGrant,
    InvalidRedirectUri,
    InvalidScopeRequest,
    OAuthError,
    OAuthInvalidRequest,
    RequestObjectNotSupported,
    UnauthorizedClient,
    UnsafeAuthorizationRequest,
    UnsupportedGrantType,
    UnsupportedResponseType,
)

__all__ = [
    "AccessDenied",
    "AccessTokenExpired",
    "AuthenticationFailed",
    "BuiltinRole",
    "Conflict",
    "CredentialsMissing",
    "CurrentPasswordIncorrect",
    "DatabaseUnavailable",
    "EmailNotVerified",
    "FactorAlreadyEnrolled",
    "FactorNotEnrolled",
    "FreshLoginRequired",
    "GraphQLRequestInvalid",
    "HashQueueFull",
    "InsufficientScope",
    "InteractionRequired",
    "InvalidClient",
    "InvalidClientMetadata",
    "InvalidGrant",
    "InvalidInput",
    "InvalidRedirectUri",
    "InvalidRefreshToken",
    "InvalidScopeRequest",
    "InvalidToken",
    "KeyturnError",
    "LastAdmin",
    "MailDeliveryError",
    "MalformedBody",
    "MethodNotAllowed",
    "MfaCodeInvalid",
    "MfaTokenInvalid",
    "NotFound",
    "OAuthError",
    "OAuthInvalidRequest",
    "OneTimeTokenError",
    "PasswordPolicyError",
    "PermissionDenied",
    "PermissionEscalation",
    "RateLimited",
    "ReauthenticationRequired",
    "RequestObjectNotSupported",
    "ServiceUnavailable",
    "SessionRevoked",
    "StoreUnavailable",
    "TargetOutranksCaller",
    "TokenExpired",
    "TokenInvalid",
    "TokenMalformed",
    "TokenUsed",
    "TokenWrongPurpose",
    "UnauthorizedClient",
    "UnknownPermission",
    "UnknownRole",
    "UnknownScope",
    "UnsafeAuthorizationRequest",
    "UnsupportedGrantType",
    "UnsupportedMediaType",
    "UnsupportedResponseType",
    "WebAuthnRejected",
]
