"""Signing-key rotation and secret re-encryption (DESIGN.md section 4, issue 5 item 5).

One chain per algorithm (ES256 for access tokens, RS256 and ES256 for ID tokens by
default), each with states next -> active -> retired: the JWKS always holds every chain's
next and active key, a retired one until every token it signed has expired; tokens of
each algorithm minted before two rotations still verify with an independent library
(PyJWT) until they expire; two replicas starting or rotating at once create each chain
once and rotate once; the schedule rotates when due and not before; ``keyturn secret
rotate`` re-encrypts every sealed secret under the first ring key.

Every test gets a database of its own: rotations and time travel would otherwise change
the keys (and date them in the future) for every later test on the shared one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import jwt
import pytest
import time_machine
from fastapi import FastAPI
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from helpers import TEST_SECRET, bearer, lifespan, mails_to, new_email, signup_login
from keyturn.app import create_app
from keyturn.cli.main import app as cli_app
from keyturn.config import Settings
from keyturn.db.engine import create_engine, session_factory
from keyturn.db.models import OutboxMessageRow
from keyturn.db.unit_of_work import SqlUnitOfWork
from keyturn.security.aead import Aead
from keyturn.security.digests import KeyRing
from keyturn.security.keys import thumbprint
from keyturn.services.ports import UnitOfWork
from keyturn.services.signing_keys import (
    KeyInfo,
    KeyManager,
    RotationRefused,
    RotationResult,
)
from smtp_server import SmtpServer

pytestmark = pytest.mark.anyio

SettingsFactory = Callable[..., Settings]
NEW_SECRET = "new-secret-key-9876543210-zyxwvutsrqponmlk"
# Short enough for two rotations inside one token lifetime (the acceptance test).
PUBLISH_AHEAD = 331
TOKEN_TTL = 3600
ACCESS_ALG = "ES256"  # KEYTURN_SIGNING_ALG default
CHAIN_ALGS = ("ES256", "RS256")  # ACCESS_ALG and the KEYTURN_ID_TOKEN_ALGS default
CLIENT_ID = "oidc-client"
# Bounds for polling, not expectations.
WAIT = 15.0
POLL = 0.02


# --- fixtures and helpers ---------------------------------------------------------------


@pytest.fixture
def keys_db(private_database_url: str) -> str:
    return private_database_url


@pytest.fixture
def rotation_settings(make_settings: SettingsFactory, keys_db: str) -> Settings:
    return make_settings(
        database_url=keys_db,
        access_token_ttl=TOKEN_TTL,
        key_publish_ahead_seconds=PUBLISH_AHEAD,
        key_cache_seconds=1,
    )


@pytest.fixture
async def engine(keys_db: str) -> AsyncIterator[AsyncEngine]:
    created = create_engine(keys_db)
    yield created
    await created.dispose()


def _manager(
    engine: AsyncEngine, settings: Settings, secret_key: list[str] | None = None
) -> KeyManager:
    sessions = session_factory(engine)

    def uow_factory() -> UnitOfWork:
        return SqlUnitOfWork(sessions)

    return KeyManager(
        uow_factory=uow_factory,
        aead=Aead(KeyRing.from_strings(secret_key or settings.secret_key)),
        alg=settings.signing_alg,
        algorithms=settings.id_token_algs,
        cache_seconds=settings.key_cache_seconds,
        token_ttl=settings.access_token_ttl,
        rotation_days=settings.key_rotation_days,
        publish_ahead_seconds=settings.key_publish_ahead_seconds,
    )


@asynccontextmanager
async def _serving(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    application = create_app(settings)
    async with lifespan(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield application, http


def _keys(application: FastAPI) -> KeyManager:
    keys: KeyManager = application.state.services.keys
    return keys


async def _jwks(client: httpx.AsyncClient) -> dict[str, Any]:
    answer = await client.get("/.well-known/jwks.json")
    assert answer.status_code == 200
    body: dict[str, Any] = answer.json()
    return body


def _pyjwt_verify(
    token: str, jwks: dict[str, Any], settings: Settings, *, audience: str | None = None
) -> dict[str, Any]:
    """Verification as a third party does it: PyJWT, keys from the published JWKS only,
    the algorithm taken from the key (never from the token's header)."""
    kid = jwt.get_unverified_header(token)["kid"]
    matching = [key for key in jwks["keys"] if key["kid"] == kid]
    if not matching:
        raise jwt.InvalidTokenError(f"kid {kid} is not published")
    claims: dict[str, Any] = jwt.decode(
        token,
        key=jwt.PyJWK(matching[0]),
        algorithms=[matching[0]["alg"]],
        audience=audience or settings.audience,
        issuer=settings.issuer,
    )
    return claims


def _kid(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


def _by_state(keys: list[KeyInfo], alg: str = ACCESS_ALG) -> dict[str, list[str]]:
    """The states of one chain (by default the access-token one)."""
    states: dict[str, list[str]] = {}
    for key in keys:
        if key.alg == alg:
            states.setdefault(key.state, []).append(key.kid)
    return states


def _chains(keys: list[KeyInfo]) -> dict[str, dict[str, list[str]]]:
    return {alg: _by_state(keys, alg) for alg in sorted({key.alg for key in keys})}


async def _assert_published(keys: KeyManager, client: httpx.AsyncClient) -> dict[str, list[str]]:
    """Every chain: exactly one next and one active key; JWKS = exactly the next, active
    and unexpired retired keys of every chain, each with its own alg. Returns the
    access-token chain's states."""
    listed = await keys.list_keys()
    chains = _chains(listed)
    assert set(chains) == set(CHAIN_ALGS), chains
    for alg, states in chains.items():
        assert len(states.get("next", [])) == 1, (alg, states)
        assert len(states.get("active", [])) == 1, (alg, states)
    published = {key.kid: key.alg for key in listed if key.published}
    jwks = (await _jwks(client))["keys"]
    assert {key["kid"]: key["alg"] for key in jwks} == published
    assert len(jwks) == len(published)  # no kid twice
    for key in jwks:
        assert key["use"] == "sig"
        assert key["kid"] == thumbprint(key)  # RFC 7638
    return chains[ACCESS_ALG]


def _id_token(application: FastAPI, settings: Settings, alg: str, sub: str) -> str:
    """An ID Token as the OIDC slice will sign it (typ JWT, the chain of ``alg``)."""
    now = int(datetime.now(UTC).timestamp())
    claims = {"iss": settings.issuer, "sub": sub, "aud": CLIENT_ID, "exp": now + TOKEN_TTL}
    return str(application.state.services.id_tokens.sign({**claims, "iat": now}, alg=alg))


def _start() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


# --- two rotations: old tokens verify (PyJWT through the JWKS) until they expire ---------


async def test_tokens_of_each_alg_minted_before_two_rotations_verify_through_jwks_until_expiry(
    rotation_settings: Settings,
) -> None:
    settings = rotation_settings
    start = _start()
    with time_machine.travel(start, tick=False) as traveller:
        async with _serving(settings) as (application, client):
            keys = _keys(application)
            await _assert_published(keys, client)
            first = _chains(await keys.list_keys())
            old = await signup_login(client)
            old_token = old["access_token"]
            assert _kid(old_token) == first[ACCESS_ALG]["active"][0]
            sub = _pyjwt_verify(old_token, await _jwks(client), settings)["sub"]
            # One ID Token per chain, each signed by its chain's active key.
            old_id_tokens = {alg: _id_token(application, settings, alg, sub) for alg in CHAIN_ALGS}
            for alg, id_token in old_id_tokens.items():
                assert jwt.get_unverified_header(id_token) == {
                    "alg": alg,
                    "kid": first[alg]["active"][0],
                    "typ": "JWT",
                }

            async def assert_old_tokens_verify() -> None:
                jwks = await _jwks(client)
                assert _pyjwt_verify(old_token, jwks, settings)["sub"] == sub
                for id_token in old_id_tokens.values():
                    assert _pyjwt_verify(id_token, jwks, settings, audience=CLIENT_ID)["sub"] == sub

            await assert_old_tokens_verify()
            rotations: list[RotationResult] = []
            for _ in range(2):
                traveller.shift(timedelta(seconds=PUBLISH_AHEAD))
                rotations.append(await keys.rotate())
                await _assert_published(keys, client)
                fresh = await signup_login(client)
                # New tokens carry the new kid: the former next key signs now, per chain.
                assert _kid(fresh["access_token"]) == rotations[-1].activated
                assert _pyjwt_verify(fresh["access_token"], await _jwks(client), settings)
                for alg in CHAIN_ALGS:
                    id_token = _id_token(application, settings, alg, sub)
                    assert _kid(id_token) == rotations[-1].chain(alg).activated
                    assert _pyjwt_verify(
                        id_token, await _jwks(client), settings, audience=CLIENT_ID
                    )
                # The tokens from before the first rotation still verify, both ways.
                await assert_old_tokens_verify()
                assert (await client.get("/v1/me", headers=bearer(old_token))).status_code == 200

            for alg in CHAIN_ALGS:
                one, two = rotations[0].chain(alg), rotations[1].chain(alg)
                assert one.activated == first[alg]["next"][0]
                assert one.retired == tuple(first[alg]["active"])
                assert two.activated == one.next
                assert two.retired == (first[alg]["next"][0],)
            chains = _chains(await keys.list_keys())
            for alg in CHAIN_ALGS:
                assert set(chains[alg]["retired"]) == {
                    first[alg]["active"][0],
                    first[alg]["next"][0],
                }
            assert [chain.alg for chain in rotations[0].chains] == list(CHAIN_ALGS)

            # Until their expiry they verify; one second later they do not.
            expiry = start + timedelta(seconds=TOKEN_TTL)
            traveller.move_to(expiry - timedelta(seconds=1))
            await keys.reload()
            await assert_old_tokens_verify()
            assert (await client.get("/v1/me", headers=bearer(old_token))).status_code == 200
            traveller.move_to(expiry + timedelta(seconds=1))
            for token in (old_token, *old_id_tokens.values()):
                with pytest.raises(jwt.ExpiredSignatureError):
                    _pyjwt_verify(token, await _jwks(client), settings, audience=_aud(token))
            assert (await client.get("/v1/me", headers=bearer(old_token))).status_code == 401

            # Past retired_at + token lifetime (+ margin) the first keys are gone from the JWKS.
            retired_at = start + timedelta(seconds=PUBLISH_AHEAD)
            traveller.move_to(retired_at + keys.retired_window + timedelta(seconds=1))
            await keys.reload()
            await _assert_published(keys, client)
            chains = _chains(await keys.list_keys())
            published = {key["kid"] for key in (await _jwks(client))["keys"]}
            for alg in CHAIN_ALGS:
                assert chains[alg]["expired"] == first[alg]["active"]
                assert first[alg]["active"][0] not in published
                # The second key, retired later, is still published.
                assert chains[alg]["retired"] == first[alg]["next"]
            for token in (old_token, *old_id_tokens.values()):
                with pytest.raises(jwt.InvalidTokenError, match="not published"):
                    _pyjwt_verify(token, await _jwks(client), settings, audience=_aud(token))
            assert (await client.get("/v1/me", headers=bearer(old_token))).status_code == 401
            # The signers are unaffected.
            assert _pyjwt_verify(
                (await signup_login(client))["access_token"], await _jwks(client), settings
            )
            for alg in CHAIN_ALGS:
                id_token = _id_token(application, settings, alg, sub)
                assert _pyjwt_verify(id_token, await _jwks(client), settings, audience=CLIENT_ID)


def _aud(token: str) -> str:
    return str(jwt.decode(token, options={"verify_signature": False})["aud"])


async def test_a_next_key_too_young_is_not_activated_unless_forced(
    rotation_settings: Settings,
) -> None:
    async with _serving(rotation_settings) as (application, client):
        keys = _keys(application)
        before = _chains(await keys.list_keys())
        with pytest.raises(RotationRefused) as refused:
            await keys.rotate()
        assert refused.value.status == 409
        assert refused.value.retry_at is not None
        for alg in CHAIN_ALGS:  # every chain's next key is named, and none moved
            assert f"next {alg} key {before[alg]['next'][0]}" in refused.value.detail
        assert _chains(await keys.list_keys()) == before
        forced = await keys.rotate(force=True)
        for alg in CHAIN_ALGS:
            assert forced.chain(alg).activated == before[alg]["next"][0]
            assert forced.chain(alg).retired == tuple(before[alg]["active"])
        assert forced.activated == before[ACCESS_ALG]["next"][0]
        await _assert_published(keys, client)


# --- replicas ---------------------------------------------------------------------------


async def test_concurrent_rotations_from_two_replicas_rotate_once(
    rotation_settings: Settings, engine: AsyncEngine
) -> None:
    settings = rotation_settings
    first = _manager(engine, settings)
    other_engine = create_engine(settings.database_url)
    try:
        second = _manager(other_engine, settings)
        start = _start()
        with time_machine.travel(start, tick=False) as traveller:
            await first.start()
            await second.start()
            before = _chains(await first.list_keys())
            traveller.shift(timedelta(seconds=PUBLISH_AHEAD))
            # PostgreSQL: both read the same `next` keys, the compare-and-set lets one win.
            # SQLite serialises the transactions: the second finds `next` keys too young.
            outcomes = await asyncio.gather(first.rotate(), second.rotate(), return_exceptions=True)
            done = [outcome for outcome in outcomes if isinstance(outcome, RotationResult)]
            refused = [outcome for outcome in outcomes if isinstance(outcome, RotationRefused)]
            assert len(done) == 1, outcomes
            assert len(refused) == 1, outcomes
            after = _chains(await first.list_keys())
            assert set(after) == set(CHAIN_ALGS)
            for alg, states in after.items():
                assert states["active"] == before[alg]["next"]
                assert states["retired"] == before[alg]["active"]
                assert len(states["next"]) == 1
                assert sum(len(kids) for kids in states.values()) == 3

            # The schedule on both replicas at once: also exactly one rotation.
            traveller.shift(timedelta(days=settings.key_rotation_days))
            scheduled = await asyncio.gather(first.rotate_if_due(), second.rotate_if_due())
            assert sum(result is not None for result in scheduled) == 1, scheduled
            final = _chains(await first.list_keys())
            for alg, states in final.items():
                assert states["active"] == after[alg]["next"]
                assert len(states["next"]) == 1
                assert states["retired"] == after[alg]["active"]
                # A month on, the first key's tokens are long expired: no longer published.
                assert states["expired"] == after[alg]["retired"]
                # Both sign with the new active key (the loser of the race reloaded at once).
                assert first.signer_for(alg).kid == second.signer_for(alg).kid
                assert first.signer_for(alg).kid == states["active"][0]
            assert first.signer.kid == final[ACCESS_ALG]["active"][0]
    finally:
        await other_engine.dispose()


async def test_another_replica_signs_with_the_new_key_within_the_cache_time(
    rotation_settings: Settings,
) -> None:
    settings = rotation_settings
    async with (
        _serving(settings) as (replica_a, client_a),
        _serving(settings) as (replica_b, client_b),
    ):
        keys_a, keys_b = _keys(replica_a), _keys(replica_b)
        assert keys_a.signer.kid == keys_b.signer.kid
        result = await keys_a.rotate(force=True)
        # B learns of it by itself (its schedule reloads every key_cache_seconds = 1 s).
        for _ in range(int(WAIT / POLL)):
            if keys_b.signer.kid == result.activated:
                break
            await asyncio.sleep(POLL)
        assert keys_b.signer.kid == result.activated
        token = (await signup_login(client_b))["access_token"]
        assert _kid(token) == result.activated
        assert (await client_a.get("/v1/me", headers=bearer(token))).status_code == 200


# --- the automatic schedule -------------------------------------------------------------


async def test_schedule_rotates_when_due_and_not_before(
    make_settings: SettingsFactory, keys_db: str
) -> None:
    settings = make_settings(
        database_url=keys_db,
        key_rotation_days=1,
        key_publish_ahead_seconds=PUBLISH_AHEAD,
        key_rotation_check_seconds=0.02,
        key_cache_seconds=1,
    )
    start = _start()
    with time_machine.travel(start, tick=False) as traveller:
        async with _serving(settings) as (application, client):
            keys = _keys(application)
            before = _by_state(await keys.list_keys())
            before_id = _by_state(await keys.list_keys(), "RS256")

            async def settle_then_states() -> dict[str, list[str]]:
                await asyncio.sleep(0.3)  # many schedule rounds (check every 0.02 s)
                return _by_state(await keys.list_keys())

            traveller.shift(timedelta(days=1) - timedelta(seconds=1))
            assert await settle_then_states() == before  # one second early: nothing
            traveller.shift(timedelta(seconds=1))
            for _ in range(int(WAIT / POLL)):
                if keys.signer.kid == before["next"][0]:
                    break
                await asyncio.sleep(POLL)
            after = _by_state(await keys.list_keys())
            assert after["active"] == before["next"]
            assert after["retired"] == before["active"]
            assert keys.signer.kid == before["next"][0]
            # The ID-token chain rotated with it.
            after_id = _by_state(await keys.list_keys(), "RS256")
            assert after_id["active"] == before_id["next"]
            assert after_id["retired"] == before_id["active"]
            assert keys.signer_for("RS256").kid == before_id["next"][0]
            # Once only: the fresh key is not due for another day.
            assert await settle_then_states() == after
            await _assert_published(keys, client)


async def test_schedule_waits_for_the_next_key_to_be_published_long_enough(
    rotation_settings: Settings, engine: AsyncEngine
) -> None:
    """An old active ES256 key alone: a database from before rotation and before one
    chain per algorithm."""
    settings = rotation_settings
    keys = _manager(engine, settings)
    start = _start()
    with time_machine.travel(start, tick=False) as traveller:
        await keys.start()
        states = _by_state(await keys.list_keys())
        async with engine.begin() as connection:  # as an older version left it
            await connection.execute(
                text("DELETE FROM signing_keys WHERE kid <> :kid"), {"kid": states["active"][0]}
            )
        await keys.reload()  # signs access tokens with the ES256 key; no RS256 chain yet
        with pytest.raises(RuntimeError, match="no active RS256 signing key"):
            keys.signer_for("RS256")
        traveller.shift(timedelta(days=settings.key_rotation_days + 5))
        # Due by age, and incomplete chains: the schedule creates next keys and waits.
        created = await keys.rotate_if_due()
        assert created is not None
        for alg in CHAIN_ALGS:
            assert created.chain(alg).activated is None
            assert created.chain(alg).next is not None
            assert created.chain(alg).created == created.chain(alg).next
        assert created.activated is None
        assert await keys.rotate_if_due() is None
        traveller.shift(timedelta(seconds=PUBLISH_AHEAD - 1))
        assert await keys.rotate_if_due() is None
        traveller.shift(timedelta(seconds=1))
        rotated = await keys.rotate_if_due()
        assert rotated is not None
        assert rotated.activated == created.next
        assert rotated.retired == tuple(states["active"])
        # The chain that had no active key gets its first one (and nothing to retire).
        assert rotated.chain("RS256").activated == created.chain("RS256").next
        assert rotated.chain("RS256").retired == ()
        assert keys.signer_for("RS256").kid == created.chain("RS256").next
        assert keys.signer.kid == created.next


async def test_two_replicas_starting_at_once_create_each_chain_once(
    rotation_settings: Settings, engine: AsyncEngine
) -> None:
    """Chain creation is serialised (PostgreSQL advisory lock, SQLite write lock)."""
    settings = rotation_settings
    engines = [engine, *(create_engine(settings.database_url) for _ in range(2))]
    try:
        managers = [_manager(each, settings) for each in engines]
        await asyncio.gather(*(manager.start() for manager in managers))
        listed = await managers[0].list_keys()
        chains = _chains(listed)
        assert set(chains) == set(CHAIN_ALGS)
        for alg, states in chains.items():
            assert {state: len(kids) for state, kids in states.items()} == {
                "active": 1,
                "next": 1,
            }, (alg, states)
            # All of them sign with the one active key of each chain.
            assert {manager.signer_for(alg).kid for manager in managers} == set(states["active"])
        assert len(listed) == 2 * len(CHAIN_ALGS)
    finally:
        for extra in engines[1:]:
            await extra.dispose()


async def test_a_chain_of_an_algorithm_no_longer_configured_is_retired_at_rotation(
    rotation_settings: Settings, engine: AsyncEngine
) -> None:
    settings = rotation_settings
    with_eddsa = settings.model_copy(update={"id_token_algs": ["RS256", "ES256", "EdDSA"]})
    start = _start()
    with time_machine.travel(start, tick=False) as traveller:
        before = _manager(engine, with_eddsa)
        await before.start()
        eddsa = _by_state(await before.list_keys(), "EdDSA")
        assert {state: len(kids) for state, kids in eddsa.items()} == {"active": 1, "next": 1}
        token = before.sign(
            {"iss": settings.issuer, "aud": "x", "exp": 2**31, "iat": 0}, typ="JWT", alg="EdDSA"
        )

        after = _manager(engine, settings)  # EdDSA dropped from KEYTURN_ID_TOKEN_ALGS
        await after.start()
        assert set(after.algorithms) == set(CHAIN_ALGS)
        with pytest.raises(RuntimeError, match="no active EdDSA signing key"):
            after.signer_for("EdDSA")
        # Until the rotation its keys stay published.
        assert set(eddsa["active"] + eddsa["next"]) <= {key["kid"] for key in after.jwks["keys"]}
        traveller.shift(timedelta(seconds=PUBLISH_AHEAD))
        result = await after.rotate()
        assert {chain.alg for chain in result.chains} == set(CHAIN_ALGS)
        retired = _by_state(await after.list_keys(), "EdDSA")
        assert sorted(retired["retired"]) == sorted(eddsa["active"] + eddsa["next"])
        assert set(retired) == {"retired"}
        # Published while a token it signed may live, then gone.
        published = {key["kid"] for key in after.jwks["keys"]}
        assert set(retired["retired"]) <= published
        assert _kid(token) in published
        traveller.shift(after.retired_window + timedelta(seconds=1))
        await after.reload()
        assert not set(retired["retired"]) & {key["kid"] for key in after.jwks["keys"]}


# --- keyturn secret rotate --------------------------------------------------------------


def _cli(args: list[str], settings: Settings, secret: str, tmp_path: Path) -> tuple[int, str]:
    env = {
        "KEYTURN_DATABASE_URL": settings.database_url,
        "KEYTURN_SECRET_KEY": secret,
        "KEYTURN_DATA_DIR": str(tmp_path / "cli"),
    }
    result = CliRunner().invoke(cli_app, args, env=env)
    return result.exit_code, result.output


async def test_secret_rotate_reseals_keys_and_queued_mail_under_the_new_first_key(
    make_settings: SettingsFactory,
    keys_db: str,
    engine: AsyncEngine,
    tmp_path: Path,
    smtp: SmtpServer,
) -> None:
    email = new_email()
    old_settings = make_settings(database_url=keys_db, outbox_worker="off")
    async with _serving(old_settings) as (application, client):
        token = (await signup_login(client, email))["access_token"]
        # Retired keys are resealed too: 2 chains x (retired, active, next) = 6 keys.
        await _keys(application).rotate(force=True)

    # The commands run their own event loops (asyncio.run): off this one, in a thread.
    ring = f"{NEW_SECRET},{TEST_SECRET}"
    code, output = await anyio.to_thread.run_sync(
        _cli, ["secret", "rotate"], old_settings, ring, tmp_path
    )
    assert code == 0, output
    assert "signing keys: 6 re-encrypted, 0 already current" in output
    assert "outbox payloads: 1 re-encrypted, 0 already current, 0 unreadable" in output
    code, output = await anyio.to_thread.run_sync(
        _cli, ["secret", "rotate"], old_settings, ring, tmp_path
    )
    assert code == 0, output  # idempotent
    assert "signing keys: 0 re-encrypted, 6 already current" in output
    assert "outbox payloads: 0 re-encrypted, 1 already current" in output

    new_only = Aead(KeyRing.from_strings([NEW_SECRET]))
    async with session_factory(engine)() as db:
        (payload,) = (await db.scalars(select(OutboxMessageRow.payload))).all()
    assert not new_only.needs_reencrypt(payload)
    async with SqlUnitOfWork(session_factory(engine)) as uow:
        for record in await uow.signing_keys.list_all():
            # Opens under the new key alone.
            new_only.decrypt(record.private_key_encrypted, aad=record.kid.encode())

    # The old key is dropped: the app starts, old tokens verify, the queued mail goes out.
    new_settings = make_settings(database_url=keys_db, secret_key=[NEW_SECRET])
    async with _serving(new_settings) as (_, client):
        assert (await client.get("/v1/me", headers=bearer(token))).status_code == 200
        fresh = (await signup_login(client))["access_token"]
        assert (await client.get("/v1/me", headers=bearer(fresh))).status_code == 200
        (mail,) = await mails_to(smtp, email)
        assert mail["Subject"] == "Confirm your email address"


async def test_secret_rotate_refuses_while_a_secret_needs_a_key_missing_from_the_ring(
    make_settings: SettingsFactory, keys_db: str, tmp_path: Path
) -> None:
    settings = make_settings(database_url=keys_db, outbox_worker="off")
    async with _serving(settings):
        pass
    code, output = await anyio.to_thread.run_sync(
        _cli, ["secret", "rotate"], settings, NEW_SECRET, tmp_path
    )
    assert code == 1
    assert "keep" in output or "old key" in output
