"""The authorization server metadata (RFC 8414 section 2, OpenID Connect Discovery 1.0
section 3): one document for both well-known URLs, listing only what is implemented."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from keyturn.domain_mfa import ACR_VALUES
from keyturn.services.oauth2.authorization_request import PROMPTS, RESPONSE_MODES
from keyturn.services.oauth2.client_rules import ALLOWED_SCOPES, AUTH_METHODS
from keyturn.services.oauth2.tokens import GRANT_TYPES

# The claims an ID Token or access token from the code flow can carry.
CLAIMS = (
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "at_hash",
    "amr",
    "acr",
    "sid",
    # UserInfo (OpenID Connect Core section 5.4), by the profile and email scopes.
    "name",
    "email",
    "email_verified",
)
# RFC 7662 section 2.1: introspection needs a confidential client's secret.
SECRET_METHODS = [method for method in AUTH_METHODS if method != "none"]


def server_metadata(issuer: str, *, id_token_algs: Sequence[str]) -> dict[str, Any]:
    """The discovery document for ``issuer``: every endpoint it names answers."""
    base = issuer.rstrip("/")
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{base}/oauth2/authorize",
        "token_endpoint": f"{base}/oauth2/token",
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "userinfo_endpoint": f"{base}/oauth2/userinfo",
        "introspection_endpoint": f"{base}/oauth2/introspect",
        "introspection_endpoint_auth_methods_supported": SECRET_METHODS,
        "revocation_endpoint": f"{base}/oauth2/revoke",
        # RFC 7009 section 2.1: a public client revokes its tokens with its client_id.
        "revocation_endpoint_auth_methods_supported": list(AUTH_METHODS),
        # OpenID Connect RP-Initiated Logout 1.0 section 2.1.
        "end_session_endpoint": f"{base}/oauth2/logout",
        "response_types_supported": ["code"],
        "response_modes_supported": list(RESPONSE_MODES),
        "grant_types_supported": list(GRANT_TYPES),
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": list(dict.fromkeys(id_token_algs)),
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": sorted(ALLOWED_SCOPES),
        "claims_supported": list(CLAIMS),
        "acr_values_supported": list(ACR_VALUES),
        # RFC 9207 section 3.
        "authorization_response_iss_parameter_supported": True,
        "prompt_values_supported": sorted(PROMPTS),
        # Request objects are not supported. Said explicitly: OpenID Connect Discovery 1.0
        # section 3 makes request_uri_parameter_supported default to true when absent.
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
    }
