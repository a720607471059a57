"""What a live OAuth grant still covers: its scope as the user and the client stand now.

A grant's scope was decided once, at consent (or at the token request for
``client_credentials``). Users lose roles and administrators cut a client's registered
scope later; a grant must not outlive either (issue 12 finding 3). Like a personal API
key (``Authorizer.permissions``), a grant acts with the intersection of what it was
granted, what its client may still ask for and, for a user's grant, what the user still
holds: the OIDC and self-service scopes every user has, plus the admin permissions of the
user's current roles. Every use of a grant applies it: the refresh grant (RFC 6749
section 6), introspection (RFC 7662 section 2.2 ``scope``) and userinfo (OIDC Core
section 5.4).
"""

from __future__ import annotations

from datetime import datetime

from keyturn.domain import SELF_SERVICE_SCOPES, OAuthClient
from keyturn.services.oauth2.client_rules import OIDC_SCOPES

# Scopes every user holds besides their permissions (consent decides the rest).
USER_SCOPES = frozenset(OIDC_SCOPES) | frozenset(SELF_SERVICE_SCOPES)
OFFLINE_ACCESS = "offline_access"
CLIENT_CREDENTIALS = "client_credentials"
# A client_credentials token names no user: no ID Token, no refresh (RFC 6749 4.4.3).
NOT_FOR_CLIENTS = frozenset({"openid", OFFLINE_ACCESS})


def user_grant_scope(granted: str, client: OAuthClient, held: frozenset[str]) -> frozenset[str]:
    """What a user's grant covers now: granted, still registered and still held.

    Empty when nothing of what was granted is left besides ``offline_access`` (a grant
    that can only renew itself covers nothing).
    """
    wanted = frozenset(granted.split())
    current = wanted & frozenset(client.scope.split()) & (USER_SCOPES | held)
    if not current - {OFFLINE_ACCESS} and wanted - {OFFLINE_ACCESS}:
        return frozenset()
    return current


def refreshable(scope: frozenset[str]) -> bool:
    """Whether a grant narrowed to ``scope`` may still be refreshed.

    OIDC Core section 11: refresh tokens live on ``offline_access``; with it gone (or the
    grant emptied, see ``user_grant_scope``) the grant is refused with ``invalid_grant``
    (RFC 6749 section 5.2).
    """
    return OFFLINE_ACCESS in scope


def client_grant_scope(granted: str, client: OAuthClient) -> frozenset[str]:
    """What a client_credentials token covers now: nothing once the client lost the
    grant type, else its scope within the client's current registration."""
    if CLIENT_CREDENTIALS not in client.grant_types:
        return frozenset()
    return frozenset(granted.split()) & (frozenset(client.scope.split()) - NOT_FOR_CLIENTS)


def issued_before_revocation(client: OAuthClient, issued_at: int) -> bool:
    """Whether a token issued at ``issued_at`` (JWT ``iat``, whole seconds) predates the
    client's last "revoke old tokens" rotation.

    ``iat`` has one-second resolution, so a token of the rotation's own second counts as
    old (the safe side); the token endpoint never issues one in that second
    (``wait_past_revocation``).
    """
    revoked = client.tokens_revoked_at
    return revoked is not None and issued_at <= int(revoked.timestamp())


def seconds_until_past_revocation(client: OAuthClient, now: datetime) -> float:
    """How long the token endpoint waits before issuing, so that a new token's ``iat`` is
    later than the revocation second (0 almost always: only right after a rotation)."""
    revoked = client.tokens_revoked_at
    if revoked is None:
        return 0.0
    boundary = int(revoked.timestamp()) + 1
    return max(0.0, boundary - now.timestamp())
