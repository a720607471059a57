"""The metric families exist on a real scrape and move when what they measure moves."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx
import pytest

from helpers import PASSWORD, new_email, running_app, signup_login
from integration.admin.test_audit_chain import seal
from keyturn.config import Settings
from keyturn.db.engine import create_engine
from net import free_port

pytestmark = pytest.mark.anyio

SettingsFactory = Callable[..., Settings]
LOGIN = {"route": "/v1/auth/login", "method": "POST", "status": "200"}
RUNTIME_FAMILIES = (
    "process_cpu_seconds",
    "process_resident_memory_bytes",
    "process_open_fds",
    "python_info",
    "python_gc_objects_collected",
)


async def test_runtime_pool_and_signing_key_families(
    client: httpx.AsyncClient, settings: Settings, scrape
) -> None:
    exposition = await scrape(client)
    for family in RUNTIME_FAMILIES:
        assert family in exposition.families, family
    # The pool is read at scrape time: its configured size, nothing checked out between
    # requests, no overflow (max_overflow=0 on PostgreSQL).
    assert exposition.value("keyturn_db_pool_size") >= 1
    assert exposition.value("keyturn_db_pool_checked_out") >= 0
    assert "keyturn_db_pool_overflow" in exposition.families
    ages = {labels["alg"] for labels in exposition.series("keyturn_signing_key_age_seconds")}
    assert ages >= set(settings.signing_algorithms)
    assert exposition.value("keyturn_signing_key_age_seconds", alg=settings.signing_alg) >= 0
    assert exposition.value("keyturn_readiness_check_up", check="database") == 1
    assert exposition.value("keyturn_hash_pool_capacity") >= 1


async def test_a_login_counts_once_under_its_route_template(
    client: httpx.AsyncClient, scrape
) -> None:
    email = new_email()
    await signup_login(client, email)
    before = await scrape(client)
    answer = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert answer.status_code == 200
    after = await scrape(client)
    name = "keyturn_http_request_duration_seconds_count"
    assert after.value(name, **LOGIN) == before.value(name, **LOGIN) + 1
    logins = "keyturn_logins_total"
    assert after.value(logins, outcome="success") == before.value(logins, outcome="success") + 1


async def test_unmatched_paths_and_odd_methods_do_not_make_new_series(
    client: httpx.AsyncClient, scrape
) -> None:
    for _ in range(5):
        await client.get(f"/no-such-{uuid.uuid4().hex}")
        await client.request("BREW", f"/coffee-{uuid.uuid4().hex}")
    exposition = await scrape(client)
    series = exposition.series("keyturn_http_request_duration_seconds_count")
    routes = {labels["route"] for labels in series}
    methods = {labels["method"] for labels in series}
    assert not [route for route in routes if "no-such" in route or "coffee" in route]
    assert "unmatched" in routes
    assert "BREW" not in methods
    assert "other" in methods
    # Every route label is a template the app declares (or the one "unmatched" value).
    assert all(route == "unmatched" or route.startswith("/") for route in routes)


async def test_queued_mail_shows_as_outbox_depth(
    make_settings: SettingsFactory, private_database_url: str, scrape
) -> None:
    # The worker is off so the mail stays queued; each app start reads the backlog afresh
    # (the reading is cached a few seconds within one process).
    settings = make_settings(database_url=private_database_url, outbox_worker="off")
    async with running_app(settings) as client:
        empty = await scrape(client)
        assert empty.value("keyturn_outbox_messages", status="pending") == 0
        assert empty.value("keyturn_outbox_oldest_pending_age_seconds") == 0
        signup = {"email": new_email(), "password": PASSWORD}
        assert (await client.post("/v1/auth/signup", json=signup)).status_code == 202
    async with running_app(settings) as client:
        queued = await scrape(client)
    assert queued.value("keyturn_outbox_messages", status="pending") == 1
    assert queued.value("keyturn_outbox_messages", status="dead") == 0
    assert queued.value("keyturn_outbox_oldest_pending_age_seconds") > 0


async def test_unsealed_audit_rows_show_as_seal_lag(
    make_settings: SettingsFactory,
    private_database_url: str,
    scrape,
) -> None:
    """Issue 17: the rows the sealer has not chained yet, and how old the oldest is."""
    # This process's own sealer stays asleep, so what the scrape sees is what was left.
    settings = make_settings(
        database_url=private_database_url, outbox_worker="off", audit_seal_seconds=3600
    )
    async with running_app(settings) as client:
        empty = await scrape(client)
        assert empty.value("keyturn_audit_unsealed_events") == 0
        assert empty.value("keyturn_audit_seal_lag_seconds") == 0
        wrong = {"email": new_email(), "password": PASSWORD}
        assert (await client.post("/v1/auth/login", json=wrong)).status_code == 401
    async with running_app(settings) as client:
        waiting = await scrape(client)
        assert waiting.value("keyturn_audit_unsealed_events") == 1
        assert waiting.value("keyturn_audit_seal_lag_seconds") > 0
    engine = create_engine(private_database_url)
    try:
        assert await seal(engine) == 1
    finally:
        await engine.dispose()
    async with running_app(settings) as client:
        sealed = await scrape(client)
    assert sealed.value("keyturn_audit_unsealed_events") == 0
    assert sealed.value("keyturn_audit_seal_lag_seconds") == 0


async def test_redis_failures_count_in_one_family_and_readiness_drops(
    make_settings: SettingsFactory, backend: str, scrape
) -> None:
    if backend != "embedded":
        pytest.skip("points Redis at a closed port; one backend is enough")
    # Nothing listens there: every Redis call fails at once (connection refused).
    settings = make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    async with running_app(settings) as client:
        before = await scrape(client)
        answer = await client.post(
            "/v1/auth/login", json={"email": new_email(), "password": PASSWORD}
        )
        assert answer.status_code == 401  # the limits fall back per process
        after = await scrape(client)
    name = "keyturn_redis_errors_total"
    assert after.value(name, component="rate_limit") > before.value(name, component="rate_limit")
    assert after.value("keyturn_rate_limit_fallbacks_total", operation="hit") > 0
    assert after.value("keyturn_readiness_check_up", check="redis") == 0
