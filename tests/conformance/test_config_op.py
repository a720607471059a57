"""Mirror of the OpenID Foundation **Config OP** test plan (oidcc-config-certification-test-plan):
the discovery document (OpenID Connect Discovery 1.0 sections 3 and 4, RFC 8414)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from keyturn.config import Settings

pytestmark = pytest.mark.anyio

REQUIRED = (
    "issuer",
    "authorization_endpoint",
    "token_endpoint",
    "jwks_uri",
    "response_types_supported",
    "subject_types_supported",
    "id_token_signing_alg_values_supported",
)


async def document(client: httpx.AsyncClient, path: str) -> dict[str, Any]:
    answer = await client.get(path)
    assert answer.status_code == 200, answer.text
    # application/json, or application/jwk-set+json for the JWKS (RFC 7517 section 8.5).
    assert answer.headers["content-type"].split(";")[0] in {
        "application/json",
        "application/jwk-set+json",
    }
    body: dict[str, Any] = answer.json()
    return body


async def test_oidcc_discovery_openid_config(client: httpx.AsyncClient, settings: Settings) -> None:
    """oidcc-discovery-openid-config: the document has every REQUIRED field; issuer equals
    the configured issuer exactly (no trailing slash added or lost); every endpoint sits
    under the issuer and answers (not 404/5xx); jwks_uri serves RSA keys for RS256; code
    is a supported response type; alg none is never offered; request objects are not
    claimed (Discovery section 3: request_uri_parameter_supported defaults to true)."""
    config = await document(client, "/.well-known/openid-configuration")
    for name in REQUIRED:
        assert config.get(name), name
    assert config["issuer"] == settings.issuer
    assert "code" in config["response_types_supported"]
    assert "public" in config["subject_types_supported"]
    assert "RS256" in config["id_token_signing_alg_values_supported"]
    assert "none" not in config["id_token_signing_alg_values_supported"]
    assert "openid" in config["scopes_supported"]
    assert config.get("request_parameter_supported", False) is False
    assert config.get("request_uri_parameter_supported", True) is False
    base = settings.issuer.rstrip("/")
    endpoints = {
        name: url
        for name, url in config.items()
        if name.endswith("_endpoint") or name == "jwks_uri"
    }
    for name, url in endpoints.items():
        assert url.startswith(base + "/"), (name, url)
        assert url.startswith("https://") or url.startswith("http://"), (name, url)
    authorize = await client.get(config["authorization_endpoint"])
    assert authorize.status_code == 400  # the error page: no client named
    token = await client.post(config["token_endpoint"], data={"grant_type": "nonsense"})
    assert token.status_code in {400, 401}, token.text
    assert "error" in token.json()
    keys = await document(client, config["jwks_uri"])
    assert any(key["kty"] == "RSA" for key in keys["keys"])
    for name in set(endpoints) - {"authorization_endpoint", "token_endpoint", "jwks_uri"}:
        answer = await client.request("OPTIONS", endpoints[name])
        assert answer.status_code != 404, name
        assert answer.status_code < 500, name


async def test_oidcc_discovery_issuer_consistency(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    """Both well-known documents (OIDC Discovery 4 and RFC 8414 3) agree field for field,
    and their issuer is the one in every authorization response (RFC 8414 3.3)."""
    openid = await document(client, "/.well-known/openid-configuration")
    oauth = await document(client, "/.well-known/oauth-authorization-server")
    assert openid == oauth
    assert oauth["issuer"] == settings.issuer
    assert openid["authorization_response_iss_parameter_supported"] is True
