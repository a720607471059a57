"""How a client registration becomes a stored record and back, and who may hold it.

Pure helpers of ``clients``: no storage, no HTTP.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from keyturn.domain import OAuthClient
from keyturn.errors import PermissionEscalation
from keyturn.services.oauth2.client_rules import ClientMetadata
from keyturn.services.oauth2.grant_scope import USER_SCOPES


def check_scope_held(held: frozenset[str], scope: str) -> None:
    """Refuses a client scope holding an admin permission the caller lacks.

    Issue 12 finding 7: ``clients:write`` registers clients, it does not hand out
    permissions (the same "nothing beyond what you hold" rule as roles and API keys).
    The OIDC and self-service scopes every user holds are always allowed.
    """
    beyond = sorted(set(scope.split()) - USER_SCOPES - held)
    if beyond:
        raise PermissionEscalation(
            f"You do not hold: {', '.join(beyond)}.",
            errors=[{"field": "scope", "message": f"not held: {name}"} for name in beyond],
        )


def metadata_of(client: OAuthClient) -> ClientMetadata:
    return ClientMetadata(
        client_name=client.client_name,
        redirect_uris=client.redirect_uris,
        post_logout_redirect_uris=client.post_logout_redirect_uris,
        grant_types=client.grant_types,
        response_types=client.response_types,
        scope=client.scope,
        token_endpoint_auth_method=client.token_endpoint_auth_method,
        allowed_cors_origins=client.allowed_cors_origins,
        require_pkce=client.require_pkce,
        id_token_signed_response_alg=client.id_token_signed_response_alg,
        client_uri=client.client_uri,
        policy_uri=client.policy_uri,
        tos_uri=client.tos_uri,
    )


def record_of(meta: ClientMetadata, client_id: str, now: datetime) -> OAuthClient:
    return OAuthClient(
        id=uuid.uuid4(),
        client_id=client_id,
        client_name=meta.client_name,
        redirect_uris=meta.redirect_uris,
        post_logout_redirect_uris=meta.post_logout_redirect_uris,
        grant_types=meta.grant_types,
        # check_metadata always fills response_types in; () only stands in for the type.
        response_types=meta.response_types or (),
        scope=meta.scope,
        token_endpoint_auth_method=meta.token_endpoint_auth_method,
        allowed_cors_origins=meta.allowed_cors_origins,
        require_pkce=meta.require_pkce,
        id_token_signed_response_alg=meta.id_token_signed_response_alg,
        client_uri=meta.client_uri,
        policy_uri=meta.policy_uri,
        tos_uri=meta.tos_uri,
        created_at=now,
        updated_at=now,
        secret_rotated_at=None,
    )
