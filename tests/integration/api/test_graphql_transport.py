"""GraphQL transport (issue 13 item 6): problem+json for transport errors, GraphiQL with
local assets in dev only, and partial errors that name the denied field."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from conftest import SettingsFactory
from helpers import bearer, lifespan, signup_login
from keyturn.app import create_app
from keyturn.config import OWASP_ARGON2_MEMORY_KIB, OWASP_ARGON2_TIME_COST, Settings

pytestmark = pytest.mark.anyio

PRODUCTION: dict[str, Any] = {
    "env": "production",
    "issuer": "https://id.example.com",
    "argon2_memory_kib": OWASP_ARGON2_MEMORY_KIB,
    "argon2_time_cost": OWASP_ARGON2_TIME_COST,
    "require_verified_email": False,
}
HTML = {"accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
JSON = {"content-type": "application/json"}
UNSUPPORTED = "unsupported_media_type"


@asynccontextmanager
async def serving(settings: Settings, base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    application = create_app(settings)
    async with lifespan(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as http:
            yield http


def problem_of(answer: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json"), answer.text
    body: dict[str, Any] = answer.json()
    assert body["code"] == code
    assert body["status"] == status
    assert body["type"].endswith("/" + code)
    assert body.get("detail") != body["title"]
    return body


@pytest.mark.parametrize(
    ("content", "headers", "status", "code"),
    [
        (b"not json", JSON, 400, "malformed_json"),
        (b'{"query": "{ me { id } ', JSON, 400, "malformed_json"),
        (b"{}", JSON, 400, "missing_query"),
        (b'{"query": ""}', JSON, 400, "missing_query"),
        (b'{"query": null}', JSON, 400, "missing_query"),
        (b"[]", JSON, 400, "invalid_graphql_request"),
        (b'"query"', JSON, 400, "invalid_graphql_request"),
        (b'{"query": 5}', JSON, 400, "invalid_graphql_request"),
        (b'{"query": "{ __typename }", "variables": []}', JSON, 400, "invalid_graphql_request"),
        (
            b'{"query": "query A { __typename }", "operationName": "B"}',
            JSON,
            400,
            "invalid_graphql_request",
        ),
        (b'{"query": "{ __typename }"}', {}, 415, "unsupported_media_type"),
        (
            b'{"query": "{ __typename }"}',
            {"content-type": "application/x-www-form-urlencoded"},
            415,
            "unsupported_media_type",
        ),
        (b'{"query": "{ __typename }"}', {"content-type": "text/plain"}, 415, UNSUPPORTED),
    ],
)
async def test_transport_errors_are_problems(
    client: httpx.AsyncClient, content: bytes, headers: dict[str, str], status: int, code: str
):
    answer = await client.post("/graphql", content=content, headers=headers)
    problem_of(answer, status, code)


async def test_wrong_methods_are_problems(client: httpx.AsyncClient):
    for method in ("PUT", "DELETE", "PATCH", "OPTIONS"):
        answer = await client.request(method, "/graphql")
        problem_of(answer, 405, "method_not_allowed")
    # A client that does not ask for HTML (curl, GraphQL libraries) is told to POST.
    for headers in ({"accept": "application/json"}, {}):
        answer = await client.get("/graphql", params={"query": "{ __typename }"}, headers=headers)
        body = problem_of(answer, 405, "method_not_allowed")
        assert answer.headers["allow"] == "POST"
        assert "POST" in body["detail"]


async def test_a_good_request_still_answers(client: httpx.AsyncClient):
    answer = await client.post(
        "/graphql", content=b'{"query": "{ __typename }"}', headers=JSON | HTML
    )
    assert answer.status_code == 200
    assert answer.json() == {"data": {"__typename": "Query"}}


async def test_graphiql_in_dev_with_local_assets_and_strict_csp(client: httpx.AsyncClient):
    page = await client.get("/graphql", headers=HTML)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self';" in csp
    assert "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp
    html = page.text
    # No inline script and nothing from another origin.
    assert re.findall(r"<script(?![^>]*\bsrc=)", html) == []
    assert "//" not in re.sub(r"<!doctype html>", "", html, flags=re.I)
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert len(sources) == 6
    for source in sources:
        assert source.startswith("/graphql/assets/")
        asset = await client.get(source)
        assert asset.status_code == 200, source
        assert asset.headers["content-type"].startswith(("text/javascript", "text/css"))
        assert len(asset.content) > 40
    missing = await client.get("/graphql/assets/graphiql.min.js.map")
    problem_of(missing, 404, "not_found")


async def test_production_has_no_graphiql(make_settings: SettingsFactory):
    async with serving(make_settings(**PRODUCTION), "https://id.example.com") as http:
        page = await http.get("/graphql", headers=HTML)
        body = problem_of(page, 405, "method_not_allowed")
        assert page.headers["allow"] == "POST"
        assert "GraphiQL" not in page.text
        assert "<html" not in page.text
        asset = await http.get("/graphql/assets/graphiql.min.js")
        problem_of(asset, 404, "not_found")
        assert body["detail"].startswith("Send GraphQL operations with POST")
        # The transport errors answer the same way in production.
        problem_of(await http.post("/graphql", content=b"{", headers=JSON), 400, "malformed_json")
        refused = await http.post("/graphql", content=b"{}", headers=JSON)
        problem_of(refused, 400, "missing_query")


async def test_a_denied_field_is_named_in_errors(client: httpx.AsyncClient):
    login = await signup_login(client)
    answer = await client.post(
        "/graphql",
        json={"query": "{ me { email } roles { name } }"},
        headers=bearer(login["access_token"]),
    )
    assert answer.status_code == 200
    body = answer.json()
    # The field the caller may read keeps its data; the denied one is null and explained.
    assert body["data"] == {"me": {"email": login["email"]}, "roles": None}
    [error] = body["errors"]
    assert error["path"] == ["roles"]
    assert error["extensions"]["code"] == "permission_denied"
    assert error["extensions"]["status"] == 403
    assert error["message"] == "This needs the 'roles:write' permission."
    assert error["locations"] == [{"line": 1, "column": 16}]
