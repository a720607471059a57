"""The pure OAuth client registration rules (RFC 6749 §3.1.2, RFC 9700 §4.1, RFC 8252 §7-8)."""

from __future__ import annotations

import contextlib
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keyturn.errors import InvalidClientMetadata, InvalidRedirectUri, UnknownScope
from keyturn.services.oauth2 import (
    ClientMetadata,
    check_cors_origin,
    check_metadata,
    check_redirect_uri,
    normalize_scope,
)

GOOD_CONFIDENTIAL = [
    "https://app.example.com/cb",
    "https://app.example.com/cb/",
    "https://app.example.com",
    "https://app.example.com:8443/cb?x=1&y=%2F",
    "https://xn--bcher-kva.example/cb",
    "https://192.0.2.1/cb",
    "https://[2001:db8::1]:443/cb",
    "http://127.0.0.1/cb",
    "http://127.0.0.1:1/cb",
    "http://[::1]:65535/cb",
]
GOOD_PUBLIC_ONLY = ["com.example.app:/cb", "io.example.my-app:/oauth2/redirect"]
BAD_ANY = {
    "": "characters",
    "https://app.example.com/cb#": "fragment",
    "https://app.example.com/cb#x": "fragment",
    "https://user:pw@app.example.com/cb": "userinfo",
    "https://app.example.com@evil.example/cb": "userinfo",
    "https://*.example.com/cb": "wildcard",
    "https://app.example.com/cb*": "wildcard",
    "http://app.example.com/cb": "https",
    "http://10.0.0.1/cb": "https",
    "http://127.0.0.2/cb": "https",
    "http://localhost/cb": "localhost",
    "http://localhost:8080/cb": "localhost",
    "https://localhost/cb": "localhost",
    "https://dev.localhost/cb": "localhost",
    "http://127.0.0.1.nip.io/cb": "https",
    "http://[::1/cb": "host",
    "https://[zz::1]/cb": "host",
    "https://app.example.com:0/cb": "port",
    "https://app.example.com:99999/cb": "port",
    "https://app.example.com:x/cb": "port",
    "https://app.example.com:/cb": "port",
    "https:app.example.com/cb": "host",
    "https:///cb": "host",
    "//app.example.com/cb": "absolute",
    "cb": "absolute",
    "1https://app.example.com": "absolute",
    "javascript:alert(1)": "reverse domain",
    "data:text/html,x": "reverse domain",
    "file:///etc/passwd": "reverse domain",
    "HTTPS://app.example.com/cb": "lower case",
    "Http://127.0.0.1/cb": "lower case",
    "https://APP.example.com/cb": "lower-case",
    "https://app_x.example.com/cb": "lower-case",
    "https://app.example.com/a b": "RFC 3986",
    "https://app.example.com/\u00e9": "RFC 3986",
    "https://app.example.com\\@evil.example/": "RFC 3986",
    "https://app.example.com/%": "percent",
    "https://app.example.com/%4": "percent",
    "https://app.example.com/" + "a" * 2000: "characters",
    "com.example.app://cb": "com.example.app:/path",
    "com.example.app:cb": "com.example.app:/path",
    "com.example.app://user@cb": "userinfo",
    "myapp:/cb": "reverse domain",
    "Com.Example.App:/cb": "reverse domain",
}


@pytest.mark.parametrize("uri", GOOD_CONFIDENTIAL)
def test_good_uris_are_kept_exactly(uri: str) -> None:
    assert check_redirect_uri(uri, public=False) == uri
    assert check_redirect_uri(uri, public=True) == uri


@pytest.mark.parametrize("uri", GOOD_PUBLIC_ONLY)
def test_private_use_schemes_only_for_public_clients(uri: str) -> None:
    assert check_redirect_uri(uri, public=True) == uri
    with pytest.raises(InvalidRedirectUri, match="public"):
        check_redirect_uri(uri, public=False)


@pytest.mark.parametrize(("uri", "reason"), sorted(BAD_ANY.items()))
def test_mutants_are_refused_with_the_rule(uri: str, reason: str) -> None:
    with pytest.raises(InvalidRedirectUri, match=reason) as refused:
        check_redirect_uri(uri, public=True, field="redirect_uris.3")
    assert refused.value.code == "invalid_redirect_uri"
    assert refused.value.errors[0]["field"] == "redirect_uris.3"


LABEL = st.from_regex(r"^[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?$", fullmatch=True)
HOST = (
    st.lists(LABEL, min_size=2, max_size=4)
    .map(".".join)
    .filter(lambda host: host != "localhost" and not host.endswith(".localhost"))
)
PATH = st.from_regex(r"^(/[A-Za-z0-9._~-]{0,8}){0,4}$", fullmatch=True)


@given(host=HOST, path=PATH)
def test_https_uris_accepted_and_their_mutants_refused(host: str, path: str) -> None:
    uri = f"https://{host}{path}"
    assert check_redirect_uri(uri, public=False) == uri
    mutants = [
        f"{uri}#",
        f"{uri}#frag",
        f"https://good.example@{host}{path}",
        f"https://*.{host}{path}",
        f"http://{host}{path}",
        f"https://{host}{path}*",
        f"https://{host}:0{path}",
        f"https://{host}{path} ",
    ]
    for mutant in mutants:
        with pytest.raises(InvalidRedirectUri):
            check_redirect_uri(mutant, public=True)


@given(st.text(max_size=80))
def test_arbitrary_text_is_accepted_or_refused_cleanly(text: str) -> None:
    with contextlib.suppress(InvalidRedirectUri):
        assert check_redirect_uri(text, public=True) == text
    with contextlib.suppress(InvalidRedirectUri):
        assert check_cors_origin(text) == text


@pytest.mark.parametrize(
    "origin",
    [
        "https://app.example.com",
        "https://app.example.com:8443",
        "http://127.0.0.1:3000",
        "http://[::1]",
    ],
)
def test_good_origins(origin: str) -> None:
    assert check_cors_origin(origin) == origin


@pytest.mark.parametrize(
    "origin",
    [
        "https://app.example.com/",
        "https://app.example.com/x",
        "https://app.example.com?x",
        "http://app.example.com",
        "http://localhost:3000",
        "https://*.example.com",
        "https://App.example.com",
        "https://app.example.com:443",
        "http://127.0.0.1:80",
        "https://app.example.com:0",
        "https://u@app.example.com",
        "null",
        "*",
        "https://[zz::1]",
        "https://[::1",
    ],
)
def test_bad_origins(origin: str) -> None:
    with pytest.raises(InvalidRedirectUri):
        check_cors_origin(origin)


def test_scope_is_normalized_and_checked() -> None:
    assert normalize_scope("profile openid openid me:read") == "me:read openid profile"
    assert normalize_scope("users:write offline_access") == "offline_access users:write"
    with pytest.raises(UnknownScope) as unknown:
        normalize_scope("openid root")
    assert unknown.value.errors == [{"field": "scope", "message": "unknown: root"}]
    for bad in ("", "openid  email", " openid", "openid\temail", 'a"b', "x" * 1001):
        with pytest.raises(InvalidClientMetadata):
            normalize_scope(bad)


WEB = ClientMetadata(client_name="Web", redirect_uris=("https://app.example.com/cb",))
# KEYTURN_ID_TOKEN_ALGS by default.
ALGS = ("RS256", "ES256")


def test_metadata_defaults_and_derivations() -> None:
    checked = check_metadata(WEB, id_token_algs=ALGS)
    assert checked.response_types == ("code",)
    assert checked.scope == "openid"
    machine = check_metadata(
        ClientMetadata(client_name=" Batch ", grant_types=("client_credentials",)),
        id_token_algs=ALGS,
    )
    assert machine.response_types == ()
    assert machine.client_name == "Batch"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"client_name": ""}, "client_name"),
        ({"client_name": "a\x00b"}, "client_name"),
        ({"token_endpoint_auth_method": "tls_client_auth"}, "token_endpoint_auth_method"),
        ({"grant_types": ()}, "grant_types"),
        ({"grant_types": ("password",)}, "grant_types"),
        ({"grant_types": ("authorization_code", "authorization_code")}, "grant_types"),
        ({"grant_types": ("refresh_token",)}, "grant_types"),
        ({"response_types": ("token",)}, "response_types"),
        ({"response_types": ()}, "response_types"),
        ({"redirect_uris": ()}, "redirect_uris"),
        ({"redirect_uris": tuple(f"https://a.example/{n}" for n in range(21))}, "redirect_uris"),
        (
            {"token_endpoint_auth_method": "none", "grant_types": ("client_credentials",)},
            "grant_types",
        ),
        ({"token_endpoint_auth_method": "none", "require_pkce": False}, "require_pkce"),
        (
            {"allowed_cors_origins": ("https://a.example", "https://a.example")},
            "allowed_cors_origins",
        ),
        # Known to Keyturn, but not among the configured KEYTURN_ID_TOKEN_ALGS.
        ({"id_token_signed_response_alg": "EdDSA"}, "id_token_signed_response_alg"),
    ],
)
def test_metadata_rules(changes: dict[str, object], field: str) -> None:
    meta = replace(WEB, **changes)
    with pytest.raises(InvalidClientMetadata) as refused:
        check_metadata(meta, id_token_algs=ALGS)
    assert refused.value.errors[0]["field"] == field
