"""The OAuth 2.0 / OpenID Connect provider: authorize, the token endpoint's grants, clients and
their registration rules, consents, introspection and revocation, ID tokens, userinfo,
RP-initiated logout and the hosted pages' browser sessions.

No HTTP here: the edge (``keyturn.api.oauth2``) parses and renders. See
docs/technical/2026-12-05_backend_architecture.md.
"""

# The names other packages use; they import them from here, never from a submodule.
# Order matters: modules that need another services package come last, so a cycle
# through it finds these names already bound; isort keeps the order.
# isort: off
from keyturn.services.oauth2.ports import (
    AuthorizationCodeRepository,
    ConsentRepository,
    OAuthClientRepository,
)
from keyturn.services.oauth2.authorize import AuthorizationService
from keyturn.services.oauth2.browser_sessions import BrowserLogin, BrowserSession, BrowserSessions
from keyturn.services.oauth2.clients import ClientService, decode_basic_credentials
from keyturn.services.oauth2.consents import ConsentService
from keyturn.services.oauth2.cors import OAuthCorsOrigins
from keyturn.services.oauth2.id_tokens import ID_TOKEN_TYP, IdTokenSigner
from keyturn.services.oauth2.rp_logout import RpLogoutService
from keyturn.services.oauth2.token_management import OAuthTokenService
from keyturn.services.oauth2.tokens import TokenService
from keyturn.services.oauth2.userinfo import UserInfoService
# isort: on

__all__ = [
    "ID_TOKEN_TYP",
    "AuthorizationCodeRepository",
    "AuthorizationService",
    "BrowserLogin",
    "BrowserSession",
    "BrowserSessions",
    "ClientService",
    "ConsentRepository",
    "ConsentService",
    "IdTokenSigner",
    "OAuthClientRepository",
    "OAuthCorsOrigins",
    "OAuthTokenService",
    "RpLogoutService",
    "TokenService",
    "UserInfoService",
    "decode_basic_credentials",
]
