"""The OAuth 2.0 / OpenID Connect provider: authorize, the token endpoint's grants, clients and
their registration rules, consents, introspection and revocation, ID tokens, userinfo,
RP-initiated logout and the hosted pages' browser sessions.

No HTTP here: the edge (``keyturn.api.oauth2``) parses and renders. See
docs/technical/2026-12-05_backend_architecture.md.
"""

# The names other packages use; they import them from here, never from a submodule.
from keyturn.services.oauth2.authorize import (
    AUTH_AFTER,
    AuthorizationRequest,
    AuthorizationService,
    Next,
    Redirectable,
)
from keyturn.services.oauth2.browser_sessions import BrowserSession, BrowserSessions
from keyturn.services.oauth2.client_rules import (
    MAX_LIST_ITEMS,
    MAX_SCOPE_LENGTH,
    MAX_URI_LENGTH,
    ClientMetadata,
    check_cors_origin,
    check_metadata,
    check_redirect_uri,
    normalize_scope,
)
from keyturn.services.oauth2.clients import (
    ClientPage,
    ClientPatch,
    ClientService,
    CreatedClient,
    decode_basic_credentials,
)
from keyturn.services.oauth2.consents import ConsentService
from keyturn.services.oauth2.cors import OAuthCorsOrigins
from keyturn.services.oauth2.id_tokens import ID_TOKEN_TYP, IdTokenHints, IdTokenSigner
from keyturn.services.oauth2.metadata import server_metadata
from keyturn.services.oauth2.rp_logout import LogoutRequest, RpLogoutService
from keyturn.services.oauth2.token_management import OAuthTokenService
from keyturn.services.oauth2.tokens import TokenService
from keyturn.services.oauth2.userinfo import UserInfoService

__all__ = [
    "AUTH_AFTER",
    "ID_TOKEN_TYP",
    "MAX_LIST_ITEMS",
    "MAX_SCOPE_LENGTH",
    "MAX_URI_LENGTH",
    "AuthorizationRequest",
    "AuthorizationService",
    "BrowserSession",
    "BrowserSessions",
    "ClientMetadata",
    "ClientPage",
    "ClientPatch",
    "ClientService",
    "ConsentService",
    "CreatedClient",
    "IdTokenHints",
    "IdTokenSigner",
    "LogoutRequest",
    "Next",
    "OAuthCorsOrigins",
    "OAuthTokenService",
    "Redirectable",
    "RpLogoutService",
    "TokenService",
    "UserInfoService",
    "check_cors_origin",
    "check_metadata",
    "check_redirect_uri",
    "decode_basic_credentials",
    "normalize_scope",
    "server_metadata",
]
