"""PostgreSQL stops under load: Keyturn answers 503 + Retry-After fast, never 500, and recovers.

One ``keyturn serve`` on a private PostgreSQL cluster (``e2e/private_postgres.py``), with
the shared Redis when ``KEYTURN_TEST_REDIS_URL`` is set (own prefix), else without. A user
signs up and logs in; the cluster is stopped (``pg_ctl stop -m immediate``); ten clients
drive login, refresh, ``/v1/me``, GraphQL ``me``, the token endpoint and the hosted sign-in
page for two seconds. Every 5xx must be a 503 with ``Retry-After`` in the form of its
surface (problem+json, RFC 6749 JSON, an HTML page, GraphQL ``extensions``); no request may
hang (a generous hang bound, not a speed claim). ``/healthz`` stays 200 and ``/readyz``
turns 503. ``/v1/me`` needs the database (it reads the user row), so it answers 503; the
JWKS is served from the key cache and stays 200. Then the cluster starts again and, with
no restart of Keyturn, logins answer 200 again and the refresh token from before the
outage still rotates (no half-done rotation was left behind).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from e2e.private_postgres import (
    PrivatePostgres,
    create_private_postgres,
    remove_private_postgres,
    unavailable_reason,
)
from e2e.processes import LOW_ARGON2, Server
from helpers import PASSWORD, TEST_SECRET, bearer, csrf_from, new_email
from keyturn.db.migrate import upgrade

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.skipif(
        not os.environ.get("KEYTURN_TEST_DATABASE_URL"),
        reason="runs with the PostgreSQL tests (KEYTURN_TEST_DATABASE_URL set); "
        "it starts a private cluster of its own",
    ),
    pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason())),
]

CLIENTS = 10
LOAD_SECONDS = 2.0
# Hang detector, not a timing assertion: a request that takes this long is stuck.
HANG_BOUND = 15.0
RECOVERY_BOUND = 30.0
# A well-formed client_id no client has: the token endpoint must look it up.
UNKNOWN_CLIENT = ("A" * 22, "not-a-secret")
ME_QUERY = {"query": "{ me { email } }"}
# The client lookup comes first: without the database the redirect URI cannot be
# verified, so the answer is the endpoint's own page, never a redirect.
AUTHORIZE = {
    "client_id": UNKNOWN_CLIENT[0],
    "response_type": "code",
    "redirect_uri": "https://rp.example/callback",
    "scope": "openid",
    "state": "outage",
}


@pytest.fixture
def cluster() -> Iterator[PrivatePostgres]:
    created = create_private_postgres()
    try:
        created.start()
        asyncio.run(upgrade(created.url))
        yield created
    finally:
        remove_private_postgres(created)


@pytest.fixture
def keyturn(
    start_server: Callable[..., Server], cluster: PrivatePostgres, redis_prefix: str
) -> Server:
    env = {
        "KEYTURN_DATABASE_URL": cluster.url,
        "KEYTURN_SECRET_KEY": TEST_SECRET,
        # The load is hundreds of fast refusals from one address: not what is tested here.
        "KEYTURN_LIMIT_IP_PER_MINUTE": "1000000",
        **LOW_ARGON2,
    }
    if os.environ.get("KEYTURN_TEST_REDIS_URL"):
        env["KEYTURN_REDIS_URL"] = os.environ["KEYTURN_TEST_REDIS_URL"]
        env["KEYTURN_REDIS_PREFIX"] = redis_prefix
    return start_server(env)


def _retry_after(answer: httpx.Response) -> int:
    value = answer.headers.get("retry-after", "")
    assert value.isdigit(), f"503 without a usable Retry-After: {value!r}"
    assert int(value) >= 1, f"503 without a usable Retry-After: {value!r}"
    return int(value)


def _rest_unavailable(answer: httpx.Response) -> None:
    assert answer.headers["content-type"].startswith("application/problem+json"), answer.text
    assert answer.json()["code"] == "service_unavailable", answer.text


def _oauth_unavailable(answer: httpx.Response) -> None:
    assert answer.json()["error"] == "temporarily_unavailable", answer.text
    assert answer.headers.get("cache-control") == "no-store"


def _page_unavailable(answer: httpx.Response) -> None:
    assert answer.headers["content-type"].startswith("text/html"), answer.text[:200]


def _graphql_errors_are_outages(answer: httpx.Response) -> None:
    assert answer.status_code == 200, answer.text
    for error in answer.json().get("errors", []):
        extensions = error["extensions"]
        assert extensions["code"] == "service_unavailable", answer.text
        assert extensions["retry_after"] >= 1, answer.text


Check = Callable[[httpx.Response], None]


class Load:
    """Counts answers by (surface, status) and collects every broken promise."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, int | str]] = Counter()
        self.problems: list[str] = []
        self._lock = threading.Lock()

    def judge(self, name: str, answer: httpx.Response, shape: Check) -> None:
        try:
            if answer.status_code >= 500:
                assert answer.status_code == 503, f"{answer.status_code}: {answer.text[:300]}"
                _retry_after(answer)
                shape(answer)
            elif name == "graphql":
                _graphql_errors_are_outages(answer)
        except (AssertionError, KeyError, ValueError) as broken:
            with self._lock:
                self.problems.append(f"{name}: {broken}")
        with self._lock:
            self.counts[(name, answer.status_code)] += 1

    def failed(self, name: str, error: Exception) -> None:
        with self._lock:
            self.counts[(name, type(error).__name__)] += 1
            self.problems.append(f"{name}: {type(error).__name__} (hung or dropped)")


def _one_client(base_url: str, email: str, tokens: dict[str, str], load: Load) -> None:
    deadline = time.monotonic() + LOAD_SECONDS
    auth = bearer(tokens["access_token"])
    requests: list[tuple[str, Callable[[httpx.Client], httpx.Response], Check]] = [
        (
            "login",
            lambda c: c.post("/v1/auth/login", json={"email": email, "password": PASSWORD}),
            _rest_unavailable,
        ),
        (
            "refresh",
            lambda c: c.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}),
            _rest_unavailable,
        ),
        ("me", lambda c: c.get("/v1/me", headers=auth), _rest_unavailable),
        ("graphql", lambda c: c.post("/graphql", json=ME_QUERY, headers=auth), _rest_unavailable),
        (
            "token",
            lambda c: c.post(
                "/oauth2/token", data={"grant_type": "client_credentials"}, auth=UNKNOWN_CLIENT
            ),
            _oauth_unavailable,
        ),
        ("authorize", lambda c: c.get("/oauth2/authorize", params=AUTHORIZE), _page_unavailable),
        ("ui_get", lambda c: c.get("/ui/login"), _page_unavailable),
    ]
    with httpx.Client(base_url=base_url, timeout=HANG_BOUND) as client:
        while time.monotonic() < deadline:
            for name, send, shape in requests:
                try:
                    answer = send(client)
                except httpx.TransportError as error:
                    load.failed(name, error)
                    continue
                load.judge(name, answer, shape)
                if name == "ui_get" and answer.status_code == 200:
                    try:
                        posted = client.post(
                            "/ui/login",
                            data={
                                "csrf_token": csrf_from(answer.text),
                                "email": email,
                                "password": PASSWORD,
                            },
                        )
                    except httpx.TransportError as error:
                        load.failed("ui_post", error)
                        continue
                    load.judge("ui_post", posted, _page_unavailable)


def _log_events(output: str) -> list[str]:
    events = []
    for line in output.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # uvicorn's own lines are not JSON
        if isinstance(entry, dict):
            events.append(str(entry.get("event")))
    return events


def _wait_for_login(http: httpx.Client, email: str) -> httpx.Response:
    deadline = time.monotonic() + RECOVERY_BOUND
    while True:
        answer = http.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
        if answer.status_code == 200 or time.monotonic() > deadline:
            return answer
        time.sleep(0.2)


def test_a_database_outage_answers_503_with_retry_after_and_recovers(
    keyturn: Server, cluster: PrivatePostgres
) -> None:
    email = new_email()
    with keyturn.client() as http:
        signup = http.post("/v1/auth/signup", json={"email": email, "password": PASSWORD})
        assert signup.status_code == 202, signup.text
        login = http.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert login.status_code == 200, login.text
        tokens = login.json()

        cluster.stop()
        load = Load()
        with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
            for future in [
                pool.submit(_one_client, keyturn.base_url, email, tokens, load)
                for _ in range(CLIENTS)
            ]:
                future.result()
        print("answers during the outage (surface, status): count")
        for key, count in sorted(load.counts.items(), key=str):
            print(f"  {key}: {count}")
        assert not load.problems, "\n".join(load.problems[:20]) + keyturn.output()[-4000:]
        # The outage really reached every surface that needs the database.
        for name in ("login", "refresh", "me", "token", "authorize", "ui_post"):
            assert load.counts[(name, 503)] > 0, (name, load.counts)
        assert load.counts[("graphql", 200)] > 0, load.counts

        assert http.get("/healthz").status_code == 200
        ready = http.get("/readyz")
        assert ready.status_code == 503, ready.text
        # Verifying tokens and publishing keys need no database: the key cache serves them.
        assert http.get("/.well-known/jwks.json").status_code == 200

        cluster.start()
        again = _wait_for_login(http, email)
        assert again.status_code == 200, again.text + keyturn.output()[-4000:]
        # Every refresh during the outage failed before it committed: the old token rotates.
        rotated = http.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert rotated.status_code == 200, rotated.text
        me = http.get("/v1/me", headers=bearer(rotated.json()["access_token"]))
        assert (me.status_code, me.json()["email"]) == (200, email)
        assert http.get("/readyz").status_code == 200

    output = keyturn.stdout()
    # No request reached a 500 handler (REST's and GraphQL's log these with the trace).
    assert '"unhandled_error"' not in output, output[-4000:]
    assert '"graphql_unhandled_error"' not in output, output[-4000:]
    warnings = sum(1 for event in _log_events(output) if event == "database_unavailable")
    print(f"database_unavailable log lines: {warnings} for {sum(load.counts.values())} requests")
    assert 1 <= warnings < sum(load.counts.values()) / 10
    keyturn.assert_stopped_cleanly()
