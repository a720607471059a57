"""Signing-key rotation and secret re-encryption (DESIGN.md section 4, issue 5 item 5).

States next -> active -> retired: the JWKS always holds the next and the active key, a
retired one until every token it signed has expired; a token minted before two rotations
still verifies with an independent library (PyJWT) until it expires; two replicas rotating
at once make one rotation; the schedule rotates when due and not before; ``keyturn secret
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
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from helpers import TEST_SECRET, bearer, mails_to, new_email, signup_login
from keyturn.app import create_app
from keyturn.cli.main import app as cli_app
from keyturn.config import Settings
from keyturn.db.engine import create_engine, session_factory
from keyturn.db.models import OutboxMessageRow
from keyturn.db.unit_of_work import SqlUnitOfWork
from keyturn.security.aead import Aead
from keyturn.security.digests import KeyRing
from keyturn.services.keys import KeyInfo, KeyManager, RotationRefused, RotationResult
from keyturn.services.ports import UnitOfWork
from smtp_server import SmtpServer

pytestmark = pytest.mark.anyio

SettingsFactory = Callable[..., Settings]
NEW_SECRET = "new-secret-key-9876543210-zyxwvutsrqponmlk"
# Short enough for two rotations inside one token lifetime (the acceptance test).
PUBLISH_AHEAD = 331
TOKEN_TTL = 3600
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
        cache_seconds=settings.key_cache_seconds,
        token_ttl=settings.access_token_ttl,
        rotation_days=settings.key_rotation_days,
        publish_ahead_seconds=settings.key_publish_ahead_seconds,
    )


@asynccontextmanager
async def _serving(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    application = create_app(settings)
    async with LifespanManager(application):
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


def _pyjwt_verify(token: str, jwks: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """Verification as a third party does it: PyJWT, keys from the published JWKS only."""
    kid = jwt.get_unverified_header(token)["kid"]
    matching = [key for key in jwks["keys"] if key["kid"] == kid]
    if not matching:
        raise jwt.InvalidTokenError(f"kid {kid} is not published")
    claims: dict[str, Any] = jwt.decode(
        token,
        key=jwt.PyJWK(matching[0]),
        algorithms=["ES256"],
        audience=settings.audience,
        issuer=settings.issuer,
    )
    return claims


def _kid(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


def _by_state(keys: list[KeyInfo]) -> dict[str, list[str]]:
    states: dict[str, list[str]] = {}
    for key in keys:
        states.setdefault(key.state, []).append(key.kid)
    return states


async def _assert_published(keys: KeyManager, client: httpx.AsyncClient) -> dict[str, list[str]]:
    """JWKS = exactly the next, active and unexpired retired keys; one next, one active."""
    listed = await keys.list_keys()
    states = _by_state(listed)
    assert len(states.get("next", [])) == 1, states
    assert len(states.get("active", [])) == 1, states
    published = {key.kid for key in listed if key.published}
    assert {key["kid"] for key in (await _jwks(client))["keys"]} == published
    return states


def _start() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


# --- two rotations: old tokens verify (PyJWT through the JWKS) until they expire ---------


async def test_token_minted_before_two_rotations_verifies_through_jwks_until_expiry(
    rotation_settings: Settings,
) -> None:
    settings = rotation_settings
    start = _start()
    with time_machine.travel(start, tick=False) as traveller:
        async with _serving(settings) as (application, client):
            keys = _keys(application)
            states = await _assert_published(keys, client)
            first_kid, first_next = states["active"][0], states["next"][0]
            old = await signup_login(client)
            old_token = old["access_token"]
            assert _kid(old_token) == first_kid
            assert _pyjwt_verify(old_token, await _jwks(client), settings)["sub"]

            rotations: list[RotationResult] = []
            for _ in range(2):
                traveller.shift(timedelta(seconds=PUBLISH_AHEAD))
                rotations.append(await keys.rotate())
                states = await _assert_published(keys, client)
                fresh = await signup_login(client)
                # New tokens carry the new kid: the former next key signs now.
                assert _kid(fresh["access_token"]) == rotations[-1].activated
                assert _pyjwt_verify(fresh["access_token"], await _jwks(client), settings)
                # The token from before the first rotation still verifies, both ways.
                assert _pyjwt_verify(old_token, await _jwks(client), settings)["sub"]
                assert (await client.get("/v1/me", headers=bearer(old_token))).status_code == 200

            assert rotations[0].activated == first_next
            assert rotations[0].retired == (first_kid,)
            assert rotations[1].activated == rotations[0].next
            assert rotations[1].retired == (first_next,)
            assert set(states["retired"]) == {first_kid, first_next}

            # Until its expiry it verifies; one second later it does not.
            expiry = start + timedelta(seconds=TOKEN_TTL)
            traveller.move_to(expiry - timedelta(seconds=1))
            await keys.reload()
            assert _pyjwt_verify(old_token, await _jwks(client), settings)
            assert (await client.get("/v1/me", headers=bearer(old_token))).status_code == 200
            traveller.move_to(expiry + timedelta(seconds=1))
            with pytest.raises(jwt.ExpiredSignatureError):
                _pyjwt_verify(old_token, await _jwks(client), settings)
            assert (await client.get("/v1/me", headers=bearer(old_token))).status_code == 401

            # Past retired_at + token lifetime (+ margin) the first key is gone from the JWKS.
            retired_at = start + timedelta(seconds=PUBLISH_AHEAD)
            traveller.move_to(retired_at + keys.retired_window + timedelta(seconds=1))
            await keys.reload()
            states = await _assert_published(keys, client)
            assert first_kid in states["expired"]
            assert first_kid not in {key["kid"] for key in (await _jwks(client))["keys"]}
            with pytest.raises(jwt.InvalidTokenError, match="not published"):
                _pyjwt_verify(old_token, await _jwks(client), settings)
            assert (await client.get("/v1/me", headers=bearer(old_token))).status_code == 401
            # The second key, retired later, is still published; the signer is unaffected.
            assert first_next in states["retired"]
            assert _pyjwt_verify(
                (await signup_login(client))["access_token"], await _jwks(client), settings
            )


async def test_a_next_key_too_young_is_not_activated_unless_forced(
    rotation_settings: Settings,
) -> None:
    async with _serving(rotation_settings) as (application, client):
        keys = _keys(application)
        before = _by_state(await keys.list_keys())
        with pytest.raises(RotationRefused) as refused:
            await keys.rotate()
        assert refused.value.status == 409
        assert refused.value.retry_at is not None
        assert _by_state(await keys.list_keys()) == before
        forced = await keys.rotate(force=True)
        assert forced.activated == before["next"][0]
        assert forced.retired == tuple(before["active"])
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
            before = _by_state(await first.list_keys())
            traveller.shift(timedelta(seconds=PUBLISH_AHEAD))
            # PostgreSQL: both read the same `next` key, the compare-and-set lets one win.
            # SQLite serialises the transactions: the second finds a `next` key too young.
            outcomes = await asyncio.gather(first.rotate(), second.rotate(), return_exceptions=True)
            done = [outcome for outcome in outcomes if isinstance(outcome, RotationResult)]
            refused = [outcome for outcome in outcomes if isinstance(outcome, RotationRefused)]
            assert len(done) == 1, outcomes
            assert len(refused) == 1, outcomes
            after = _by_state(await first.list_keys())
            assert after["active"] == before["next"]
            assert after["retired"] == before["active"]
            assert len(after["next"]) == 1
            assert sum(len(kids) for kids in after.values()) == 3

            # The schedule on both replicas at once: also exactly one rotation.
            traveller.shift(timedelta(days=settings.key_rotation_days))
            scheduled = await asyncio.gather(first.rotate_if_due(), second.rotate_if_due())
            assert sum(result is not None for result in scheduled) == 1, scheduled
            final = _by_state(await first.list_keys())
            assert final["active"] == after["next"]
            assert len(final["next"]) == 1
            assert final["retired"] == after["active"]
            # A month on, the first key's tokens are long expired: no longer published.
            assert final["expired"] == after["retired"]
            # Both sign with the new active key (the loser of the race reloaded at once).
            assert first.signer.kid == second.signer.kid == final["active"][0]
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
            # Once only: the fresh key is not due for another day.
            assert await settle_then_states() == after
            await _assert_published(keys, client)


async def test_schedule_waits_for_the_next_key_to_be_published_long_enough(
    rotation_settings: Settings, engine: AsyncEngine
) -> None:
    """An old active key with a young next key (a database from before rotation)."""
    settings = rotation_settings
    keys = _manager(engine, settings)
    start = _start()
    with time_machine.travel(start, tick=False) as traveller:
        await keys.start()
        states = _by_state(await keys.list_keys())
        async with engine.begin() as connection:  # as an older version left it: no next
            await connection.execute(
                text("DELETE FROM signing_keys WHERE kid = :kid"), {"kid": states["next"][0]}
            )
        traveller.shift(timedelta(days=settings.key_rotation_days + 5))
        # Due by age, but no next key: the schedule creates one and waits.
        created = await keys.rotate_if_due()
        assert created is not None
        assert created.activated is None
        assert created.next is not None
        assert await keys.rotate_if_due() is None
        traveller.shift(timedelta(seconds=PUBLISH_AHEAD - 1))
        assert await keys.rotate_if_due() is None
        traveller.shift(timedelta(seconds=1))
        rotated = await keys.rotate_if_due()
        assert rotated is not None
        assert rotated.activated == created.next
        assert rotated.retired == tuple(states["active"])


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
        await _keys(application).rotate(force=True)  # a retired key is resealed too

    # The commands run their own event loops (asyncio.run): off this one, in a thread.
    ring = f"{NEW_SECRET},{TEST_SECRET}"
    code, output = await anyio.to_thread.run_sync(
        _cli, ["secret", "rotate"], old_settings, ring, tmp_path
    )
    assert code == 0, output
    assert "signing keys: 3 re-encrypted, 0 already current" in output
    assert "outbox payloads: 1 re-encrypted, 0 already current, 0 unreadable" in output
    code, output = await anyio.to_thread.run_sync(
        _cli, ["secret", "rotate"], old_settings, ring, tmp_path
    )
    assert code == 0, output  # idempotent
    assert "signing keys: 0 re-encrypted, 3 already current" in output
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
