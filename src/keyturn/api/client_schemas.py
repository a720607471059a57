"""Bodies of ``/v1/admin/clients``: RFC 7591 client metadata names, exactly.

The schema bounds sizes and spells the allowed values; the registration rules (redirect
URIs, public clients, scope names) are the service's (``services.oauth_client_rules``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, Self

from pydantic import BaseModel, Field, StringConstraints, model_validator

from keyturn.api.schemas import Name, Request
from keyturn.domain import OAuthClient
from keyturn.services.oauth2 import (
    MAX_LIST_ITEMS,
    MAX_SCOPE_LENGTH,
    MAX_URI_LENGTH,
    ClientMetadata,
    ClientPage,
    ClientPatch,
    CreatedClient,
)

Uri = Annotated[str, StringConstraints(min_length=1, max_length=MAX_URI_LENGTH)]
UriList = Annotated[list[Uri], Field(max_length=MAX_LIST_ITEMS)]
# RFC 7591 section 2 client_uri / policy_uri / tos_uri: https pages shown to the user.
PageUri = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_URI_LENGTH),
    Field(description="An https URL shown to the user on the consent page"),
]
ClearablePageUri = Annotated[
    str,
    StringConstraints(max_length=MAX_URI_LENGTH),
    Field(description='An https URL shown on the consent page; "" removes it'),
]
GrantType = Literal["authorization_code", "refresh_token", "client_credentials"]
ResponseType = Literal["code"]
AuthMethod = Literal["client_secret_basic", "client_secret_post", "none"]
# The algorithms Keyturn can sign with; the service allows those in KEYTURN_ID_TOKEN_ALGS.
IdTokenAlg = Literal["RS256", "ES256", "EdDSA"]
Scope = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_SCOPE_LENGTH),
    Field(description="Space-delimited scopes the client may request (RFC 6749 section 3.3)"),
]
# RFC 7591 section 2 defaults.
_DEFAULT_METHOD: AuthMethod = "client_secret_basic"
# OpenID Connect Registration 1.0 section 2 default.
_DEFAULT_ID_ALG: IdTokenAlg = "RS256"


def _default_grants() -> list[GrantType]:
    return ["authorization_code"]


GrantTypes = Annotated[list[GrantType], Field(min_length=1, max_length=3)]
ResponseTypes = Annotated[list[ResponseType], Field(max_length=1)]


class ClientIn(Request):
    """A new client. Omitted fields take the RFC 7591 section 2 defaults."""

    client_name: Name
    redirect_uris: UriList = Field(default_factory=list)
    post_logout_redirect_uris: UriList = Field(default_factory=list)
    grant_types: GrantTypes = Field(default_factory=_default_grants)
    # Omitted or null: ["code"] with the authorization_code grant, else [].
    response_types: ResponseTypes | None = None
    scope: Scope = "openid"
    token_endpoint_auth_method: AuthMethod = _DEFAULT_METHOD
    allowed_cors_origins: UriList = Field(default_factory=list)
    require_pkce: bool = True
    id_token_signed_response_alg: IdTokenAlg = _DEFAULT_ID_ALG
    client_uri: PageUri | None = None
    policy_uri: PageUri | None = None
    tos_uri: PageUri | None = None

    def metadata(self) -> ClientMetadata:
        return ClientMetadata(
            client_name=self.client_name,
            redirect_uris=tuple(self.redirect_uris),
            post_logout_redirect_uris=tuple(self.post_logout_redirect_uris),
            grant_types=tuple(self.grant_types),
            response_types=None if self.response_types is None else tuple(self.response_types),
            scope=self.scope,
            token_endpoint_auth_method=self.token_endpoint_auth_method,
            allowed_cors_origins=tuple(self.allowed_cors_origins),
            require_pkce=self.require_pkce,
            id_token_signed_response_alg=self.id_token_signed_response_alg,
            client_uri=self.client_uri,
            policy_uri=self.policy_uri,
            tos_uri=self.tos_uri,
        )


class ClientPatchIn(Request):
    """PATCH: only the fields sent change; none of them may be null."""

    client_name: Name | None = None
    redirect_uris: UriList | None = None
    post_logout_redirect_uris: UriList | None = None
    grant_types: GrantTypes | None = None
    response_types: ResponseTypes | None = None
    scope: Scope | None = None
    token_endpoint_auth_method: AuthMethod | None = None
    allowed_cors_origins: UriList | None = None
    require_pkce: bool | None = None
    id_token_signed_response_alg: IdTokenAlg | None = None
    client_uri: ClearablePageUri | None = None
    policy_uri: ClearablePageUri | None = None
    tos_uri: ClearablePageUri | None = None

    @model_validator(mode="after")
    def _no_nulls(self) -> Self:
        # null would be ambiguous (clear? default?); leaving a field out keeps it.
        nulls = sorted(name for name in self.model_fields_set if getattr(self, name) is None)
        if nulls:
            raise ValueError(f"may not be null (leave the field out to keep it): {nulls}")
        return self

    def patch(self) -> ClientPatch:
        def tupled(values: list[str] | None) -> tuple[str, ...] | None:
            return None if values is None else tuple(values)

        return ClientPatch(
            client_name=self.client_name,
            redirect_uris=tupled(self.redirect_uris),
            post_logout_redirect_uris=tupled(self.post_logout_redirect_uris),
            grant_types=None if self.grant_types is None else tuple(self.grant_types),
            response_types=None if self.response_types is None else tuple(self.response_types),
            scope=self.scope,
            token_endpoint_auth_method=self.token_endpoint_auth_method,
            allowed_cors_origins=tupled(self.allowed_cors_origins),
            require_pkce=self.require_pkce,
            id_token_signed_response_alg=self.id_token_signed_response_alg,
            client_uri=self.client_uri,
            policy_uri=self.policy_uri,
            tos_uri=self.tos_uri,
        )


class ClientOut(BaseModel):
    """A registered client (RFC 7591 section 3.2.1 names); never its secret."""

    client_id: str
    client_name: str
    redirect_uris: list[str]
    post_logout_redirect_uris: list[str]
    grant_types: list[str]
    response_types: list[str]
    scope: str
    token_endpoint_auth_method: str
    allowed_cors_origins: list[str]
    require_pkce: bool
    id_token_signed_response_alg: str
    client_uri: str | None
    policy_uri: str | None
    tos_uri: str | None
    client_id_issued_at: int = Field(description="Seconds since the epoch (RFC 7591)")
    created_at: datetime
    updated_at: datetime
    secret_rotated_at: datetime | None

    @classmethod
    def of(cls, client: OAuthClient) -> ClientOut:
        return cls(**_fields(client))


class ClientWithSecret(ClientOut):
    """A confidential client right after creation or rotation: the secret, exactly once."""

    client_secret: str
    client_secret_expires_at: int = Field(0, description="0: the secret does not expire")

    @classmethod
    def of_secret(cls, client: OAuthClient, secret: str) -> ClientWithSecret:
        return cls(**_fields(client), client_secret=secret)


def created_answer(created: CreatedClient) -> ClientWithSecret | ClientOut:
    """With ``client_secret`` for a confidential client; a public one has none."""
    if created.client_secret is None:
        return ClientOut.of(created.client)
    return ClientWithSecret.of_secret(created.client, created.client_secret)


class ClientList(BaseModel):
    items: list[ClientOut]
    next_cursor: str | None

    @classmethod
    def of(cls, page: ClientPage) -> ClientList:
        return cls(items=[ClientOut.of(item) for item in page.items], next_cursor=page.next_cursor)


def _fields(client: OAuthClient) -> dict[str, object]:
    return {
        "client_id": client.client_id,
        "client_name": client.client_name,
        "redirect_uris": list(client.redirect_uris),
        "post_logout_redirect_uris": list(client.post_logout_redirect_uris),
        "grant_types": list(client.grant_types),
        "response_types": list(client.response_types),
        "scope": client.scope,
        "token_endpoint_auth_method": client.token_endpoint_auth_method,
        "allowed_cors_origins": list(client.allowed_cors_origins),
        "require_pkce": client.require_pkce,
        "id_token_signed_response_alg": client.id_token_signed_response_alg,
        "client_uri": client.client_uri,
        "policy_uri": client.policy_uri,
        "tos_uri": client.tos_uri,
        "client_id_issued_at": int(client.created_at.timestamp()),
        "created_at": client.created_at,
        "updated_at": client.updated_at,
        "secret_rotated_at": client.secret_rotated_at,
    }
