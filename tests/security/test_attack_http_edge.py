"""Attacks on the HTTP edge (issue 12 findings 4, 10, 11, 15).

ASVS v5.0.0 requirements proved here: 2.4.1 and 6.3.1 (anti-automation that an attacker
cannot escape by rotating IPv6 addresses), 16.5.3 (a client hanging up mid-body is no
server error), 13.3.1 (local secrets and database files readable by their owner only),
9.1.1 / 11.6.1 (a token's signature is not malleable: a high-S ECDSA twin is refused).
"""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from fastapi import FastAPI
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pydantic import ValidationError
from structlog.testing import capture_logs

from conftest import SettingsFactory
from helpers import PASSWORD, bearer, new_email, running_app, serving, signup_login
from keyturn.config import Settings, load_settings
from keyturn.db.migrate import upgrade
from keyturn.errors import InvalidToken
from keyturn.observability.metrics import REGISTRY
from keyturn.security.jose import JosePolicy, Signer, Verifier
from keyturn.security.keys import KeyMaterial, generate_key
from keyturn.security.networks import ip_limit_key

pytestmark = pytest.mark.anyio

PROXY = "10.0.0.5"


def _via(address: str) -> dict[str, str]:
    """Headers of a request the trusted proxy forwards for ``address``."""
    return {"X-Forwarded-For": address}


async def _signup(http: httpx.AsyncClient, address: str) -> int:
    body = {"email": new_email(), "password": PASSWORD}
    return (await http.post("/v1/auth/signup", json=body, headers=_via(address))).status_code


# --- Finding 4: IPv6 rotation inside one /64 -------------------------------------------------


async def test_asvs_2_4_1_ipv6_rotation_within_a_64_hits_the_signup_limit(
    make_settings: SettingsFactory,
) -> None:
    """Every signup from a new address of one /64 still counts against that /64."""
    settings = make_settings(trusted_proxies=[PROXY], limit_signups_per_ip_per_hour=3)
    async with serving(settings, default_peer=PROXY) as connect:
        http = connect()
        statuses = [await _signup(http, f"2001:db8:1:2::{n:x}") for n in range(1, 5)]
        assert statuses == [202, 202, 202, 429]
        # Another address of the same /64, written differently, is the same client.
        assert await _signup(http, "2001:0db8:0001:0002:ffff:ffff:ffff:ffff") == 429
        # The neighbouring /64 is another subscriber and keeps its own budget.
        assert await _signup(http, "2001:db8:1:3::1") == 202


async def test_asvs_2_4_1_ipv6_prefix_setting_decides_the_network(
    make_settings: SettingsFactory,
) -> None:
    """KEYTURN_LIMIT_IPV6_PREFIX=48 lumps a /48 together; 128 keys on the full address."""
    wide = make_settings(
        trusted_proxies=[PROXY], limit_signups_per_ip_per_hour=2, limit_ipv6_prefix=48
    )
    async with serving(wide, default_peer=PROXY) as connect:
        http = connect()
        assert [await _signup(http, f"2001:db8:5:{n}::1") for n in range(1, 4)] == [
            202,
            202,
            429,
        ]
    exact = make_settings(
        trusted_proxies=[PROXY], limit_signups_per_ip_per_hour=1, limit_ipv6_prefix=128
    )
    async with serving(exact, default_peer=PROXY) as connect:
        http = connect()
        assert [await _signup(http, f"2001:db8:6::{n}") for n in range(1, 4)] == [202] * 3


async def test_asvs_2_4_1_ipv4_mapped_ipv6_counts_as_the_ipv4_address(
    make_settings: SettingsFactory,
) -> None:
    """A dual-stack socket reports ``::ffff:a.b.c.d``: the same client as ``a.b.c.d``."""
    settings = make_settings(limit_signups_per_ip_per_hour=2)
    async with serving(settings, default_peer=PROXY) as connect:
        mapped, plain = connect("::ffff:192.0.2.9"), connect("192.0.2.9")
        body = {"email": new_email(), "password": PASSWORD}
        assert (await mapped.post("/v1/auth/signup", json=body)).status_code == 202
        body = {"email": new_email(), "password": PASSWORD}
        assert (await plain.post("/v1/auth/signup", json=body)).status_code == 202
        body = {"email": new_email(), "password": PASSWORD}
        assert (await mapped.post("/v1/auth/signup", json=body)).status_code == 429
        # IPv4 neighbours stay separate clients (no prefix grouping for IPv4).
        other = connect("192.0.2.10")
        body = {"email": new_email(), "password": PASSWORD}
        assert (await other.post("/v1/auth/signup", json=body)).status_code == 202


async def test_asvs_6_3_1_ipv6_rotation_hits_the_credential_endpoint_ceiling(
    make_settings: SettingsFactory,
) -> None:
    """The per-IP ceiling on credential endpoints counts the /64, not the address."""
    settings = make_settings(trusted_proxies=[PROXY], limit_ip_per_minute=3)
    async with serving(settings, default_peer=PROXY) as connect:
        http = connect()
        body = {"email": new_email(), "password": "wrong password 12345"}
        statuses = [
            (
                await http.post("/v1/auth/login", json=body, headers=_via(f"2001:db8:7::{n}"))
            ).status_code
            for n in range(1, 5)
        ]
        assert statuses == [401, 401, 401, 429]


async def test_asvs_6_3_1_ipv6_rotation_hits_the_account_and_network_failure_limit(
    make_settings: SettingsFactory,
) -> None:
    """Failed passwords for one account from a rotating /64 reach the pair limit (429)."""
    settings = make_settings(trusted_proxies=[PROXY], limit_failures_per_account_ip=3)
    async with serving(settings, default_peer=PROXY) as connect:
        http = connect()
        email = new_email()
        signup = {"email": email, "password": PASSWORD}
        assert (
            await http.post("/v1/auth/signup", json=signup, headers=_via("192.0.2.1"))
        ).status_code == 202
        wrong = {"email": email, "password": "wrong password 12345"}
        statuses = [
            (
                await http.post("/v1/auth/login", json=wrong, headers=_via(f"2001:db8:8::{n}"))
            ).status_code
            for n in range(1, 5)
        ]
        assert statuses == [401, 401, 401, 429]
        # The owner on another network is not locked out by that network's failures.
        right = {"email": email, "password": PASSWORD}
        owner = await http.post("/v1/auth/login", json=right, headers=_via("2001:db8:9::1"))
        assert owner.status_code == 200, owner.text


async def test_asvs_6_3_1_ipv6_rotation_hits_the_api_key_and_refresh_token_limits(
    make_settings: SettingsFactory,
) -> None:
    """Credentials that name no account (API keys, refresh tokens) are limited per network
    too: guessing them from fresh addresses of one /64 is throttled like passwords."""
    settings = make_settings(trusted_proxies=[PROXY], limit_failures_per_account_ip=2)
    async with serving(settings, default_peer=PROXY) as connect:
        http = connect()
        keys = [
            (
                await http.get(
                    "/v1/me",
                    headers={
                        "Authorization": f"Bearer kt_abcdefgh_{'A' * 43}",
                        **_via(f"2001:db8:d::{n}"),
                    },
                )
            ).status_code
            for n in range(1, 4)
        ]
        assert keys == [401, 401, 429]
        refreshes = [
            (
                await http.post(
                    "/v1/auth/refresh",
                    json={"refresh_token": "B" * 43},
                    headers=_via(f"2001:db8:e::{n}"),
                )
            ).status_code
            for n in range(1, 4)
        ]
        assert refreshes == [401, 401, 429]


async def test_asvs_2_4_1_sessions_and_audit_keep_the_real_ipv6_address(
    make_settings: SettingsFactory,
) -> None:
    """Only limiter keys use the prefix; the session list shows the full address."""
    settings = make_settings(trusted_proxies=[PROXY])
    async with serving(settings, default_peer=PROXY) as connect:
        http = connect()
        email, address = new_email(), "2001:db8:a:b:1:2:3:4"
        body = {"email": email, "password": PASSWORD}
        assert (
            await http.post("/v1/auth/signup", json=body, headers=_via(address))
        ).status_code == 202
        login = await http.post("/v1/auth/login", json=body, headers=_via(address))
        assert login.status_code == 200, login.text
        auth = {"Authorization": f"Bearer {login.json()['access_token']}", **_via(address)}
        (item,) = (await http.get("/v1/me/sessions", headers=auth)).json()["items"]
        assert item["ip"] == address


@pytest.mark.parametrize(
    ("ip", "prefix", "expected"),
    [
        ("192.0.2.1", 64, "192.0.2.1"),
        ("::ffff:192.0.2.1", 64, "192.0.2.1"),
        ("::ffff:c000:201", 64, "192.0.2.1"),
        ("2001:db8:1:2:3:4:5:6", 64, "2001:db8:1:2::/64"),
        ("2001:DB8:1:2::", 64, "2001:db8:1:2::/64"),
        ("2001:db8:1:2:3:4:5:6", 56, "2001:db8:1::/56"),
        ("2001:db8:1:2:3:4:5:6", 128, "2001:db8:1:2:3:4:5:6/128"),
        ("::1", 64, "::/64"),
        (None, 64, "-"),
        ("", 64, "-"),
        ("testclient", 64, "testclient"),
    ],
)
def test_asvs_2_4_1_ip_limit_key(ip: str | None, prefix: int, expected: str) -> None:
    assert ip_limit_key(ip, prefix) == expected


@pytest.mark.parametrize("prefix", ["0", "129", "-1", "sixty"])
def test_asvs_2_4_1_ipv6_prefix_setting_is_validated(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEYTURN_LIMIT_IPV6_PREFIX", prefix)
    with pytest.raises(ValidationError, match="limit_ipv6_prefix"):
        Settings()


# --- Finding 15: ECDSA signature malleability (high-S twins) -------------------------------

# Order n of the P-256 group (SEC 2 v2 section 2.4.2; FIPS 186-5 / SP 800-186 section 3.2.1.3).
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _s_of(token: str) -> int:
    return int.from_bytes(_b64decode(token.rsplit(".", 1)[1])[32:], "big")


def _twin(token: str) -> str:
    """The same token with ``s`` replaced by ``n - s``: an equally valid ECDSA signature."""
    signing_input, signature = token.rsplit(".", 1)
    raw = _b64decode(signature)
    r, s = raw[:32], int.from_bytes(raw[32:], "big")
    return f"{signing_input}.{_b64encode(r + (P256_N - s).to_bytes(32, 'big'))}"


def _ecdsa_valid(token: str, jwk: dict[str, Any]) -> bool:
    """An independent check (cryptography, not our facade) that the signature is valid."""
    public = ec.EllipticCurvePublicNumbers(
        int.from_bytes(_b64decode(jwk["x"]), "big"),
        int.from_bytes(_b64decode(jwk["y"]), "big"),
        ec.SECP256R1(),
    ).public_key()
    signing_input, signature = token.rsplit(".", 1)
    raw = _b64decode(signature)
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    try:
        public.verify(der, signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


async def test_asvs_9_1_1_high_s_twin_of_a_real_access_token_is_refused(
    client: httpx.AsyncClient,
) -> None:
    """n - s verifies under plain ECDSA, but a token string is only ever accepted in its
    one canonical (low-S) form, so nothing keyed on the string can be sidestepped."""
    jwks = (await client.get("/.well-known/jwks.json")).json()["keys"]
    token = (await signup_login(client))["access_token"]
    header = json.loads(_b64decode(token.split(".", 1)[0]))
    assert header["alg"] == "ES256"
    (jwk,) = [key for key in jwks if key["kid"] == header["kid"]]
    twin = _twin(token)
    # The attack is real: both strings carry a valid signature over the same claims.
    assert _ecdsa_valid(token, jwk)
    assert _ecdsa_valid(twin, jwk)
    assert _s_of(token) <= P256_N // 2 < _s_of(twin)
    assert (await client.get("/v1/me", headers=bearer(token))).status_code == 200
    refused = await client.get("/v1/me", headers=bearer(twin))
    assert refused.status_code == 401, refused.text
    # Introspection (the other verification pathway resource servers use) agrees: the
    # twin is no token; userinfo refuses it as well.
    assert (await client.get("/oauth2/userinfo", headers=bearer(twin))).status_code == 401


@pytest.fixture(scope="module")
def es256_key() -> KeyMaterial:
    return generate_key("ES256")


@hypothesis_settings(max_examples=60, deadline=None)
@given(
    sub=st.text(min_size=1, max_size=40),
    extra=st.dictionaries(st.sampled_from(["sid", "scope", "jti"]), st.text(max_size=30)),
)
def test_asvs_9_1_1_our_signer_emits_only_low_s_tokens_that_verify(
    es256_key: KeyMaterial, sub: str, extra: dict[str, str]
) -> None:
    """Every token our signer emits is canonical (low S) and verifies; its twin never."""
    now = 1_700_000_000
    claims = {
        "iss": "https://id.test",
        "aud": "api",
        "sub": sub,
        "iat": now,
        "exp": now + 60,
        **extra,
    }
    policy = JosePolicy(algorithms=frozenset({"ES256"}), issuer="https://id.test", audience="api")
    verifier = Verifier([es256_key.public_jwk])
    token = Signer(es256_key).sign(claims)
    assert _s_of(token) <= P256_N // 2
    assert verifier.verify(token, policy, now=now) == claims
    with pytest.raises(InvalidToken):
        verifier.verify(_twin(token), policy, now=now)


# --- Finding 10: a client hanging up mid-body ------------------------------------------------

# Every body-reading pathway: a form (OAuth token endpoint, hosted page), FastAPI's JSON
# bodies (REST), and GraphQL.
HANG_UP_TARGETS = [
    ("/oauth2/token", "application/x-www-form-urlencoded", b"grant_type=client_cred"),
    ("/ui/login", "application/x-www-form-urlencoded", b"csrf_token=abc&email=a%40b"),
    ("/v1/auth/login", "application/json", b'{"email": "a@example.com", "pass'),
    ("/v1/auth/signup", "application/json", b'{"email": '),
    ("/oauth2/introspect", "application/x-www-form-urlencoded", b"token=abc"),
    ("/graphql", "application/json", b'{"query": "{ me { id } }'),
    ("/oauth2/authorize", "application/x-www-form-urlencoded", b"response_type=co"),
    ("/oauth2/revoke", "application/x-www-form-urlencoded", b"token=abc"),
    ("/ui/signup", "application/x-www-form-urlencoded", b"csrf_token=abc&email="),
    ("/v1/me/api-keys", "application/json", b'{"name": "k'),
]


def _latency_count(route: str, status: str) -> float:
    value = REGISTRY.get_sample_value(
        "keyturn_http_request_duration_seconds_count",
        {"route": route, "method": "POST", "status": status},
    )
    return value or 0.0


async def _hang_up(app: FastAPI, path: str, content_type: str, partial: bytes) -> list[Any]:
    """Plays the ASGI server for a client that sends part of a body and disconnects."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"testserver"),
            (b"content-type", content_type.encode()),
            (b"content-length", str(len(partial) + 100).encode()),
        ],
        "client": ("192.0.2.50", 40000),
        "server": ("testserver", 80),
        "state": {},
    }
    incoming = [
        {"type": "http.request", "body": partial, "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        # After the hang-up the server keeps answering "disconnected" (ASGI spec).
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


@pytest.mark.parametrize(("path", "content_type", "partial"), HANG_UP_TARGETS)
async def test_asvs_16_5_3_client_hang_up_mid_body_is_no_server_error(
    app: FastAPI, path: str, content_type: str, partial: bytes
) -> None:
    """No 500 in the metrics, no traceback and no error line: the access line only."""
    route = path
    before_500 = _latency_count(route, "500")
    with capture_logs() as events:
        sent = await _hang_up(app, path, content_type, partial)  # raises nothing
    assert _latency_count(route, "500") == before_500
    assert _latency_count(route, "499") >= 1, "counted as a client hang-up"
    statuses = [m["status"] for m in sent if m["type"] == "http.response.start"]
    assert all(status < 500 for status in statuses), statuses
    for event in events:
        assert event["log_level"] not in ("error", "exception", "critical"), event
        assert "exc_info" not in event, event
    (access,) = [event for event in events if event["event"] == "request"]
    assert access["status"] == 499
    assert len(events) <= 2, events  # the access line, at most one more short line


# --- Finding 11: the data directory and database files ----------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _modes(directory: Path) -> dict[str, int]:
    return {path.name: _mode(path) for path in directory.iterdir()}


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """The common 022 umask, under which files default to world-readable 0644."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


async def _migrate_serve_and_write(data_dir: Path) -> Settings:
    """``keyturn migrate`` then ``keyturn serve`` in dev on the default data dir, one write."""
    settings = load_settings(
        data_dir=data_dir, argon2_memory_kib=1024, argon2_time_cost=1, hash_workers=1
    )
    assert settings.database_url.endswith(f"{data_dir}/keyturn.db")
    await upgrade(settings.database_url)
    async with running_app(settings) as http:
        body = {"email": new_email(), "password": PASSWORD}
        assert (await http.post("/v1/auth/signup", json=body)).status_code == 202
        # While the app runs, the WAL and shared-memory files exist beside the database.
        files = _modes(data_dir)
    assert {"keyturn.db", "keyturn.db-wal", "keyturn.db-shm", "secret_key"} <= set(files)
    assert files == dict.fromkeys(files, 0o600), {n: oct(m) for n, m in files.items()}
    return settings


@pytest.mark.usefixtures("usual_umask")
async def test_asvs_13_3_1_new_data_dir_and_database_files_are_owner_only(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "var"
    await _migrate_serve_and_write(data_dir)
    assert _mode(data_dir) == 0o700
    for path in data_dir.iterdir():
        assert _mode(path) == 0o600, (path.name, oct(_mode(path)))


@pytest.mark.usefixtures("usual_umask")
async def test_asvs_13_3_1_existing_loose_data_dir_and_files_are_tightened(
    tmp_path: Path,
) -> None:
    """A data dir from an older release (0755, database 0644) is tightened, with a warning."""
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    # What an older release left behind: a world-readable data dir (the attack's finding).
    os.chmod(data_dir, 0o755)  # noqa: S103
    for name in ("keyturn.db", "keyturn.db-wal", "keyturn.db-shm"):
        (data_dir / name).touch()
        os.chmod(data_dir / name, 0o644)
    with capture_logs() as events:
        await _migrate_serve_and_write(data_dir)
    assert _mode(data_dir) == 0o700
    warned = [event for event in events if event["log_level"] == "warning"]
    assert any(event["event"] == "data_dir_permissions_tightened" for event in warned), events
