"""GraphQL at ``POST /graphql``: permissions, REST parity, limits, errors, no N+1 (issue 5).

Every field and mutation is called as anonymous, plain user, API key with and without the
scope, and admin; the same questions asked through REST and GraphQL get the same data; the
query limits answer with their codes; a page of 50 users with roles and sessions costs as
many SQL statements as a page of 10.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI

from conftest import SettingsFactory
from helpers import PASSWORD, admin_login, bearer, lifespan, signup_login
from keyturn.app import create_app
from keyturn.config import OWASP_ARGON2_MEMORY_KIB, OWASP_ARGON2_TIME_COST, Settings
from keyturn.domain import PERMISSIONS, SELF_SERVICE_SCOPES
from sql_spy import queries, statements_run_here

pytestmark = pytest.mark.anyio

ADMIN_SCOPES = [*SELF_SERVICE_SCOPES, *PERMISSIONS]


# --- helpers -----------------------------------------------------------------------------


@pytest.fixture
def settings(make_settings: SettingsFactory) -> Settings:
    """The matrix signs many users up from one address: a larger budget than the default."""
    return make_settings(limit_signups_per_ip_per_hour=10_000, limit_ip_per_minute=10_000)


async def gql(
    client: httpx.AsyncClient,
    query: str,
    variables: dict[str, Any] | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    headers = bearer(token) if token else {}
    answer = await client.post(
        "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    body: dict[str, Any] = answer.json()
    return body


def codes(body: dict[str, Any]) -> set[str]:
    return {error["extensions"]["code"] for error in body.get("errors", [])}


async def login(client: httpx.AsyncClient, email: str) -> str:
    answer = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["access_token"]
    return token


def session_of(token: str) -> str:
    sid: str = jwt.decode(token, options={"verify_signature": False})["sid"]
    return sid


async def api_key(client: httpx.AsyncClient, token: str, scopes: list[str]) -> str:
    answer = await client.post(
        "/v1/me/api-keys", json={"name": "graphql test", "scopes": scopes}, headers=bearer(token)
    )
    assert answer.status_code == 201, answer.text
    key: str = answer.json()["key"]
    return key


def same_time(left: str | None, right: str | None) -> bool:
    if left is None or right is None:
        return left is right
    return datetime.fromisoformat(left) == datetime.fromisoformat(right)


# --- permission matrix -------------------------------------------------------------------


class Caller:
    """One row of the matrix: a credential and the email it acts for."""

    def __init__(self, name: str, token: str | None, email: str | None) -> None:
        self.name = name
        self.token = token
        self.email = email


# (name, document, needs) -- needs: "self" (any signed-in caller with the self-service
# scope), or the admin permission it needs; {victim} / {session} are filled per call.
OPERATIONS: list[tuple[str, str, str]] = [
    ("me", "{ me { id email roles } }", "me:read"),
    ("mySessions", "{ mySessions { edges { node { id } } } }", "sessions:read"),
    ("users", "{ users(first: 5) { edges { node { id } } } }", "users:read"),
    ("user", 'query { user(id: "{victim}") { id roles } }', "users:read"),
    ("user.sessions", 'query { user(id: "{victim}") { sessions { id } } }', "users:read"),
    ("roles", "{ roles { name permissions } }", "roles:write"),
    ("auditEvents", "{ auditEvents(first: 5) { edges { node { id type } } } }", "audit:read"),
    ("updateMe", 'mutation { updateMe(name: "Renamed") { name } }', "me:write"),
    ("revokeSession", 'mutation { revokeSession(id: "{session}") }', "sessions:write"),
    ("assignRole", 'mutation { assignRole(userId: "{victim}", role: "admin") }', "roles:write"),
    ("removeRole", 'mutation { removeRole(userId: "{victim}", role: "admin") }', "roles:write"),
    ("lockUser", 'mutation { lockUser(userId: "{victim}") }', "users:write"),
    ("unlockUser", 'mutation { unlockUser(userId: "{victim}") }', "users:write"),
]
SELF_SERVICE = set(SELF_SERVICE_SCOPES)


def expected(caller: str, needs: str) -> str | None:
    """The error code ``caller`` gets for an operation needing ``needs`` (None: data)."""
    if caller == "anonymous":
        return "invalid_token"
    if caller in ("admin", "admin key with the scopes"):
        return None
    if caller == "plain user":
        return None if needs in SELF_SERVICE else "permission_denied"
    assert caller == "admin key with me:read only"
    return None if needs == "me:read" else "permission_denied"


async def test_every_field_and_mutation_checks_like_rest(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    plain = await signup_login(client)
    admin = await admin_login(app, client)
    callers = [
        Caller("anonymous", None, None),
        Caller("plain user", plain["access_token"], plain["email"]),
        Caller("admin", admin["access_token"], admin["email"]),
        Caller(
            "admin key with the scopes",
            await api_key(client, admin["access_token"], ADMIN_SCOPES),
            admin["email"],
        ),
        Caller(
            "admin key with me:read only",
            await api_key(client, admin["access_token"], ["me:read"]),
            admin["email"],
        ),
    ]
    for name, template, needs in OPERATIONS:
        for caller in callers:
            victim = (await signup_login(client))["user"]["id"] if "{victim}" in template else ""
            # A second session of the caller's own account, so revoking it keeps the token.
            session = str(uuid.uuid4())
            if "{session}" in template and caller.email:
                session = session_of(await login(client, caller.email))
            document = template.replace("{victim}", victim).replace("{session}", session)
            body = await gql(client, document, token=caller.token)
            want = expected(caller.name, needs)
            where = (name, caller.name, body)
            if want is None:
                assert "errors" not in body, where
                assert body["data"] is not None, where
            else:
                assert codes(body) == {want}, where
                # Root fields are nullable: the refused one is null (nothing leaks).
                assert body["data"] is None or set(body["data"].values()) == {None}, where


async def test_every_field_and_mutation_is_in_the_matrix(client: httpx.AsyncClient) -> None:
    body = await gql(
        client,
        '{ q: __type(name: "Query") { fields { name } } '
        'm: __type(name: "Mutation") { fields { name } } '
        'u: __type(name: "User") { fields { name args { name } } } }',
    )
    served = {field["name"] for field in body["data"]["q"]["fields"]}
    served |= {field["name"] for field in body["data"]["m"]["fields"]}
    served |= {f"user.{f['name']}" for f in body["data"]["u"]["fields"] if f["args"]}
    assert served == {name for name, _, _ in OPERATIONS}


async def test_a_bad_token_is_refused_with_the_rest_code(client: httpx.AsyncClient) -> None:
    body = await gql(client, "{ me { id } }", token="not-a-jwt")
    assert codes(body) == {"invalid_token"}
    assert body["errors"][0]["extensions"]["status"] == 401


async def test_domain_errors_keep_their_rest_codes(app: FastAPI, client: httpx.AsyncClient) -> None:
    admin = await admin_login(app, client)
    token = admin["access_token"]
    victim = (await signup_login(client))["user"]["id"]
    missing = str(uuid.uuid4())
    cases = [
        (f'{{ user(id: "{missing}") {{ id }} }}', "not_found"),
        (f'mutation {{ assignRole(userId: "{victim}", role: "no-such-role") }}', "unknown_role"),
        (f'mutation {{ revokeSession(id: "{missing}") }}', "not_found"),
        ("{ users(first: 0) { edges { cursor } } }", "invalid_request"),
        ("{ users(first: 101) { edges { cursor } } }", "invalid_request"),
        ('{ users(after: "%%%") { edges { cursor } } }', "invalid_request"),
        ('{ auditEvents(after: "abc") { edges { cursor } } }', "invalid_request"),
        ('mutation { updateMe(name: "bad\\u0000name") { name } }', "invalid_request"),
    ]
    for document, code in cases:
        body = await gql(client, document, token=token)
        assert codes(body) == {code}, (document, body)
    rest = await client.get(f"/v1/admin/users/{missing}", headers=bearer(token))
    assert rest.json()["code"] == "not_found"


# --- REST / GraphQL parity ---------------------------------------------------------------

USER_FIELDS = "id email emailVerified name roles createdAt disabled lockedUntil"
SESSION_FIELDS = "id createdAt lastSeenAt ip userAgent current"


def same_user(graph: dict[str, Any], rest: dict[str, Any]) -> None:
    assert graph["id"] == rest["id"]
    assert graph["email"] == rest["email"]
    assert graph["emailVerified"] == rest["email_verified"]
    assert graph["name"] == rest["name"]
    assert graph["roles"] == rest["roles"]
    assert same_time(graph["createdAt"], rest["created_at"])
    if "disabled" in rest:
        assert graph["disabled"] == rest["disabled"]
        assert same_time(graph["lockedUntil"], rest["locked_until"])


def same_sessions(graph: list[dict[str, Any]], rest: list[dict[str, Any]]) -> None:
    assert [item["id"] for item in graph] == [item["id"] for item in rest]
    for left, right in zip(graph, rest, strict=True):
        assert left["ip"] == right["ip"]
        assert left["userAgent"] == right["user_agent"]
        assert left["current"] == right["current"]
        assert same_time(left["createdAt"], right["created_at"])
        assert same_time(left["lastSeenAt"], right["last_seen_at"])


async def test_me_and_my_sessions_match_rest(client: httpx.AsyncClient) -> None:
    user = await signup_login(client)
    await login(client, user["email"])
    token = user["access_token"]
    body = await gql(
        client,
        f"{{ me {{ {USER_FIELDS} }} mySessions {{ edges {{ node {{ {SESSION_FIELDS} }} }} }} }}",
        token=token,
    )
    me = (await client.get("/v1/me", headers=bearer(token))).json()
    same_user(body["data"]["me"], me)
    sessions = (await client.get("/v1/me/sessions", headers=bearer(token))).json()["items"]
    assert len(sessions) == 2
    same_sessions([edge["node"] for edge in body["data"]["mySessions"]["edges"]], sessions)


async def test_user_roles_sessions_and_audit_match_rest(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin = await admin_login(app, client)
    token = admin["access_token"]
    victim = await signup_login(client)
    victim_id = victim["user"]["id"]
    await login(client, victim["email"])
    assigned = await gql(
        client, f'mutation {{ assignRole(userId: "{victim_id}", role: "admin") }}', token=token
    )
    assert assigned["data"] == {"assignRole": True}
    body = await gql(
        client,
        f'{{ user(id: "{victim_id}") {{ {USER_FIELDS} sessions {{ {SESSION_FIELDS} }} }} '
        f"roles {{ name description permissions createdAt }} "
        f'auditEvents(userId: "{admin["user"]["id"]}", first: 10) '
        "{ edges { node { id type occurredAt userId sessionId ip data } cursor } } }",
        token=token,
    )
    assert "errors" not in body, body
    rest_user = (await client.get(f"/v1/admin/users/{victim_id}", headers=bearer(token))).json()
    assert rest_user["roles"] == ["admin"]
    same_user(body["data"]["user"], rest_user)
    rest_sessions = (
        await client.get(f"/v1/admin/users/{victim_id}/sessions", headers=bearer(token))
    ).json()["items"]
    assert len(rest_sessions) == 2
    same_sessions(body["data"]["user"]["sessions"], rest_sessions)
    rest_roles = (await client.get("/v1/admin/roles", headers=bearer(token))).json()["items"]
    assert [role["name"] for role in body["data"]["roles"]] == [r["name"] for r in rest_roles]
    for graph, rest in zip(body["data"]["roles"], rest_roles, strict=True):
        assert graph["permissions"] == rest["permissions"]
        assert graph["description"] == rest["description"]
    rest_events = (
        await client.get(
            "/v1/admin/audit-events",
            params={"user_id": admin["user"]["id"], "limit": 10},
            headers=bearer(token),
        )
    ).json()["items"]
    graph_events = [edge["node"] for edge in body["data"]["auditEvents"]["edges"]]
    assert [int(event["id"]) for event in graph_events] == [event["id"] for event in rest_events]
    assert [event["type"] for event in graph_events] == [event["type"] for event in rest_events]
    assert [event["data"] for event in graph_events] == [event["data"] for event in rest_events]


async def test_users_search_pages_like_rest(app: FastAPI, client: httpx.AsyncClient) -> None:
    admin = await admin_login(app, client)
    token = admin["access_token"]
    tag = uuid.uuid4().hex[:10]
    for index in range(5):
        email = f"{tag}-{index}@example.com"
        await client.post("/v1/auth/signup", json={"email": email, "password": PASSWORD})
    graph_emails: list[str] = []
    rest_emails: list[str] = []
    after: str | None = None
    cursor: str | None = None
    while True:
        body = await gql(
            client,
            "query($q: String, $after: String) { users(q: $q, first: 2, after: $after) "
            "{ edges { node { email } cursor } pageInfo { hasNextPage endCursor } } }",
            {"q": tag, "after": after},
            token=token,
        )
        page = body["data"]["users"]
        graph_emails += [edge["node"]["email"] for edge in page["edges"]]
        params: dict[str, Any] = {"q": tag, "limit": 2}
        if cursor:
            params["cursor"] = cursor
        rest = (await client.get("/v1/admin/users", params=params, headers=bearer(token))).json()
        rest_emails += [item["email"] for item in rest["items"]]
        assert page["pageInfo"]["endCursor"] == rest["next_cursor"]
        assert page["pageInfo"]["hasNextPage"] == (rest["next_cursor"] is not None)
        if page["pageInfo"]["hasNextPage"]:
            # The last edge's cursor continues exactly where the page's end cursor does.
            assert page["edges"][-1]["cursor"] == page["pageInfo"]["endCursor"]
        after = cursor = rest["next_cursor"]
        if after is None:
            break
    assert graph_emails == rest_emails == sorted(f"{tag}-{i}@example.com" for i in range(5))


# --- mutations go through the audited services -------------------------------------------


async def test_mutations_are_audited(app: FastAPI, client: httpx.AsyncClient) -> None:
    admin = await admin_login(app, client)
    token = admin["access_token"]
    victim = await signup_login(client)
    victim_id = victim["user"]["id"]
    second = session_of(await login(client, victim["email"]))

    async def rest_view() -> tuple[list[str], bool]:
        user = (await client.get(f"/v1/admin/users/{victim_id}", headers=bearer(token))).json()
        return user["roles"], user["locked_until"] is not None

    # Each mutation's effect, as REST then reads it (roles, locked).
    steps = [
        (f'mutation {{ assignRole(userId: "{victim_id}", role: "admin") }}', (["admin"], False)),
        (f'mutation {{ removeRole(userId: "{victim_id}", role: "admin") }}', ([], False)),
        (f'mutation {{ lockUser(userId: "{victim_id}") }}', ([], True)),
        (f'mutation {{ unlockUser(userId: "{victim_id}") }}', ([], False)),
    ]
    for document, after in steps:
        body = await gql(client, document, token=token)
        assert "errors" not in body, body
        assert await rest_view() == after, document
    # Locking ended the victim's sessions; a fresh login revokes one of its own.
    fresh = await login(client, victim["email"])
    extra = session_of(await login(client, victim["email"]))
    revoked = await gql(client, f'mutation {{ revokeSession(id: "{extra}") }}', token=fresh)
    assert revoked["data"] == {"revokeSession": True}
    ended = await gql(client, f'mutation {{ revokeSession(id: "{second}") }}', token=fresh)
    assert codes(ended) == {"not_found"}  # already ended by the lock

    events = (
        await client.get(
            "/v1/admin/audit-events",
            params={"user_id": admin["user"]["id"], "limit": 20},
            headers=bearer(token),
        )
    ).json()["items"]
    seen = [
        (event["type"], event["data"].get("target") or event["data"].get("target_user_id"))
        for event in events
    ]
    for kind in ("role.assigned", "role.unassigned", "admin.user_locked", "admin.user_unlocked"):
        assert (kind, victim_id) in seen, (kind, seen)
    assert all(event["ip"] for event in events[:4])
    mine = (
        await client.get(
            "/v1/admin/audit-events",
            params={"user_id": victim_id, "type": "session.revoked"},
            headers=bearer(token),
        )
    ).json()["items"]
    assert [event["session_id"] for event in mine] == [extra]


async def test_update_me_changes_only_what_it_is_given(client: httpx.AsyncClient) -> None:
    user = await signup_login(client)
    token = user["access_token"]
    named = await gql(client, 'mutation { updateMe(name: "  Ada  ") { name } }', token=token)
    assert named["data"] == {"updateMe": {"name": "Ada"}}  # stripped, as REST does
    kept = await gql(client, "mutation { updateMe { name } }", token=token)
    assert kept["data"] == {"updateMe": {"name": "Ada"}}
    cleared = await gql(client, "mutation { updateMe(name: null) { name } }", token=token)
    assert cleared["data"] == {"updateMe": {"name": None}}
    assert (await client.get("/v1/me", headers=bearer(token))).json()["name"] is None


# --- limits, introspection, malformed input ----------------------------------------------


async def test_query_limits_answer_with_their_codes(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    token = (await admin_login(app, client))["access_token"]
    deep = "{ me " + "{ a " * 9 + "{ b }" + " }" * 9 + " }"
    assert "query_too_deep" in codes(await gql(client, deep, token=token))
    aliases = " ".join(f"a{n}: me {{ id }}" for n in range(16))
    assert codes(await gql(client, f"{{ {aliases} }}", token=token)) == {"too_many_aliases"}
    fifteen = " ".join(f"a{n}: me {{ id }}" for n in range(15))
    assert "errors" not in await gql(client, f"{{ {fifteen} }}", token=token)
    costly = "{ users(first: 100) { edges { node { sessions(first: 100) { id } } } } }"
    assert codes(await gql(client, costly, token=token)) == {"query_too_costly"}
    # A variable `first` counts at its maximum: it is unknown while validating.
    with_variable = (
        "query($n: Int!) { users(first: $n) { edges { node { sessions(first: $n) { id } } } } }"
    )
    refused = await gql(client, with_variable, {"n": 1}, token=token)
    assert codes(refused) == {"query_too_costly"}
    # Fragments are counted where they are spread.
    fragment = (
        "fragment S on User { sessions(first: 100) { id ip } } "
        "{ users(first: 60) { edges { node { ...S } } } }"
    )
    assert codes(await gql(client, fragment, token=token)) == {"query_too_costly"}
    # Fragments spreading the next one twice: 2^30 fields from 250 tokens, measured once
    # per fragment (strawberry's own limiters would expand every spread anew and hang).
    fan = [f"fragment F{n} on Query {{ ...F{n + 1} ...F{n + 1} }}" for n in range(30)]
    bomb = "query { ...F0 } " + " ".join([*fan, "fragment F30 on Query { __typename }"])
    assert codes(await gql(client, bomb, token=token)) == {"query_too_costly"}
    aliased_bomb = bomb.replace("{ __typename }", "{ t: __typename }")
    assert codes(await gql(client, aliased_bomb, token=token)) == {
        "query_too_costly",
        "too_many_aliases",
    }
    fine = "{ users(first: 50) { edges { node { email roles sessions { id } } } } }"
    assert "errors" not in await gql(client, fine, token=token)
    # Nothing ran: the refused query left no trace (validation happens before execution).
    assert refused["data"] is None


INTROSPECTION = "{ __schema { queryType { name } } }"
PRODUCTION: dict[str, Any] = {
    "env": "production",
    "issuer": "https://id.example.com",
    "argon2_memory_kib": OWASP_ARGON2_MEMORY_KIB,
    "argon2_time_cost": OWASP_ARGON2_TIME_COST,
    "require_verified_email": False,
}


@asynccontextmanager
async def serving(settings: Settings, base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    application = create_app(settings)
    async with lifespan(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as http:
            yield http


async def test_introspection_only_where_docs_are_shown(
    client: httpx.AsyncClient, make_settings: SettingsFactory
) -> None:
    allowed = await gql(client, INTROSPECTION)
    assert allowed["data"] == {"__schema": {"queryType": {"name": "Query"}}}
    production = make_settings(**PRODUCTION)
    async with serving(production, "https://id.example.com") as http:
        refused = await gql(http, INTROSPECTION)
        assert codes(refused) == {"introspection_disabled"}
        assert refused["data"] is None
        typename = await gql(http, "{ __typename }")
        assert typename["data"] == {"__typename": "Query"}
    docs_on = make_settings(**PRODUCTION, docs_enabled=True)
    async with serving(docs_on, "https://id.example.com") as http:
        assert "errors" not in await gql(http, INTROSPECTION)


async def test_malformed_requests_never_answer_500(client: httpx.AsyncClient) -> None:
    for document in ("{", "{ nope }", "query { me { id } ", "mutation { lockUser }", "}}}}"):
        body = await gql(client, document)
        assert codes(body) == {"invalid_query"}, (document, body)
    wrong_variable = await gql(
        client, "query($id: UUID!) { user(id: $id) { id } }", {"id": "not-a-uuid"}
    )
    assert codes(wrong_variable) == {"invalid_query"}
    for content in (b"not json", b"[]", b'{"query": 5}', b"{}"):
        answer = await client.post(
            "/graphql", content=content, headers={"content-type": "application/json"}
        )
        assert 400 <= answer.status_code < 500, (content, answer.status_code, answer.text)
    # A form or text/plain POST (what a page may send cross-site without CORS) is refused.
    for content_type in ("text/plain", "application/x-www-form-urlencoded"):
        answer = await client.post(
            "/graphql",
            content=b'{"query": "{ __typename }"}',
            headers={"content-type": content_type},
        )
        assert answer.status_code == 415, content_type
        assert answer.json()["code"] == "unsupported_media_type"
    assert (await client.get("/graphql", params={"query": "{ __typename }"})).status_code >= 400
    too_many_tokens = "{ " + "__typename " * 2100 + "}"
    assert codes(await gql(client, too_many_tokens)) == {"invalid_query"}


async def test_unexpected_errors_are_masked(
    app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await signup_login(client)

    async def broken(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("secret internal detail at /srv/keyturn")

    monkeypatch.setattr(app.state.services.users, "profile", broken)
    body = await gql(client, "{ me { id } }", token=user["access_token"])
    assert codes(body) == {"internal_error"}
    assert "secret" not in str(body)
    assert "Traceback" not in str(body)


# --- no N+1 ------------------------------------------------------------------------------


async def test_a_page_of_users_with_roles_and_sessions_costs_a_fixed_number_of_statements(
    make_settings: SettingsFactory,
) -> None:
    # Quiet background work (outbox polling, key schedule, audit sealing) so only the query
    # is counted; 60 logins from one address need a larger login budget than the default.
    settings = make_settings(
        outbox_worker="off",
        key_rotation_check_seconds=86400,
        audit_seal_seconds=3600,
        limit_ip_per_minute=10_000,
        limit_signups_per_ip_per_hour=10_000,
    )
    application = create_app(settings)
    async with lifespan(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            token = (await admin_login(application, http))["access_token"]
            services = application.state.services
            counts: dict[int, int] = {}
            for size in (10, 50):
                tag = uuid.uuid4().hex[:10]
                for index in range(size):
                    email = f"{tag}-{index:02d}@example.com"
                    # The built-in admin role gives every seeded user a role...
                    await services.users.create_admin(email, PASSWORD)
                    # ...and a login gives each a session.
                    await login(http, email)
                query = (
                    f'{{ users(q: "{tag}", first: 50) '
                    "{ edges { node { email roles sessions { id } } } } }"
                )
                with statements_run_here() as statements:
                    body = await gql(http, query, token=token)
                counts[size] = len(queries(statements))
                edges = body["data"]["users"]["edges"]
                assert len(edges) == size
                assert all(edge["node"]["roles"] == ["admin"] for edge in edges)
                assert all(len(edge["node"]["sessions"]) == 1 for edge in edges)
    # The caller's permission (checked at the edge, in the users service and in the
    # sessions batch, as REST checks it twice), the users, their roles, their sessions.
    assert counts[10] == counts[50], counts
    assert 0 < counts[50] <= 6, counts
