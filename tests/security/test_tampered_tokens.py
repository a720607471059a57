"""Forged, tampered and misused Bearer tokens against every protected route.

The routes come from the app's route table (``conftest.protected_routes``): every route
whose dependency tree holds ``keyturn.api.http.deps.get_principal``. Each attack targets a real
victim (the forged claims carry the victim's ``sub`` and ``sid``), sends a body the route
would accept, and must get ``401 invalid_token`` with a ``WWW-Authenticate: Bearer``
challenge; afterwards the victim's account is exactly as it was.

ASVS v5.0.0-9.1.1 (signature verified before use), v5.0.0-9.1.2 (algorithm allow-list,
no ``none``), v5.0.0-9.1.3 (keys from trusted, pre-configured material only),
v5.0.0-9.2.1 (exp/nbf), v5.0.0-9.2.2 (token type), v5.0.0-9.2.3 (audience),
v5.0.0-7.4.1 (a terminated session's tokens stop working).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from fastapi import FastAPI
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from helpers import PASSWORD, bearer, lifespan, signup_login
from keyturn.app import create_app
from keyturn.config import Settings
from keyturn.db.migrate import upgrade

pytestmark = pytest.mark.anyio

PROBLEM_KEYS = {"type", "title", "status", "detail", "code", "errors"}
SELF_SERVICE_SCOPE = "me:read me:write sessions:read sessions:write"

# Attacker keys, made once: generating RSA per test would only cost time.
_ATTACKER_EC = ec.generate_private_key(ec.SECP256R1())
_ATTACKER_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
# Marks a claim the attack removes.
_DROP = object()
# Nothing listens on the discard port; the listener test below proves no fetch either way.
_NO_FETCH_URL = "http://127.0.0.2:9/jwks.json"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _json_b64(value: Any) -> str:
    return _b64(json.dumps(value, separators=(",", ":")).encode())


def _hs256(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    signing_input = f"{_json_b64(header)}.{_json_b64(claims)}"
    mac = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


@dataclass
class Victim:
    """A signed-up user with two live sessions and everything needed to forge tokens."""

    app: FastAPI
    settings: Settings
    email: str
    access_token: str
    other_access_token: str
    refresh_token: str
    user_id: str
    session_id: str
    jwk: dict[str, Any]

    @property
    def kid(self) -> str:
        return str(self.jwk["kid"])

    def claims(self, **overrides: Any) -> dict[str, Any]:
        """Claims exactly like a real access token of the victim's first session."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.settings.issuer,
            "sub": self.user_id,
            "aud": self.settings.audience,
            "exp": now + 600,
            "iat": now,
            "nbf": now,
            "jti": uuid.uuid4().hex,
            "sid": self.session_id,
            "client_id": self.settings.audience,
            "scope": SELF_SERVICE_SCOPE,
            "roles": ["admin"],
            "auth_time": now,
            "amr": ["pwd"],
        }
        claims.update(overrides)
        return {name: value for name, value in claims.items() if value is not _DROP}

    def server_signed(self, *, typ: str = "at+jwt", **overrides: Any) -> str:
        """A token signed by the server's own active key (what only the server can do)."""
        signer = self.app.state.services.keys.signer
        return str(signer.sign(self.claims(**overrides), typ=typ))

    def public_pem(self) -> bytes:
        key = jwt.algorithms.ECAlgorithm.from_jwk(json.dumps(self.jwk))
        assert isinstance(key, ec.EllipticCurvePublicKey)
        return key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


@pytest.fixture
async def victim(app: FastAPI, settings: Settings, client: httpx.AsyncClient) -> Victim:
    first = await signup_login(client)
    second = await client.post(
        "/v1/auth/login", json={"email": first["email"], "password": PASSWORD}
    )
    assert second.status_code == 200
    jwks = await client.get("/.well-known/jwks.json")
    assert jwks.status_code == 200
    claims = jwt.decode(first["access_token"], options={"verify_signature": False})
    header = jwt.get_unverified_header(first["access_token"])
    (jwk,) = [key for key in jwks.json()["keys"] if key["kid"] == header["kid"]]
    assert jwk["alg"] == "ES256"  # the forgeries below assume the default algorithm
    return Victim(
        app=app,
        settings=settings,
        email=first["email"],
        access_token=first["access_token"],
        other_access_token=second.json()["access_token"],
        refresh_token=first["refresh_token"],
        user_id=claims["sub"],
        session_id=claims["sid"],
        jwk=jwk,
    )


# ---------------------------------------------------------------------------------------
# The attacks. Each returns the Authorization header value (None: no header at all).

Attack = Callable[[Victim], str | bytes | None]


def _forged_es256(victim: Victim, *, kid: str, **headers: Any) -> str:
    return jwt.encode(
        victim.claims(),
        _ATTACKER_EC,
        algorithm="ES256",
        headers={"kid": kid, "typ": "at+jwt", **headers},
    )


def _alter_one_payload_char(token: str) -> str:
    header, payload, signature = token.split(".")
    middle = len(payload) // 2
    replacement = "A" if payload[middle] != "A" else "B"
    return ".".join((header, payload[:middle] + replacement + payload[middle + 1 :], signature))


def _alter_one_claim_char(token: str) -> str:
    # One character of the decoded payload: the last hex digit of ``sub``, so the JSON stays
    # valid and names another (well-formed) user id; only the signature can catch it.
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    text = json.dumps(claims, separators=(",", ":"))
    sub = claims["sub"]
    altered = text.replace(sub, sub[:-1] + ("0" if sub[-1] != "0" else "1"))
    assert sum(a != b for a, b in zip(text, altered, strict=True)) == 1
    return ".".join((header, _b64(altered.encode()), signature))


def _splice_payload(victim: Victim) -> str:
    # A real signature over the real payload, glued to a payload that grants more.
    header, _payload, signature = victim.access_token.split(".")
    richer = victim.claims(roles=["admin"], scope=SELF_SERVICE_SCOPE + " admin")
    return f"Bearer {header}.{_json_b64(richer)}.{signature}"


def _alg_none(victim: Victim, alg: str, *, with_kid: bool) -> str:
    header: dict[str, Any] = {"alg": alg, "typ": "at+jwt"}
    if with_kid:
        header["kid"] = victim.kid
    return f"Bearer {_json_b64(header)}.{_json_b64(victim.claims())}."


def _hs256_with(victim: Victim, secret: bytes) -> str:
    header = {"alg": "HS256", "kid": victim.kid, "typ": "at+jwt"}
    return f"Bearer {_hs256(header, victim.claims(), secret)}"


def _flip_one_bit(token: str, segment: int) -> str:
    # Decoded, one bit flipped, re-encoded: flipping a base64url character instead may
    # only touch padding bits that decode to the very same bytes.
    parts = token.split(".")
    raw = bytearray(_unb64(parts[segment]))
    raw[len(raw) // 2] ^= 0x01
    parts[segment] = _b64(bytes(raw))
    return ".".join(parts)


def _rs256_header_on_real_signature(victim: Victim, alg: str) -> str:
    # The server's genuine ES256 signature and payload under a header naming an RSA alg.
    _header, payload, signature = victim.access_token.split(".")
    header = {"alg": alg, "kid": victim.kid, "typ": "at+jwt"}
    return f"Bearer {_json_b64(header)}.{payload}.{signature}"


_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def _server_signed_raw(victim: Victim, header: bytes, payload: bytes) -> str:
    """Arbitrary header/payload bytes under a genuine signature of the server's key.

    Reaches the parsing that happens after the signature check, which no forgery can.
    """
    signer = victim.app.state.services.keys.signer
    private_key = signer._key.private_key
    signing_input = f"{_b64(header)}.{_b64(payload)}".encode("ascii")
    der = private_key.sign(signing_input, ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    # The low-S form the server signs and accepts (security/jose.py); ECDSA gives either.
    s = min(s, _P256_ORDER - s)
    return f"Bearer {signing_input.decode()}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def _invalid_utf8_header(victim: Victim) -> str:
    header = json.dumps({"alg": "ES256", "kid": victim.kid, "typ": "at+jwt"}).encode()
    return _server_signed_raw(victim, b"\xff\xfe" + header, json.dumps(victim.claims()).encode())


def _invalid_utf8_payload(victim: Victim) -> str:
    header = json.dumps({"alg": "ES256", "kid": victim.kid, "typ": "at+jwt"}).encode()
    return _server_signed_raw(victim, header, b"\xff\xfe" + json.dumps(victim.claims()).encode())


def _invalid_utf8_inside_kid(victim: Victim) -> str:
    header = b'{"alg":"ES256","kid":"\xff\xfe\xfd","typ":"at+jwt"}'
    return _server_signed_raw(victim, header, json.dumps(victim.claims()).encode())


ATTACKS: dict[str, Attack] = {
    "no_header": lambda v: None,
    "bearer_empty": lambda v: "Bearer ",
    "bearer_only": lambda v: "Bearer",
    "basic_scheme": lambda v: (
        "Basic " + base64.b64encode(f"{v.email}:{PASSWORD}".encode()).decode()
    ),
    "token_without_scheme": lambda v: v.access_token,
    "garbage": lambda v: "Bearer garbage",
    "garbage_three_segments": lambda v: "Bearer a.b.c",
    "garbage_bad_base64": lambda v: "Bearer !!!.@@@.###",
    "five_segments_jwe_shape": lambda v: "Bearer " + ".".join([_json_b64({"alg": "dir"})] * 5),
    "non_ascii_bytes": lambda v: b"Bearer \xc3\xa9\xc3\xa9.\xff\xfe.\x00",
    "oversize_token": lambda v: "Bearer " + v.access_token + "A" * 20_000,
    "alg_none": lambda v: _alg_none(v, "none", with_kid=False),
    "alg_none_with_kid": lambda v: _alg_none(v, "none", with_kid=True),
    "alg_None_mixed_case": lambda v: _alg_none(v, "None", with_kid=True),
    "alg_NONE_upper_case": lambda v: _alg_none(v, "NONE", with_kid=True),
    "alg_nOnE_odd_case": lambda v: _alg_none(v, "nOnE", with_kid=True),
    "alg_none_with_real_signature": lambda v: (
        _alg_none(v, "none", with_kid=True) + v.access_token.split(".")[2]
    ),
    # Alg confusion (RFC 8725 section 2.1): the public key used as an HMAC secret.
    "hs256_public_pem": lambda v: _hs256_with(v, v.public_pem()),
    "hs256_public_pem_stripped": lambda v: _hs256_with(v, v.public_pem().strip()),
    "hs256_public_jwk_json": lambda v: _hs256_with(v, json.dumps(v.jwk).encode()),
    "hs256_public_jwk_compact": lambda v: _hs256_with(
        v, json.dumps(v.jwk, separators=(",", ":"), sort_keys=True).encode()
    ),
    "forged_es256_same_kid": lambda v: "Bearer " + _forged_es256(v, kid=v.kid),
    "forged_rs256_same_kid": lambda v: (
        "Bearer "
        + jwt.encode(
            v.claims(), _ATTACKER_RSA, algorithm="RS256", headers={"kid": v.kid, "typ": "at+jwt"}
        )
    ),
    # RS256 <-> PS256 swap: the kid names the server's (ES256) key; the alg an RSA one.
    "forged_ps256_same_kid": lambda v: (
        "Bearer "
        + jwt.encode(
            v.claims(), _ATTACKER_RSA, algorithm="PS256", headers={"kid": v.kid, "typ": "at+jwt"}
        )
    ),
    "rs256_header_on_real_es256_signature": lambda v: _rs256_header_on_real_signature(v, "RS256"),
    "ps256_header_on_real_es256_signature": lambda v: _rs256_header_on_real_signature(v, "PS256"),
    "unknown_kid": lambda v: "Bearer " + _forged_es256(v, kid="attacker-key-1"),
    # kid is attacker input that a careless verifier hands to a file or SQL lookup.
    "kid_path_traversal": lambda v: "Bearer " + _forged_es256(v, kid="../../../../etc/passwd"),
    "kid_dev_null": lambda v: "Bearer " + _forged_es256(v, kid="/dev/null"),
    "kid_sql_injection": lambda v: "Bearer " + _forged_es256(v, kid="' OR '1'='1"),
    "kid_real_then_nul": lambda v: "Bearer " + _forged_es256(v, kid=v.kid + "\x00"),
    "kid_nul_then_real": lambda v: "Bearer " + _forged_es256(v, kid="\x00" + v.kid),
    "kid_very_long": lambda v: "Bearer " + _forged_es256(v, kid="k" * 4000),
    "no_kid": lambda v: (
        "Bearer "
        + jwt.encode(v.claims(), _ATTACKER_EC, algorithm="ES256", headers={"typ": "at+jwt"})
    ),
    # Key injection through the header (CVE-2018-0114 style): embedded jwk, or a jku URL.
    "embedded_jwk_header": lambda v: (
        "Bearer "
        + _forged_es256(
            v,
            kid=v.kid,
            jwk=json.loads(jwt.algorithms.ECAlgorithm.to_jwk(_ATTACKER_EC.public_key())),
        )
    ),
    "jku_header": lambda v: (
        "Bearer " + _forged_es256(v, kid=v.kid, jku="https://attacker.example/jwks.json")
    ),
    "jku_header_loopback": lambda v: "Bearer " + _forged_es256(v, kid=v.kid, jku=_NO_FETCH_URL),
    "x5u_header_loopback": lambda v: "Bearer " + _forged_es256(v, kid=v.kid, x5u=_NO_FETCH_URL),
    "jku_header_unknown_kid": lambda v: (
        "Bearer " + _forged_es256(v, kid="attacker-key-1", jku=_NO_FETCH_URL)
    ),
    "signature_stripped": lambda v: "Bearer " + v.access_token.rsplit(".", 1)[0] + ".",
    "payload_one_char_altered": lambda v: "Bearer " + _alter_one_payload_char(v.access_token),
    "payload_one_claim_char_altered": lambda v: "Bearer " + _alter_one_claim_char(v.access_token),
    "payload_spliced": _splice_payload,
    "header_one_bit_flipped": lambda v: "Bearer " + _flip_one_bit(v.access_token, 0),
    "payload_one_bit_flipped": lambda v: "Bearer " + _flip_one_bit(v.access_token, 1),
    "signature_one_bit_flipped": lambda v: "Bearer " + _flip_one_bit(v.access_token, 2),
    # Invalid UTF-8 under a genuine signature: the parser, not the signature, must refuse.
    "header_invalid_utf8": _invalid_utf8_header,
    "payload_invalid_utf8": _invalid_utf8_payload,
    "kid_invalid_utf8": _invalid_utf8_inside_kid,
    "refresh_token_as_bearer": lambda v: "Bearer " + v.refresh_token,
    # Signed by the server's own key, but not a valid access token for this service.
    "expired": lambda v: (
        "Bearer " + v.server_signed(exp=int(time.time()) - 60, iat=int(time.time()) - 660)
    ),
    "nbf_in_future": lambda v: (
        "Bearer " + v.server_signed(nbf=int(time.time()) + 600, exp=int(time.time()) + 1200)
    ),
    "iat_in_future": lambda v: "Bearer " + v.server_signed(iat=int(time.time()) + 600),
    "exp_missing": lambda v: "Bearer " + v.server_signed(exp=_DROP),
    "exp_not_a_number": lambda v: "Bearer " + v.server_signed(exp="tomorrow"),
    "exp_infinite": lambda v: "Bearer " + v.server_signed(exp=float("inf")),
    "iat_missing": lambda v: "Bearer " + v.server_signed(iat=_DROP),
    "wrong_audience": lambda v: "Bearer " + v.server_signed(aud="another-service"),
    "wrong_audience_list": lambda v: "Bearer " + v.server_signed(aud=["a", "b"]),
    "audience_missing": lambda v: "Bearer " + v.server_signed(aud=_DROP),
    "wrong_issuer": lambda v: "Bearer " + v.server_signed(iss="https://evil.example"),
    "issuer_as_prefix": lambda v: (
        "Bearer " + v.server_signed(iss=v.settings.issuer + ".evil.example")
    ),
    "issuer_missing": lambda v: "Bearer " + v.server_signed(iss=_DROP),
    # An ID token (typ JWT) is never an access token (RFC 9068 section 4, RFC 8725 3.11).
    "typ_jwt_id_token": lambda v: "Bearer " + v.server_signed(typ="JWT"),
    "typ_refresh": lambda v: "Bearer " + v.server_signed(typ="rt+jwt"),
    # Well signed, nonsense inside: must be 401, never a 500.
    "sub_not_uuid": lambda v: "Bearer " + v.server_signed(sub="admin"),
    "sid_not_uuid": lambda v: "Bearer " + v.server_signed(sid="../../etc/passwd"),
    "sub_integer": lambda v: "Bearer " + v.server_signed(sub=12345),
    "sid_null": lambda v: "Bearer " + v.server_signed(sid=None),
    "sid_missing": lambda v: "Bearer " + v.server_signed(sid=_DROP),
    "sub_missing": lambda v: "Bearer " + v.server_signed(sub=_DROP),
    "sub_object": lambda v: "Bearer " + v.server_signed(sub={"id": v.user_id}),
    "scope_list": lambda v: "Bearer " + v.server_signed(scope=SELF_SERVICE_SCOPE.split()),
    "roles_string": lambda v: "Bearer " + v.server_signed(roles="admin"),
}


def assert_refused(
    answer: httpx.Response, code: str, *, context: str, secret: str | None = None
) -> None:
    """A 401 problem+json with ``code`` and a Bearer challenge (RFC 6750 section 3)."""
    assert answer.status_code == 401, f"{context}: {answer.status_code} {answer.text}"
    assert answer.headers["content-type"].startswith("application/problem+json"), context
    body = answer.json()
    assert set(body) | {"detail"} == PROBLEM_KEYS, context
    assert body["status"] == 401, context
    assert body["code"] == code, f"{context}: {body}"
    challenge = answer.headers.get("www-authenticate", "")
    assert challenge.startswith("Bearer"), f"{context}: WWW-Authenticate {challenge!r}"
    if secret and len(secret) > 8:
        assert secret not in answer.text, f"{context}: the token is echoed back"


async def attack_every_route(
    client: httpx.AsyncClient,
    routes: list[Any],
    valid_body: Callable[..., dict[str, Any]],
    authorization: str | bytes | None,
    *,
    code: str,
    label: str,
) -> None:
    assert routes
    headers: dict[str, str | bytes] = {}
    if authorization is not None:
        headers["Authorization"] = authorization
    for target in routes:
        body = valid_body(target) if target.body_model is not None else None
        answer = await client.request(target.method, target.path, json=body, headers=headers)
        secret = authorization.decode("latin-1") if isinstance(authorization, bytes) else None
        assert_refused(
            answer,
            code,
            context=f"{label} on {target}",
            secret=(authorization if isinstance(authorization, str) else secret),
        )


async def assert_victim_untouched(client: httpx.AsyncClient, victim: Victim) -> None:
    """The victim's profile, sessions and password are what they were before the attack."""
    me = await client.get("/v1/me", headers=bearer(victim.access_token))
    assert me.status_code == 200, me.text
    assert me.json()["name"] is None
    sessions = await client.get("/v1/me/sessions", headers=bearer(victim.access_token))
    assert len(sessions.json()["items"]) == 2
    other = await client.get("/v1/me", headers=bearer(victim.other_access_token))
    assert other.status_code == 200
    login = await client.post("/v1/auth/login", json={"email": victim.email, "password": PASSWORD})
    assert login.status_code == 200


async def test_protected_routes_are_derived_from_the_route_table(
    protected_routes: list[Any],
) -> None:
    """The attacked list is the app's own, and it holds the obvious members."""
    pairs = {(t.method, t.template) for t in protected_routes}
    assert ("GET", "/v1/me") in pairs
    assert ("POST", "/v1/auth/logout") in pairs
    assert ("DELETE", "/v1/me/sessions/{session_id}") in pairs
    assert not {path for _, path in pairs} & {"/v1/auth/login", "/healthz"}


async def test_control_forgery_kit_builds_acceptable_tokens(
    client: httpx.AsyncClient, victim: Victim
) -> None:
    """Control: the claims the attacks start from pass when the server signs them.

    So every refusal below is caused by the one property each attack changes.
    """
    answer = await client.get("/v1/me", headers=bearer(victim.server_signed()))
    assert answer.status_code == 200, answer.text
    assert answer.json()["id"] == victim.user_id
    # The raw signer behind the invalid-UTF-8 attacks signs acceptably, too.
    header = json.dumps({"alg": "ES256", "kid": victim.kid, "typ": "at+jwt"}).encode()
    raw = _server_signed_raw(victim, header, json.dumps(victim.claims()).encode())
    answer = await client.get("/v1/me", headers={"Authorization": raw})
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("attack", sorted(ATTACKS))
async def test_bad_token_is_refused_on_every_protected_route(
    client: httpx.AsyncClient,
    victim: Victim,
    protected_routes: list[Any],
    valid_body: Callable[..., dict[str, Any]],
    attack: str,
) -> None:
    """v5.0.0-9.1.1, v5.0.0-9.1.2, v5.0.0-9.1.3, v5.0.0-9.2.1, v5.0.0-9.2.2, v5.0.0-9.2.3."""
    authorization = ATTACKS[attack](victim)
    # A well-signed token past its exp has its own code (issue 13 item 7).
    code = "token_expired" if attack == "expired" else "invalid_token"
    await attack_every_route(
        client, protected_routes, valid_body, authorization, code=code, label=attack
    )
    await assert_victim_untouched(client, victim)


@pytest.fixture
def loopback_listener() -> Iterator[socket.socket]:
    """A TCP listener on 127.0.0.2 (all of 127/8 is loopback on Linux), never accepting."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.2", 0))
    listener.listen(16)
    listener.setblocking(False)
    try:
        yield listener
    finally:
        listener.close()


@pytest.mark.parametrize("parameter", ["jku", "x5u"])
async def test_key_url_headers_are_never_fetched(
    client: httpx.AsyncClient,
    victim: Victim,
    protected_routes: list[Any],
    valid_body: Callable[..., dict[str, Any]],
    loopback_listener: socket.socket,
    parameter: str,
) -> None:
    """v5.0.0-9.1.3: keys come only from pre-configured material; a jku/x5u URL in the
    header is refused and never fetched (no SSRF, no attacker-supplied key)."""
    port = loopback_listener.getsockname()[1]
    for scheme in ("http", "https"):
        url = f"{scheme}://127.0.0.2:{port}/jwks.json"
        for kid in (victim.kid, "attacker-key-1"):
            token = _forged_es256(victim, kid=kid, **{parameter: url})
            await attack_every_route(
                client,
                protected_routes,
                valid_body,
                f"Bearer {token}",
                code="invalid_token",
                label=f"{parameter}={url} kid={kid}",
            )
    await assert_victim_untouched(client, victim)
    await asyncio.sleep(0.2)  # room for a background fetch, had one been started
    with pytest.raises(BlockingIOError):
        loopback_listener.accept()
    # Control: the listener does notice a connection when one is made.
    with socket.create_connection(("127.0.0.2", port), timeout=2):
        await asyncio.sleep(0.05)
        accepted, _ = loopback_listener.accept()
        accepted.close()


async def test_rsa_key_refuses_ps256_signed_by_that_very_key(
    make_settings: Callable[..., Settings],
    tmp_path: Any,
    protected_routes: list[Any],
    valid_body: Callable[..., dict[str, Any]],
) -> None:
    """v5.0.0-9.1.2: RS256 <-> PS256 swap with the server's own RSA key.

    With an RS256 signing key, a PS256 signature made by that very private key (which an
    attacker does not have; the strongest form of the swap) is refused: the key pins its
    algorithm, the header does not choose it. A fresh database, so the app makes an RSA key.
    """
    url = f"sqlite+aiosqlite:///{tmp_path / 'rsa.db'}"
    await upgrade(url)
    application = create_app(make_settings(signing_alg="RS256", database_url=url))
    async with lifespan(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            tokens = await signup_login(http)
            header = jwt.get_unverified_header(tokens["access_token"])
            assert header["alg"] == "RS256"
            claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
            rsa_key = application.state.services.keys.signer._key.private_key
            assert isinstance(rsa_key, rsa.RSAPrivateKey)
            headers = {"kid": header["kid"], "typ": "at+jwt"}
            # Control: the same claims, key and kid with the key's own alg are accepted.
            control = jwt.encode(claims, rsa_key, algorithm="RS256", headers=headers)
            me = await http.get("/v1/me", headers=bearer(control))
            assert me.status_code == 200, me.text
            for alg in ("PS256", "PS384", "PS512", "RS384", "RS512"):
                swapped = jwt.encode(claims, rsa_key, algorithm=alg, headers=headers)
                await attack_every_route(
                    http,
                    protected_routes,
                    valid_body,
                    f"Bearer {swapped}",
                    code="invalid_token",
                    label=f"{alg} by the server's RS256 key",
                )
            still = await http.get("/v1/me", headers=bearer(tokens["access_token"]))
            assert still.status_code == 200
            assert still.json()["name"] is None


async def test_logged_out_token_is_revoked_on_every_protected_route(
    client: httpx.AsyncClient,
    victim: Victim,
    protected_routes: list[Any],
    valid_body: Callable[..., dict[str, Any]],
) -> None:
    """v5.0.0-7.4.1: after logout the session's access token is dead everywhere at once."""
    logout = await client.post("/v1/auth/logout", headers=bearer(victim.access_token))
    assert logout.status_code == 204
    await attack_every_route(
        client,
        protected_routes,
        valid_body,
        f"Bearer {victim.access_token}",
        code="session_revoked",
        label="logged out",
    )
    # A fresh token of the same, ended session is refused as well (the sid is what counts).
    await attack_every_route(
        client,
        protected_routes,
        valid_body,
        f"Bearer {victim.server_signed()}",
        code="session_revoked",
        label="re-signed for an ended session",
    )
    # The other session was not touched by any of it.
    other = await client.get("/v1/me", headers=bearer(victim.other_access_token))
    assert other.status_code == 200
    sessions = await client.get("/v1/me/sessions", headers=bearer(victim.other_access_token))
    assert [item["current"] for item in sessions.json()["items"]] == [True]
    assert (await client.get("/v1/me", headers=bearer(victim.other_access_token))).json()[
        "name"
    ] is None


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
_headers = st.fixed_dictionaries(
    {"alg": st.sampled_from(["ES256", "RS256", "EdDSA", "HS256", "none", "", "ES512"])},
    optional={"kid": _json_values, "typ": _json_values, "crit": _json_values},
)
_fuzzed_tokens = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=300),
    st.builds(
        lambda header, claims, signature: f"{_json_b64(header)}.{_json_b64(claims)}.{signature}",
        _headers,
        st.dictionaries(
            st.sampled_from(["iss", "sub", "aud", "exp", "sid", "scope"]), _json_values
        ),
        st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
    ),
)


@hypothesis_settings(
    max_examples=75,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(token=_fuzzed_tokens)
async def test_fuzzed_tokens_are_always_a_clean_401(client: httpx.AsyncClient, token: str) -> None:
    """Whatever arrives as a Bearer token, the answer is 401 invalid_token, never a 500."""
    answer = await client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert_refused(answer, "invalid_token", context=repr(token))
