"""Mirror of the OpenID Foundation **Basic OP** test plan (oidcc-basic-certification-test-plan,
code flow, static client, client_secret_basic unless the module says otherwise).

Each test is named after the plan's module and its docstring states what the module
asserts. The app runs in-process behind httpx (ASGITransport); ID Tokens are checked with
PyJWT against the served JWKS; userinfo is called with the flow's own access token.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest
import time_machine
from fastapi import FastAPI

from conformance.oidf import at_hash, code_flow, jwks
from conftest import SettingsFactory
from helpers import admin_headers, bearer, csrf_from, lifespan, ui_login
from keyturn.app import create_app
from keyturn.config import Settings
from keyturn.domain import utcnow
from oauth_helpers import (
    REDIRECT,
    auth_params,
    code_for,
    pkce_pair,
    query_of,
    redeem,
    register,
    signed_in,
    token,
    verify_id_token,
)

pytestmark = pytest.mark.anyio
USERINFO = "/oauth2/userinfo"
NAME = "Ada Lovelace"


def pkce() -> tuple[str, dict[str, str]]:
    verifier, challenge = pkce_pair()
    return verifier, {"code_challenge": challenge, "code_challenge_method": "S256"}


# -- oidcc-server and the ID Token ---------------------------------------------------------


async def test_oidcc_server(app: FastAPI, client: httpx.AsyncClient, settings: Settings) -> None:
    """oidcc-server: a plain code flow succeeds; the authorization response carries the
    state sent; the token response has an access token of type Bearer and an ID Token
    whose iss, aud, sub, exp, iat verify, with a valid at_hash when present."""
    flow = await code_flow(app, client, settings.issuer, nonce="n-server")
    assert flow.query["state"].startswith("st-")
    assert flow.query["iss"] == settings.issuer  # RFC 9207
    assert flow.body["token_type"] == "Bearer"
    assert flow.body["access_token"]
    assert isinstance(flow.body["expires_in"], int)
    claims = flow.claims
    assert claims["aud"] == flow.oauth_client["client_id"]
    assert claims["nonce"] == "n-server"
    assert claims["sub"]
    assert claims["iat"] <= claims["exp"]
    assert claims["at_hash"] == at_hash(flow.body["access_token"])
    assert isinstance(claims["auth_time"], int)


async def test_oidcc_id_token_signature(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    """oidcc-id-token-signature: the ID Token's signature verifies with the key the JWKS
    publishes, and fails once a byte of the payload changes."""
    flow = await code_flow(app, client, settings.issuer)
    header_b64, payload_b64, signature = flow.body["id_token"].split(".")
    flipped = payload_b64[:-2] + ("A" if payload_b64[-2] != "A" else "B") + payload_b64[-1]
    with pytest.raises(jwt.InvalidTokenError):
        await verify_id_token(
            client,
            f"{header_b64}.{flipped}.{signature}",
            flow.oauth_client["client_id"],
            settings.issuer,
        )


async def test_oidcc_id_token_kid_absent_multiple_jwks(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    """oidcc-id-token-kid-absent-{single,multiple}-jwks (OP side): the JWKS holds several
    keys, so the ID Token header must name its key with a kid that selects exactly one
    JWKS entry, whose alg and use fit a signature."""
    flow = await code_flow(app, client, settings.issuer)
    keys = await jwks(client)
    assert len(keys) > 1
    kids = [key["kid"] for key in keys]
    assert len(kids) == len(set(kids)), "every JWKS kid is unique"
    header = jwt.get_unverified_header(flow.body["id_token"])
    assert header.get("kid") in kids
    (key,) = [key for key in keys if key["kid"] == header["kid"]]
    assert key["kty"] == "RSA"
    assert key.get("use", "sig") == "sig"
    assert key.get("alg", "RS256") == "RS256"
    assert "d" not in key  # never the private part


async def test_oidcc_id_token_unsigned(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    """oidcc-id-token-unsigned: the OP must never issue an unsigned (alg none) ID Token:
    discovery does not offer none, and the issued token is signed (RS256)."""
    discovery = (await client.get("/.well-known/openid-configuration")).json()
    assert "none" not in discovery["id_token_signing_alg_values_supported"]
    assert "RS256" in discovery["id_token_signing_alg_values_supported"]
    flow = await code_flow(app, client, settings.issuer)
    header = jwt.get_unverified_header(flow.body["id_token"])
    assert header["alg"] == "RS256"
    assert flow.body["id_token"].split(".")[2] != ""


async def test_oidcc_ensure_request_without_nonce_succeeds_for_code_flow(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    """oidcc-ensure-request-without-nonce-succeeds-for-code-flow: nonce is optional in the
    code flow; the ID Token then has no nonce."""
    flow = await code_flow(app, client, settings.issuer)
    assert "nonce" not in flow.claims


async def test_oidcc_ensure_other_scope_order_succeeds(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    """oidcc-ensure-other-scope-order-succeeds: scope values in another order (openid not
    first) are the same request."""
    flow = await code_flow(app, client, settings.issuer, scope="email openid")
    assert set(flow.body["scope"].split()) == {"email", "openid"}


# -- userinfo and the scopes ---------------------------------------------------------------


def userinfo_claims(answer: httpx.Response) -> dict[str, Any]:
    """OIDC Core 5.3.2: a 200 answer, plain JSON (no signed or encrypted userinfo is
    registered), never cached (it is personal data)."""
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.headers["cache-control"] == "no-store"
    claims: dict[str, Any] = answer.json()
    return claims


async def test_oidcc_userinfo_get(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    """oidcc-userinfo-get: after a code flow, GET userinfo with the access token in the
    ``Authorization: Bearer`` header (RFC 6750 2.1) answers the claims, whose sub equals
    the ID Token's sub (OIDC Core 5.3.2)."""
    flow = await code_flow(app, client, settings.issuer)
    answer = await client.get(USERINFO, headers=bearer(flow.body["access_token"]))
    assert userinfo_claims(answer) == {"sub": flow.claims["sub"]}


async def test_oidcc_userinfo_post_header(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    """oidcc-userinfo-post-header: the same with POST (OIDC Core 5.3.1 allows GET and
    POST), the token in the Authorization header and no body."""
    flow = await code_flow(app, client, settings.issuer)
    answer = await client.post(USERINFO, headers=bearer(flow.body["access_token"]))
    assert userinfo_claims(answer) == {"sub": flow.claims["sub"]}


async def test_oidcc_userinfo_post_body(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    """oidcc-userinfo-post-body: POST with the token as the ``access_token`` form
    parameter and no Authorization header (RFC 6750 2.2). The method is optional and the
    plan only warns on an HTTP error; Keyturn supports it: the claims, sub as in the ID
    Token."""
    flow = await code_flow(app, client, settings.issuer)
    answer = await client.post(USERINFO, data={"access_token": flow.body["access_token"]})
    assert userinfo_claims(answer) == {"sub": flow.claims["sub"]}


async def test_oidcc_scope_profile(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    """oidcc-scope-profile: scope openid profile is granted and the profile claims come
    from userinfo (OIDC Core 5.4: with an access token issued they go there, not into the
    ID Token). Keyturn's one profile claim is name; sub equals the ID Token's sub; no email
    claims without the email scope."""
    await signed_in(client, name=NAME)
    flow = await code_flow(app, client, settings.issuer, sign_in=False, scope="openid profile")
    assert set(flow.body["scope"].split()) == {"openid", "profile"}
    assert jwt.decode(flow.body["access_token"], options={"verify_signature": False})[
        "scope"
    ].split() == ["openid", "profile"]
    assert "name" not in flow.claims
    answer = await client.get(USERINFO, headers=bearer(flow.body["access_token"]))
    assert userinfo_claims(answer) == {"sub": flow.claims["sub"], "name": NAME}


async def test_oidcc_scope_email(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    """oidcc-scope-email: scope openid email is granted; userinfo answers email and
    email_verified (OIDC Core 5.4) with the ID Token's sub, and no profile claim (the user
    has a name, but profile was not asked for)."""
    email = await signed_in(client, name=NAME)
    flow = await code_flow(app, client, settings.issuer, sign_in=False, scope="openid email")
    assert set(flow.body["scope"].split()) == {"email", "openid"}
    answer = await client.get(USERINFO, headers=bearer(flow.body["access_token"]))
    assert userinfo_claims(answer) == {
        "sub": flow.claims["sub"],
        "email": email,
        "email_verified": False,
    }


async def _unsupported_scope(
    app: FastAPI,
    client: httpx.AsyncClient,
    settings: Settings,
    scope: str,
    unsupported: set[str],
) -> None:
    """What an OP without the ``unsupported`` scopes does, as the plan checks it.

    The scope modules first compare the requested scopes with discovery's
    ``scopes_supported`` and end as skipped when one is missing (the plan's
    OIDCCCheckScopesSupportedContainScopeTest), so discovery must not advertise them, nor
    their claims. No client may register the scope (``422 unknown_scope``). Asked anyway
    in an OpenID request, Keyturn ignores what it does not know (OIDC Core 3.1.2.1:
    unknown scope values SHOULD be ignored) and grants the rest: a code, and a token
    whose scope names none of the unsupported values, nor their claims.
    """
    discovery = (await client.get("/.well-known/openid-configuration")).json()
    assert not unsupported & set(discovery["scopes_supported"])
    assert {"openid", "profile", "email"} <= set(discovery["scopes_supported"])
    assert not {"address", "phone_number", "phone_number_verified"} & set(
        discovery["claims_supported"]
    )
    headers = await admin_headers(app, client)
    refused = await client.post(
        "/v1/admin/clients",
        json={"client_name": "Wants more", "redirect_uris": [REDIRECT], "scope": scope},
        headers=headers,
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["code"] == "unknown_scope"
    assert {error["message"] for error in refused.json()["errors"]} == {
        f"unknown: {name}" for name in unsupported
    }
    await signed_in(client, name=NAME)
    flow = await code_flow(app, client, settings.issuer, sign_in=False, scope=scope)
    assert flow.query["state"].startswith("st-")
    granted = set(flow.body["scope"].split())
    assert granted == set(scope.split()) - unsupported
    answer = await client.get(USERINFO, headers=bearer(flow.body["access_token"]))
    claims = userinfo_claims(answer)
    assert not {"address", "phone_number", "phone_number_verified"} & set(claims)
    assert ("name" in claims) == ("profile" in granted)


async def test_oidcc_scope_address(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    """oidcc-scope-address: Keyturn keeps no postal address, so the address scope is not
    supported; the plan skips the module when scopes_supported lacks it (see
    ``_unsupported_scope`` for what a request naming it gets: openid alone)."""
    await _unsupported_scope(app, client, settings, "openid address", {"address"})


async def test_oidcc_scope_phone(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    """oidcc-scope-phone: Keyturn keeps no phone number; as for address, the scope is not
    advertised (the plan skips the module) and a request naming it gets the rest."""
    await _unsupported_scope(app, client, settings, "openid phone", {"phone"})


async def test_oidcc_scope_all(app: FastAPI, client: httpx.AsyncClient, settings: Settings) -> None:
    """oidcc-scope-all: profile, email, address and phone at once. Not all are in
    scopes_supported, so the plan skips the module; the request gets what is supported
    (openid profile email) and nothing of address or phone."""
    await _unsupported_scope(
        app, client, settings, "openid profile email address phone", {"address", "phone"}
    )


async def test_oidcc_claims_essential(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    """oidcc-claims-essential: the request carries ``claims`` asking for name as an
    essential userinfo claim (OIDC Core 5.5) and the OP must answer with success; the plan
    only warns when name is missing from userinfo, or present in the ID Token.

    Keyturn does not support the claims parameter: discovery leaves
    claims_parameter_supported out (OIDC Discovery 1.0 section 3: absent means false), the
    parameter is ignored like any unknown one, and claims follow the scopes alone. With
    scope openid only, userinfo holds just sub, even though the user has a name (the
    warning the plan raises; never a failure)."""
    discovery = (await client.get("/.well-known/openid-configuration")).json()
    assert discovery.get("claims_parameter_supported", False) is False
    await signed_in(client, name=NAME)
    claims = json.dumps({"userinfo": {"name": {"essential": True}}})
    flow = await code_flow(app, client, settings.issuer, sign_in=False, claims=claims)
    assert flow.body["scope"] == "openid"
    assert "name" not in flow.claims
    answer = await client.get(USERINFO, headers=bearer(flow.body["access_token"]))
    assert userinfo_claims(answer) == {"sub": flow.claims["sub"]}


# -- prompt, max_age, hints ----------------------------------------------------------------


async def test_oidcc_prompt_login(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    """oidcc-prompt-login: with a session, prompt=login makes the user sign in again; the
    second ID Token's auth_time is later than the first's."""
    first = await code_flow(app, client, settings.issuer)
    verifier, extra = pkce()
    answer = await client.get(
        "/oauth2/authorize", params=auth_params(first.oauth_client, prompt="login", **extra)
    )
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/ui/login?")
    next_url = query_of(answer.headers["location"])["next"]
    email = await _email_of(client)
    with time_machine.travel(utcnow() + timedelta(seconds=3), tick=True):
        login = await ui_login(client, email, next=next_url)
        assert login.status_code == 303, login.text
        back = await client.get(login.headers["location"])
        assert back.headers["location"].startswith(REDIRECT + "?code=")
        answer = await redeem(
            client, first.oauth_client, query_of(back.headers["location"])["code"], verifier
        )
        assert answer.status_code == 200, answer.text
        claims = await verify_id_token(
            client, answer.json()["id_token"], first.oauth_client["client_id"], settings.issuer
        )
    assert claims["sub"] == first.claims["sub"]
    assert claims["auth_time"] > first.claims["auth_time"]


async def _email_of(client: httpx.AsyncClient) -> str:
    """The signed-in account's email (from the /ui/ page the session opens)."""
    page = await client.get("/ui/")
    assert page.status_code == 200, page.text
    found = [
        word
        for word in page.text.replace("<", " ").replace(">", " ").split()
        if "@example.com" in word
    ]
    assert found, page.text
    return found[0]


async def test_oidcc_prompt_none_not_logged_in(app: FastAPI, client: httpx.AsyncClient) -> None:
    """oidcc-prompt-none-not-logged-in: prompt=none without a session answers
    error=login_required at the redirect URI (with state), never a login page."""
    oauth_client = await register(app, client)
    _, extra = pkce()
    params = auth_params(oauth_client, prompt="none", **extra)
    answer = await client.get("/oauth2/authorize", params=params)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith(REDIRECT + "?")
    query = query_of(answer.headers["location"])
    assert query["error"] == "login_required"
    assert query["state"] == params["state"]


async def test_oidcc_prompt_none_logged_in(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    """oidcc-prompt-none-logged-in: with a session and consent, prompt=none returns a code
    straight away; its ID Token names the same user."""
    first = await code_flow(app, client, settings.issuer)
    second = await code_flow(
        app, client, settings.issuer, oauth_client=first.oauth_client, sign_in=False, prompt="none"
    )
    assert second.claims["sub"] == first.claims["sub"]


async def test_oidcc_max_age_1(app: FastAPI, client: httpx.AsyncClient, settings: Settings) -> None:
    """oidcc-max-age-1: after more than a second, max_age=1 makes the user sign in again;
    the new ID Token carries auth_time, later than the first sign-in."""
    first = await code_flow(app, client, settings.issuer)
    email = await _email_of(client)
    verifier, extra = pkce()
    with time_machine.travel(utcnow() + timedelta(seconds=2), tick=True):
        answer = await client.get(
            "/oauth2/authorize", params=auth_params(first.oauth_client, max_age="1", **extra)
        )
        assert answer.headers["location"].startswith("/ui/login?")
        login = await ui_login(client, email, next=query_of(answer.headers["location"])["next"])
        back = await client.get(login.headers["location"])
        assert back.headers["location"].startswith(REDIRECT + "?code=")
        code = query_of(back.headers["location"])["code"]
        answer = await redeem(client, first.oauth_client, code, verifier)
        assert answer.status_code == 200, answer.text
        claims = await verify_id_token(
            client, answer.json()["id_token"], first.oauth_client["client_id"], settings.issuer
        )
    assert claims["auth_time"] > first.claims["auth_time"]


async def test_oidcc_max_age_0(app: FastAPI, client: httpx.AsyncClient, settings: Settings) -> None:
    """max_age=0 (OIDC Core 3.1.2.1; pyoidc's check, not an OIDF module): in effect
    prompt=login. One fresh sign-in, then a code (never a second trip to the sign-in page);
    the ID Token's auth_time is the new sign-in."""
    first = await code_flow(app, client, settings.issuer)
    email = await _email_of(client)
    verifier, extra = pkce()
    with time_machine.travel(utcnow() + timedelta(seconds=2), tick=True):
        answer = await client.get(
            "/oauth2/authorize", params=auth_params(first.oauth_client, max_age="0", **extra)
        )
        assert answer.headers["location"].startswith("/ui/login?")
        login = await ui_login(client, email, next=query_of(answer.headers["location"])["next"])
        back = await client.get(login.headers["location"])
        assert back.headers["location"].startswith(REDIRECT + "?code="), back.headers
        code = query_of(back.headers["location"])["code"]
        answer = await redeem(client, first.oauth_client, code, verifier)
        assert answer.status_code == 200, answer.text
        claims = await verify_id_token(
            client, answer.json()["id_token"], first.oauth_client["client_id"], settings.issuer
        )
    assert claims["auth_time"] > first.claims["auth_time"]


async def test_oidcc_max_age_slow_consent(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    """max_age counts back from the authorization request (OIDC Core 3.1.2.1): a user
    who signed in within max_age=5 and presses Allow 6 seconds later gets the code, with
    the auth_time of that sign-in (not a second sign-in)."""
    oauth_client = await register(app, client)
    await signed_in(client)
    verifier, extra = pkce()
    answer = await client.get(
        "/oauth2/authorize", params=auth_params(oauth_client, max_age="5", **extra)
    )
    location = answer.headers["location"]
    assert location.startswith("/ui/consent?"), location
    page = await client.get(location)
    assert page.status_code == 200, page.text
    with time_machine.travel(utcnow() + timedelta(seconds=6), tick=True):
        fields = query_of(location)
        allowed = await client.post(
            "/ui/consent", data={"csrf_token": csrf_from(page.text), "decision": "allow", **fields}
        )
        assert allowed.headers["location"].startswith(REDIRECT + "?code="), allowed.headers
        code = query_of(allowed.headers["location"])["code"]
        answer = await redeem(client, oauth_client, code, verifier)
        assert answer.status_code == 200, answer.text


async def test_oidcc_max_age_10000(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    """oidcc-max-age-10000: a sign-in younger than max_age=10000 is reused (no login page);
    auth_time is present and unchanged."""
    first = await code_flow(app, client, settings.issuer)
    with time_machine.travel(utcnow() + timedelta(seconds=30), tick=True):
        second = await code_flow(
            app,
            client,
            settings.issuer,
            oauth_client=first.oauth_client,
            sign_in=False,
            max_age="10000",
        )
    assert second.claims["auth_time"] == first.claims["auth_time"]


async def test_oidcc_id_token_hint(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    """oidcc-id-token-hint: a second request with prompt=none and id_token_hint (the first
    ID Token) succeeds for the same user.

    Keyturn verifies the hint (our signature, ``typ: JWT``, ``iss``; any ``aud``) and
    answers positively because the signed-in user is the hinted one."""
    first = await code_flow(app, client, settings.issuer)
    second = await code_flow(
        app,
        client,
        settings.issuer,
        oauth_client=first.oauth_client,
        sign_in=False,
        prompt="none",
        id_token_hint=first.body["id_token"],
    )
    assert second.claims["sub"] == first.claims["sub"]


async def test_oidcc_id_token_hint_other_user(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    """id_token_hint (OIDC Core 3.1.2.1, beyond the OIDF module): with prompt=none and a
    hint naming a user who is not the signed-in one, the OP answers login_required
    rather than a code for someone else."""
    other = await code_flow(app, client, settings.issuer)
    client.cookies.clear()
    mine = await code_flow(app, client, settings.issuer, oauth_client=other.oauth_client)
    assert mine.claims["sub"] != other.claims["sub"]
    _, extra = pkce()
    params = auth_params(
        other.oauth_client, prompt="none", id_token_hint=other.body["id_token"], **extra
    )
    answer = await client.get("/oauth2/authorize", params=params)
    assert query_of(answer.headers["location"]).get("error") == "login_required"
    # Without prompt=none the signed-in user is asked to sign in as the hinted one.
    params.pop("prompt")
    answer = await client.get("/oauth2/authorize", params=params)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/ui/login?")


def flip_signature(token: str) -> str:
    """The token with one character in the middle of its signature changed."""
    at = len(token) - 10
    return token[:at] + ("B" if token[at] == "A" else "A") + token[at + 1 :]


@pytest.mark.parametrize(
    "hint",
    [
        pytest.param("not-a-jwt", id="garbage"),
        pytest.param("access-token", id="access-token-as-hint"),
        pytest.param("tampered", id="tampered-signature"),
    ],
)
async def test_oidcc_id_token_hint_not_ours(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings, hint: str
) -> None:
    """id_token_hint that is not an ID Token of this OP (garbage, an access token, a
    changed signature) is refused with invalid_request at the redirect URI, never read
    as a user."""
    flow = await code_flow(app, client, settings.issuer)
    values = {
        "not-a-jwt": "not-a-jwt",
        "access-token": flow.body["access_token"],
        "tampered": flip_signature(flow.body["id_token"]),
    }
    _, extra = pkce()
    params = auth_params(flow.oauth_client, id_token_hint=values[hint], **extra)
    answer = await client.get("/oauth2/authorize", params=params)
    assert answer.status_code == 303, answer.text
    query = query_of(answer.headers["location"])
    assert query["error"] == "invalid_request"
    assert query["state"] == params["state"]


async def test_oidcc_login_hint(app: FastAPI, client: httpx.AsyncClient) -> None:
    """oidcc-login-hint: login_hint is accepted; Keyturn prefills it as the email on the
    sign-in page."""
    oauth_client = await register(app, client)
    _, extra = pkce()
    hint = "hinted-user@example.com"
    answer = await client.get(
        "/oauth2/authorize", params=auth_params(oauth_client, login_hint=hint, **extra)
    )
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/ui/login?")
    page = await client.get(answer.headers["location"])
    assert page.status_code == 200
    assert f'value="{hint}"' in page.text


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({"display": "page"}, id="oidcc-display-page"),
        pytest.param({"display": "popup"}, id="oidcc-display-popup"),
        pytest.param({"ui_locales": "se"}, id="oidcc-ui-locales"),
        pytest.param({"claims_locales": "se"}, id="oidcc-claims-locales"),
        pytest.param({"acr_values": "1 2"}, id="oidcc-ensure-request-with-acr-values-succeeds"),
        pytest.param({"extra": "foobar"}, id="oidcc-unknown-parameter"),
    ],
)
async def test_oidcc_unknown_parameter(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings, extra: dict[str, str]
) -> None:
    """oidcc-unknown-parameter (and display, ui_locales, claims_locales, acr_values, which
    Keyturn does not implement): an authorization request parameter the OP does not know
    is ignored (OIDC Core 3.1.2.1) and the flow succeeds."""
    flow = await code_flow(app, client, settings.issuer, **extra)
    assert flow.claims["sub"]


# -- redirect URI and response type --------------------------------------------------------


async def test_oidcc_ensure_registered_redirect_uri(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """oidcc-ensure-registered-redirect-uri: a redirect_uri that is not registered is
    refused with an error page; the OP must not redirect to it."""
    oauth_client = await register(app, client)
    await signed_in(client)
    _, extra = pkce()
    params = auth_params(oauth_client, redirect_uri="https://evil.example/cb", **extra)
    answer = await client.get("/oauth2/authorize", params=params)
    assert answer.status_code == 400
    assert "location" not in answer.headers
    assert answer.headers["content-type"].startswith("text/html")


async def test_oidcc_ensure_redirect_uri_in_authorization_request(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """oidcc-ensure-redirect-uri-in-authorization-request: an OpenID request without
    redirect_uri is refused (error page, no redirect), even with one URI registered."""
    oauth_client = await register(app, client)
    await signed_in(client)
    _, extra = pkce()
    params = auth_params(oauth_client, redirect_uri=None, **extra)
    answer = await client.get("/oauth2/authorize", params=params)
    assert answer.status_code == 400
    assert "location" not in answer.headers


async def test_oidcc_response_type_missing(app: FastAPI, client: httpx.AsyncClient) -> None:
    """oidcc-response-type-missing: a request without response_type is an error sent back
    to the (valid) redirect URI with state: invalid_request or unsupported_response_type."""
    oauth_client = await register(app, client)
    await signed_in(client)
    _, extra = pkce()
    params = auth_params(oauth_client, **extra)
    del params["response_type"]
    answer = await client.get("/oauth2/authorize", params=params)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith(REDIRECT + "?")
    query = query_of(answer.headers["location"])
    assert query["error"] in {"invalid_request", "unsupported_response_type"}
    assert query["state"] == params["state"]


async def test_oidcc_ensure_post_request_succeeds(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    """oidcc-ensure-post-request-succeeds: the authorization request sent as a form POST
    (OIDC Core 3.1.2.1) works like the GET and yields a redeemable code."""
    oauth_client = await register(app, client)
    await code_flow(app, client, settings.issuer, oauth_client=oauth_client)  # consent stored
    verifier, extra = pkce()
    answer = await client.post("/oauth2/authorize", data=auth_params(oauth_client, **extra))
    assert answer.status_code == 303
    location = answer.headers["location"]
    assert location.startswith(REDIRECT + "?code=")
    redeemed = await redeem(client, oauth_client, query_of(location)["code"], verifier)
    assert redeemed.status_code == 200, redeemed.text
    await verify_id_token(
        client, redeemed.json()["id_token"], oauth_client["client_id"], settings.issuer
    )


# -- PKCE -----------------------------------------------------------------------------------


async def test_oidcc_ensure_request_with_valid_pkce_succeeds(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    """oidcc-ensure-request-with-valid-pkce-succeeds: S256 challenge and matching verifier
    give tokens."""
    flow = await code_flow(app, client, settings.issuer)
    assert flow.body["access_token"]


async def _pkce_code(app: FastAPI, client: httpx.AsyncClient) -> tuple[dict[str, Any], str, str]:
    oauth_client = await register(app, client)
    await signed_in(client)
    verifier, extra = pkce()
    code, _ = await code_for(client, oauth_client, **extra)
    return oauth_client, code, verifier


async def test_oidcc_ensure_pkce_code_verifier_required(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """PKCE (RFC 7636 4.6): a code issued for a challenge is refused without the verifier
    (invalid_grant), and is burned: the right verifier afterwards fails too."""
    oauth_client, code, verifier = await _pkce_code(app, client)
    missing = await token(
        client, oauth_client, grant_type="authorization_code", code=code, redirect_uri=REDIRECT
    )
    assert missing.status_code == 400
    assert missing.json()["error"] == "invalid_grant"
    assert (await redeem(client, oauth_client, code, verifier)).json()["error"] == "invalid_grant"


async def test_oidcc_ensure_pkce_invalid_code_verifier(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """PKCE: a wrong verifier is invalid_grant."""
    oauth_client, code, _ = await _pkce_code(app, client)
    wrong, _ = pkce_pair()
    answer = await redeem(client, oauth_client, code, wrong)
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_grant"


async def test_oidcc_ensure_pkce_plain_method_refused(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """PKCE: the plain method is refused at the authorization endpoint (invalid_request
    at the redirect URI); discovery offers S256 only."""
    oauth_client = await register(app, client)
    await signed_in(client)
    verifier, _ = pkce_pair()
    params = auth_params(oauth_client, code_challenge=verifier[:43], code_challenge_method="plain")
    answer = await client.get("/oauth2/authorize", params=params)
    assert query_of(answer.headers["location"])["error"] == "invalid_request"
    discovery = (await client.get("/.well-known/openid-configuration")).json()
    assert discovery["code_challenge_methods_supported"] == ["S256"]


# -- the token endpoint ---------------------------------------------------------------------


async def test_oidcc_codereuse(app: FastAPI, client: httpx.AsyncClient, settings: Settings) -> None:
    """oidcc-codereuse: a code redeemed twice: the second answer is invalid_grant, and the
    tokens of the first redemption should be revoked (RFC 6749 4.1.2): the refresh token
    stops working."""
    oauth_client, code, verifier = await _pkce_code(app, client)
    first = await redeem(client, oauth_client, code, verifier)
    assert first.status_code == 200, first.text
    again = await redeem(client, oauth_client, code, verifier)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"
    await _refresh_revoked(client, oauth_client, first.json())


async def _refresh_revoked(
    client: httpx.AsyncClient, oauth_client: dict[str, Any], body: dict[str, Any]
) -> None:
    if "refresh_token" not in body:  # only with offline_access
        return
    refreshed = await token(
        client, oauth_client, grant_type="refresh_token", refresh_token=body["refresh_token"]
    )
    assert refreshed.status_code == 400
    assert refreshed.json()["error"] == "invalid_grant"


async def test_oidcc_codereuse_30seconds(app: FastAPI, client: httpx.AsyncClient) -> None:
    """oidcc-codereuse-30seconds: the same as oidcc-codereuse, the second redemption 30
    seconds later (time-machine, no sleep): invalid_grant, and the first tokens revoked."""
    oauth_client = await register(app, client)
    await signed_in(client)
    verifier, extra = pkce()
    code, _ = await code_for(client, oauth_client, scope="openid offline_access", **extra)
    first = await redeem(client, oauth_client, code, verifier)
    assert first.status_code == 200, first.text
    assert "refresh_token" in first.json()
    with time_machine.travel(utcnow() + timedelta(seconds=30), tick=True):
        again = await redeem(client, oauth_client, code, verifier)
        assert again.status_code == 400
        assert again.json()["error"] == "invalid_grant"
        await _refresh_revoked(client, oauth_client, first.json())


async def test_oidcc_client_secret_post(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    """oidcc-server-client-secret-post: a client registered for client_secret_post
    authenticates with client_id and client_secret in the form body; Basic is refused."""
    oauth_client = await register(app, client, token_endpoint_auth_method="client_secret_post")
    await signed_in(client)
    verifier, extra = pkce()
    code, _ = await code_for(client, oauth_client, **extra)
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
        "client_id": oauth_client["client_id"],
        "client_secret": oauth_client["client_secret"],
    }
    answer = await client.post("/oauth2/token", data=form)
    assert answer.status_code == 200, answer.text
    await verify_id_token(
        client, answer.json()["id_token"], oauth_client["client_id"], settings.issuer
    )
    # The registered method only: HTTP Basic for the same client fails.
    basic_answer = await token(client, oauth_client, grant_type="authorization_code", code="A" * 43)
    assert basic_answer.status_code == 401
    assert basic_answer.json()["error"] == "invalid_client"


async def test_oidcc_refresh_token(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    """oidcc-refresh-token: with offline_access the token answer has a refresh token; it
    gives a new access token (and a rotated refresh token); the ID Token returned keeps iss,
    sub, aud and auth_time, has a later iat and no nonce or azp (OIDC Core 12.2); another
    client cannot use the refresh token."""
    flow = await code_flow(
        app, client, settings.issuer, scope="openid offline_access", nonce="n-refresh"
    )
    assert flow.body["refresh_token"]
    assert flow.claims["nonce"] == "n-refresh"
    # Five seconds later, so the new iat must differ (section 12.2).
    with time_machine.travel(utcnow() + timedelta(seconds=5)):
        refreshed = await token(
            client,
            flow.oauth_client,
            grant_type="refresh_token",
            refresh_token=flow.body["refresh_token"],
        )
        assert refreshed.status_code == 200, refreshed.text
        body = refreshed.json()
        again = await verify_id_token(
            client, body["id_token"], flow.oauth_client["client_id"], settings.issuer
        )
    assert body["token_type"] == "Bearer"
    assert body["access_token"] != flow.body["access_token"]
    assert body["refresh_token"] != flow.body["refresh_token"]
    for claim in ("iss", "sub", "aud", "auth_time", "amr", "acr"):
        assert again[claim] == flow.claims[claim], claim
    assert again["iat"] > flow.claims["iat"]
    assert "nonce" not in again
    assert "azp" not in again
    assert again["at_hash"] == at_hash(body["access_token"])
    access = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert access["sub"] == flow.claims["sub"]
    other = await register(app, client)
    stolen = await token(
        client, other, grant_type="refresh_token", refresh_token=body["refresh_token"]
    )
    assert stolen.status_code == 400
    assert stolen.json()["error"] == "invalid_grant"


# -- key rotation ---------------------------------------------------------------------------


async def test_oidcc_key_rotation_mid_flow(
    make_settings: SettingsFactory, private_database_url: str
) -> None:
    """Signing keys rotate between authorize and token, and between token and
    verification: each ID Token still verifies through the JWKS (a new kid after the
    first rotation; the retired key stays published for the second). A database of its
    own: the shared one must not see forced rotations."""
    settings = make_settings(database_url=private_database_url)
    application = create_app(settings)
    async with lifespan(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            keys = application.state.services.keys
            oauth_client = await register(application, client)
            await signed_in(client)
            verifier, extra = pkce()
            code, _ = await code_for(client, oauth_client, **extra)
            before = keys.signer_for("RS256").kid
            await keys.rotate(force=True)  # between authorize and token
            answer = await redeem(client, oauth_client, code, verifier)
            assert answer.status_code == 200, answer.text
            id_token = answer.json()["id_token"]
            assert jwt.get_unverified_header(id_token)["kid"] != before
            await keys.rotate(force=True)  # between token and verification
            claims = await verify_id_token(
                client, id_token, oauth_client["client_id"], settings.issuer
            )
            assert claims["sub"]
