"""Clearer errors (issue 13 item 7): 415 for non-JSON bodies, ``token_expired``, plain-word
token refusals, and a ``detail`` that adds to its ``title`` or is left out."""

from __future__ import annotations

import inspect
import json
import re
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import time_machine
from fastapi import FastAPI

from helpers import admin_headers, bearer, signup_login
from keyturn import errors
from keyturn.api.problems import bearer_challenge, problem
from keyturn.domain import utcnow

pytestmark = pytest.mark.anyio

OPENAPI = json.loads(
    (Path(__file__).parents[3] / "docs/specifications/openapi.json").read_text(encoding="utf-8")
)

# Library words a client should never have to decode.
JARGON = re.compile(r"JWS|joserfc|compact|invalid_claim|expired_token|dictionary", re.I)


def json_body_routes(client: httpx.AsyncClient) -> list[tuple[str, str]]:
    """(method, path) of every operation with a JSON request body, from the OpenAPI document."""
    found = []
    for path, operations in OPENAPI["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                found.append((method.upper(), re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)))
    return found


def assert_unsupported(answer: httpx.Response) -> None:
    assert answer.status_code == 415, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    body = answer.json()
    assert body["code"] == "unsupported_media_type"
    assert "application/json" in body["title"]
    assert "application/json" in body["detail"]
    assert not JARGON.search(answer.text)


async def test_every_json_route_answers_415_to_a_form(app: FastAPI, client: httpx.AsyncClient):
    # An admin's token passes every route's own checks, so the body is what is refused.
    headers = await admin_headers(app, client)
    routes = json_body_routes(client)
    assert ("POST", "/v1/auth/login") in routes
    assert len(routes) >= 19
    for method, path in routes:
        # What `curl -d '{...}'` sends: the JSON text as a form.
        answer = await client.request(
            method,
            path,
            content=b'{"email": "a@example.com"}',
            headers={"Content-Type": "application/x-www-form-urlencoded", **headers},
        )
        assert_unsupported(answer)


async def test_every_json_route_answers_415_without_content_type(
    app: FastAPI, client: httpx.AsyncClient
):
    headers = await admin_headers(app, client)
    for method, path in json_body_routes(client):
        answer = await client.request(
            method, path, content=b'{"email": "a@example.com"}', headers=headers
        )
        assert "content-type" not in answer.request.headers
        assert_unsupported(answer)
        assert "without a Content-Type" in answer.json()["detail"]


async def test_json_bodies_still_work(client: httpx.AsyncClient):
    for content_type in ("application/json", "application/json; charset=utf-8"):
        answer = await client.post(
            "/v1/auth/login",
            content=b'{"email": "nobody@example.com", "password": "wrong password 1"}',
            headers={"Content-Type": content_type},
        )
        assert answer.status_code == 401, answer.text
        assert answer.json()["code"] == "invalid_credentials"
    # A bodiless request to a JSON route keeps its own answer: the body is required.
    empty = await client.post("/v1/auth/login")
    assert empty.status_code == 422
    assert empty.json()["code"] == "invalid_request"


async def test_expired_access_token_answers_token_expired(client: httpx.AsyncClient):
    login = await signup_login(client)
    with time_machine.travel(utcnow() + timedelta(seconds=int(login["expires_in"]) + 1)):
        answer = await client.get("/v1/me", headers=bearer(login["access_token"]))
    assert answer.status_code == 401
    body = answer.json()
    assert body["code"] == "token_expired"
    assert body["title"] == "The access token has expired"
    assert answer.headers["www-authenticate"] == (
        'Bearer error="invalid_token", error_description="The token has expired; get a new one."'
    )


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("not-a-token", "not a well-formed signed token"),
        ("a.b.c", "not a well-formed signed token"),
        ("eyJhbGciOiJub25lIn0.e30.", "algorithm that is not accepted"),
    ],
)
async def test_other_token_failures_keep_invalid_token_in_plain_words(
    client: httpx.AsyncClient, token: str, reason: str
):
    answer = await client.get("/v1/me", headers=bearer(token))
    assert answer.status_code == 401
    body = answer.json()
    assert body["code"] == "invalid_token"
    assert reason in body["detail"]
    challenge = answer.headers["www-authenticate"]
    assert challenge.startswith('Bearer error="invalid_token", error_description="The token ')
    assert reason in challenge
    assert not JARGON.search(answer.text + challenge)


async def test_a_token_of_another_issuer_is_told_so(client: httpx.AsyncClient):
    login = await signup_login(client)
    answer = await client.get("/v1/me", headers=bearer(login["access_token"][:-4] + "AAAA"))
    assert answer.status_code == 401
    assert answer.json()["detail"] == "The token's signature is not valid."


async def test_missing_token_challenge_names_no_error(client: httpx.AsyncClient):
    answer = await client.get("/v1/me")
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    assert answer.json()["code"] == "invalid_token"


def _default_instances() -> list[errors.KeyturnError]:
    """One instance of every error class, built with what its constructor needs."""
    special: dict[type[errors.KeyturnError], errors.KeyturnError] = {
        errors.PasswordPolicyError: errors.PasswordPolicyError("password_too_short", "Too short."),
        errors.RateLimited: errors.RateLimited(retry_after=1, limit=1, reset_after=1),
        errors.MethodNotAllowed: errors.MethodNotAllowed(allow="POST"),
        errors.RequestObjectNotSupported: errors.RequestObjectNotSupported("request"),
    }
    found = []
    for _, cls in inspect.getmembers(errors, inspect.isclass):
        if issubclass(cls, errors.KeyturnError):
            found.append(special.get(cls) or cls())
    return found


def test_no_problem_repeats_its_title_as_detail():
    instances = _default_instances()
    assert len(instances) > 40
    for exc in instances:
        answer = problem(exc.status, exc.code, exc.title, exc.detail, errors=exc.errors)
        body: dict[str, Any] = json.loads(bytes(answer.body))
        assert body["title"] == exc.title
        assert body.get("detail") != body["title"], type(exc).__name__
        if exc.detail == exc.title:
            assert "detail" not in body, type(exc).__name__


def test_bearer_challenge_quotes_safely():
    exc = errors.InvalidToken('a "quoted" \\ description\nwith a line break')
    assert bearer_challenge(exc) == (
        'Bearer error="invalid_token", error_description="a quoted  descriptionwith a line break"'
    )
    assert bearer_challenge(errors.CredentialsMissing()) == "Bearer"
    assert bearer_challenge(errors.AuthenticationFailed()) == "Bearer"


async def test_common_failures_give_details_that_add_to_the_title(client: httpx.AsyncClient):
    answers = [
        await client.get("/no/such/path"),
        await client.delete("/v1/auth/login"),
        await client.post("/v1/auth/login", data={"email": "a@example.com"}),
        await client.post(
            "/v1/auth/login", content=b"{", headers={"Content-Type": "application/json"}
        ),
        await client.post("/v1/auth/login", json={"email": "x"}),
        await client.get("/v1/me"),
        await client.get("/v1/me", headers=bearer("junk")),
        await client.post("/v1/auth/refresh", json={"refresh_token": "nope"}),
    ]
    for answer in answers:
        assert answer.headers["content-type"].startswith("application/problem+json"), answer.text
        body = answer.json()
        assert body.get("detail") != body["title"], body
        assert body["code"]
        assert body["type"].endswith(body["code"])
        assert not JARGON.search(answer.text), answer.text
    not_allowed = answers[1]
    assert not_allowed.status_code == 405
    assert not_allowed.json()["detail"] == "/v1/auth/login accepts POST."


async def test_an_expired_token_does_not_reload_the_keys(
    app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
):
    # Its signature held, so its key is known: expired tokens (common) cost no key reload.
    login = await signup_login(client)
    keys = app.state.services.keys
    original = keys.reload_if_older_than
    calls: list[float] = []

    async def counting(seconds: float) -> bool:
        calls.append(seconds)
        return bool(await original(seconds))

    monkeypatch.setattr(keys, "reload_if_older_than", counting)
    with time_machine.travel(utcnow() + timedelta(seconds=int(login["expires_in"]) + 1)):
        answer = await client.get("/v1/me", headers=bearer(login["access_token"]))
    assert answer.json()["code"] == "token_expired"
    assert calls == []
    # A token signed by a key nobody knows still makes the verifier look again.
    await client.get("/v1/me", headers=bearer(login["access_token"][:-4] + "AAAA"))
    assert calls
