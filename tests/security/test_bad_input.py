"""Bad input on every JSON-body route: 4xx problem+json, never a 500, nothing written.

The JSON-body routes come from the app's route table (``conftest.body_routes``). Every
request below carries a valid Bearer token, so a protected route gets as far as body
validation, and a distinctive password, which must never come back in an error body.

ASVS v5.0.0-1.2.x/1.5.x (input decoded and validated before use), v5.0.0-2.2.1 (input
validated against the expected structure; unknown fields refused), v5.0.0-4.1.1
(content type), v5.0.0-6.2.1 and v5.0.0-6.2.9 (password length 8+ / at most a large
cap), v5.0.0-6.2.11 (passwords containing context words), v5.0.0-6.2.3 (NFKC, no
truncation), v5.0.0-13.1.x / v5.0.0-16.5.3 (errors handled, no internals leaked).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from helpers import PASSWORD, admin_login, bearer, lifespan, new_email, signup_login
from keyturn.app import create_app

pytestmark = pytest.mark.anyio

PROBLEM_KEYS = {"type", "title", "status", "detail", "code", "errors"}
# Sent in every bad body; no error answer may contain it.
MARK = "Zebra-Quokka-8841-secret"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def assert_problem(
    answer: httpx.Response, status: int | range, code: str | None = None, *, context: str = ""
) -> dict[str, Any]:
    """An RFC 9457 answer with every key, the expected status/code and no echoed secret."""
    statuses = status if isinstance(status, range) else range(status, status + 1)
    assert answer.status_code in statuses, f"{context}: {answer.status_code} {answer.text[:500]}"
    assert answer.headers["content-type"].startswith("application/problem+json"), context
    body: dict[str, Any] = answer.json()
    # detail only when it adds to the title (issue 13 item 7).
    assert set(body) | {"detail"} == PROBLEM_KEYS, f"{context}: {body}"
    assert body["status"] == answer.status_code, context
    assert body["type"].endswith(body["code"]), context
    if code is not None:
        assert body["code"] == code, f"{context}: {body}"
    assert MARK not in answer.text, f"{context}: the submitted password is echoed back"
    return body


class Caller:
    """A signed-in user plus the JSON-body routes, for sending bad bodies everywhere."""

    def __init__(self, client: httpx.AsyncClient, tokens: dict[str, Any]) -> None:
        self.client = client
        self.tokens = tokens

    async def send(
        self, target: Any, *, content: bytes | str | None = None, **kwargs: Any
    ) -> httpx.Response:
        headers = {"content-type": "application/json", **kwargs.pop("headers", {})}
        headers.update(bearer(self.tokens["access_token"]))
        return await self.client.request(
            target.method, target.path, content=content, headers=headers, **kwargs
        )

    async def assert_untouched(self) -> None:
        """No bad body changed the caller: same name, same sessions, same password."""
        me = await self.client.get("/v1/me", headers=bearer(self.tokens["access_token"]))
        assert me.status_code == 200
        assert me.json()["name"] is None
        sessions = await self.client.get(
            "/v1/me/sessions", headers=bearer(self.tokens["access_token"])
        )
        assert len(sessions.json()["items"]) == 1
        login = await self.client.post(
            "/v1/auth/login", json={"email": self.tokens["email"], "password": PASSWORD}
        )
        assert login.status_code == 200


@pytest.fixture
async def caller(client: httpx.AsyncClient, app: FastAPI) -> Caller:
    """An administrator, so admin routes too get as far as validating the body."""
    return Caller(client, await admin_login(app, client))


def _accepted(target: Any, body: dict[str, Any]) -> bool:
    """Whether the route's own model takes ``body`` as valid."""
    try:
        target.body_model.model_validate(body)
    except ValidationError:
        return False
    return True


def _fields(target: Any) -> list[str]:
    return list(target.body_model.model_fields)


# ---------------------------------------------------------------------------------------
# Route table


async def test_body_routes_are_derived_from_the_route_table(body_routes: list[Any]) -> None:
    found = {(t.method, t.template) for t in body_routes}
    assert {
        ("POST", "/v1/auth/signup"),
        ("POST", "/v1/auth/login"),
        ("POST", "/v1/auth/refresh"),
        ("PATCH", "/v1/me"),
        ("POST", "/v1/me/password"),
    } <= found
    assert ("GET", "/v1/me") not in found


# ---------------------------------------------------------------------------------------
# Malformed and mistyped bodies on every body route

MALFORMED = {
    "truncated": '{"email": "a@example.com", "password": "' + MARK,
    "trailing_brace": '{"password": "' + MARK + '"}}',
    "single_quotes": "{'password': '" + MARK + "'}",
    "bare_word": "password=" + MARK,
    "comment": '{"password": "' + MARK + '" /* hi */}',
    "trailing_comma": '{"password": "' + MARK + '",}',
}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
async def test_malformed_json_is_400_malformed_json(
    caller: Caller, body_routes: list[Any], kind: str
) -> None:
    """v5.0.0-1.5.x: a body that is not JSON is refused with a stable code, not a 500."""
    for target in body_routes:
        answer = await caller.send(target, content=MALFORMED[kind])
        assert_problem(answer, 400, "malformed_json", context=f"{kind} on {target}")
    await caller.assert_untouched()


async def test_invalid_utf8_body_is_400(caller: Caller, body_routes: list[Any]) -> None:
    """Bytes that are not UTF-8 never reach a parser that could raise into a 500."""
    for target in body_routes:
        answer = await caller.send(target, content=b'{"password": "\xff\xfe\xc3"}')
        assert_problem(answer, 400, context=f"invalid utf-8 on {target}")
    await caller.assert_untouched()


NOT_AN_OBJECT = {
    "array": [MARK, "x"],
    "array_of_object": [{"password": MARK}],
    "string": MARK,
    "number": 12345,
    "float": 1e308,
    "null": None,
    "true": True,
}


@pytest.mark.parametrize("kind", sorted(NOT_AN_OBJECT))
async def test_json_that_is_not_an_object_is_422(
    caller: Caller, body_routes: list[Any], kind: str
) -> None:
    """v5.0.0-2.2.1: only a JSON object is a request body."""
    for target in body_routes:
        answer = await caller.send(target, content=json.dumps(NOT_AN_OBJECT[kind]))
        assert_problem(answer, 422, "invalid_request", context=f"{kind} on {target}")
    await caller.assert_untouched()


async def test_empty_body_is_4xx(caller: Caller, body_routes: list[Any]) -> None:
    for target in body_routes:
        answer = await caller.send(target, content=b"")
        assert_problem(answer, range(400, 500), context=f"empty body on {target}")
    await caller.assert_untouched()


WRONG_TYPES: dict[str, Any] = {
    "integer": 12345,
    "float": 1.5,
    "boolean": True,
    "list": [MARK],
    "object": {"$ne": None},
    "nested_deep": [[[[[[[[[[MARK]]]]]]]]]],
}


@pytest.mark.parametrize("kind", sorted(WRONG_TYPES))
async def test_wrong_types_are_422_naming_each_field(
    caller: Caller,
    body_routes: list[Any],
    valid_body: Callable[..., dict[str, Any]],
    kind: str,
) -> None:
    """v5.0.0-2.2.1: each field of the wrong type is refused and named in ``errors``."""
    for target in body_routes:
        for field in _fields(target):
            body = {**valid_body(target), field: WRONG_TYPES[kind]}
            if _accepted(target, body):
                continue  # e.g. a boolean for a boolean field: not a wrong type here
            answer = await caller.send(target, content=json.dumps(body))
            problem = assert_problem(
                answer, 422, "invalid_request", context=f"{field}={kind} on {target}"
            )
            named = {error["field"].split(".", 1)[0] for error in problem["errors"]}
            assert field in named, problem  # a list field may name its bad item: x.0
    await caller.assert_untouched()


@pytest.mark.parametrize("field", ["is_admin", "roles", "email_verified", "id", "__proto__"])
async def test_unknown_fields_are_refused_and_named(
    caller: Caller,
    body_routes: list[Any],
    valid_body: Callable[..., dict[str, Any]],
    field: str,
) -> None:
    """Mass assignment (v5.0.0-15.3.3): an extra field is a 422 naming it, not ignored."""
    for target in body_routes:
        if field in _fields(target):
            continue  # a real field of this route (admins may set email_verified)
        body = {**valid_body(target), field: True}
        answer = await caller.send(target, content=json.dumps(body))
        problem = assert_problem(answer, 422, "invalid_request", context=f"{field} on {target}")
        assert field in {error["field"] for error in problem["errors"]}, problem
    await caller.assert_untouched()
    # The signup attempt with the extra field wrote nothing either.
    email = new_email()
    await caller.client.post(
        "/v1/auth/signup", json={"email": email, "password": PASSWORD, field: True}
    )
    login = await caller.client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert_problem(login, 401, "invalid_credentials")


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"],
)
async def test_wrong_content_type_is_4xx(
    caller: Caller,
    body_routes: list[Any],
    valid_body: Callable[..., dict[str, Any]],
    content_type: str,
) -> None:
    """v5.0.0-4.1.1: a JSON body under another media type is not processed."""
    for target in body_routes:
        answer = await caller.send(
            target,
            content=json.dumps(valid_body(target)),
            headers={"content-type": content_type},
        )
        assert_problem(answer, range(400, 500), context=f"{content_type} on {target}")
    await caller.assert_untouched()


# ---------------------------------------------------------------------------------------
# Body size cap


def _padded(size: int) -> bytes:
    body = json.dumps({"email": "a@example.com", "password": MARK, "pad": ""})
    return body.replace('"pad": ""', '"pad": "' + "x" * (size - len(body)) + '"').encode()


async def test_body_over_the_cap_is_413(
    caller: Caller, body_routes: list[Any], settings: Any
) -> None:
    """v5.0.0-4.4.x / DESIGN.md 5: KEYTURN_MAX_BODY_BYTES bounds every body route."""
    assert settings.max_body_bytes == 65536
    content = _padded(70_000)
    assert len(content) == 70_000
    for target in body_routes:
        answer = await caller.send(target, content=content)
        assert_problem(answer, 413, "payload_too_large", context=f"70000 bytes on {target}")

        async def chunks() -> AsyncIterator[bytes]:
            # No Content-Length: the cap must hold on the bytes actually read.
            for start in range(0, len(content), 8192):
                yield content[start : start + 8192]

        streamed = await caller.send(target, content=chunks())
        assert_problem(streamed, 413, "payload_too_large", context=f"chunked on {target}")
    await caller.assert_untouched()


# ---------------------------------------------------------------------------------------
# Emails

BAD_EMAILS = {
    "no_at": "user.example.com",
    "only_domain": "@example.com",
    "only_local": "user@",
    "two_ats": "user@@example.com",
    "space": "us er@example.com",
    "400_chars": "a" * 388 + "@example.com",
    "long_domain_label": "user@" + "d" * 64 + ".com",
    "zero_width_space": "us\u200ber@example.com",
    "rtl_override": "user\u202e@example.com",
    "nul": "user\x00@example.com",
    "newline_header_injection": "user@example.com\nBcc: victim@example.com",
    "fullwidth_at": "user\uff20example.com",
    "empty": "",
    "not_a_string": 42,
}


@pytest.mark.parametrize("kind", sorted(BAD_EMAILS))
async def test_invalid_email_is_422_on_signup_and_login(
    client: httpx.AsyncClient, kind: str
) -> None:
    """v5.0.0-2.2.1: the address is validated before any account logic runs."""
    email = BAD_EMAILS[kind]
    for path in ("/v1/auth/signup", "/v1/auth/login"):
        answer = await client.post(path, json={"email": email, "password": PASSWORD + MARK})
        problem = assert_problem(answer, 422, "invalid_request", context=f"{kind} on {path}")
        assert "email" in {error["field"] for error in problem["errors"]}
        if isinstance(email, str) and len(email) > 3:
            assert email not in answer.text


# ---------------------------------------------------------------------------------------
# Password policy, and the hasher is never reached by an oversize password


class HashSpy:
    """Counts every call into the hash pool and into the hasher under it."""

    def __init__(self, app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[str] = []
        pool = app.state.services.hash_pool
        for name in ("hash", "verify"):
            monkeypatch.setattr(pool, name, self._async_spy(name, getattr(pool, name)))
        # The pool's own hasher (private): a path that bypassed the pool is caught too.
        hasher = pool._hasher
        for name in ("hash", "verify", "dummy_verify"):
            monkeypatch.setattr(hasher, name, self._sync_spy(name, getattr(hasher, name)))

    def _async_spy(self, name: str, method: Any) -> Any:
        async def spy(*args: Any) -> Any:
            self.calls.append(f"pool.{name}")
            return await method(*args)

        return spy

    def _sync_spy(self, name: str, method: Any) -> Any:
        def spy(*args: Any) -> Any:
            self.calls.append(f"hasher.{name}")  # list.append is atomic across threads
            return method(*args)

        return spy

    def take(self) -> list[str]:
        calls, self.calls = self.calls, []
        return calls


@pytest.fixture
def hash_spy(app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> HashSpy:
    return HashSpy(app, monkeypatch)


async def test_hash_spy_sees_a_normal_login(client: httpx.AsyncClient, hash_spy: HashSpy) -> None:
    """Control: the spy below does count real hashing, so its zeros mean something."""
    tokens = await signup_login(client)
    assert hash_spy.take().count("pool.hash") == 1
    again = await client.post("/v1/auth/login", json={"email": tokens["email"], "password": "x"})
    assert again.status_code == 401
    assert hash_spy.take() == ["pool.verify", "hasher.verify"]


async def test_password_too_short(client: httpx.AsyncClient, hash_spy: HashSpy) -> None:
    """v5.0.0-6.2.1: fewer than the minimum characters (after NFKC) is refused, unhashed."""
    email = new_email()
    answer = await client.post("/v1/auth/signup", json={"email": email, "password": "short1"})
    problem = assert_problem(answer, 422, "password_too_short")
    assert problem["errors"][0]["field"] == "password"
    assert hash_spy.take() == []
    await _assert_no_account(client, email)


@pytest.mark.parametrize("spelling", ["{local}", "{LOCAL}", "xx{local}yy-2024!"])
async def test_password_containing_the_email_local_part(
    client: httpx.AsyncClient, hash_spy: HashSpy, spelling: str
) -> None:
    """v5.0.0-6.2.11: a password holding the address's name part (4+ chars) is refused."""
    local = f"melinda{uuid.uuid4().hex[:6]}"
    email = f"{local}@example.com"
    password = spelling.format(local=local, LOCAL=local.upper()) + "-long enough"
    answer = await client.post("/v1/auth/signup", json={"email": email, "password": password})
    assert_problem(answer, 422, "password_contains_email")
    assert password not in answer.text
    assert hash_spy.take() == []
    await _assert_no_account(client, email)


async def test_short_local_part_is_not_forbidden(client: httpx.AsyncClient) -> None:
    """Below 4 characters the local part is too common to forbid (DESIGN.md section 4)."""
    email = f"abc@{uuid.uuid4().hex[:8]}.example.com"
    answer = await client.post(
        "/v1/auth/signup", json={"email": email, "password": "abc and a long passphrase"}
    )
    assert answer.status_code == 202


@pytest.mark.parametrize("length", [1025, 4096, 4097, 100_000, 1_000_000])
async def test_oversize_password_on_signup_is_4xx_and_never_hashed(
    client: httpx.AsyncClient, hash_spy: HashSpy, length: int
) -> None:
    """v5.0.0-6.2.9 and DESIGN.md 8: the cap is checked before any hashing."""
    email = new_email()
    password = (MARK + "x" * length)[:length]
    answer = await client.post("/v1/auth/signup", json={"email": email, "password": password})
    code = "password_too_long" if length <= 4096 else None
    assert_problem(answer, range(400, 500), code, context=f"{length} chars")
    assert hash_spy.take() == []
    await _assert_no_account(client, email)


@pytest.mark.parametrize("length", [1025, 2000, 4096, 1_000_000])
async def test_oversize_password_on_login_is_never_hashed(
    client: httpx.AsyncClient, hash_spy: HashSpy, length: int
) -> None:
    """An oversize password cannot match: 401 (or 4xx past the parser caps), no hashing."""
    tokens = await signup_login(client)
    hash_spy.take()
    password = (MARK + "y" * length)[:length]
    for email in (tokens["email"], new_email()):
        answer = await client.post("/v1/auth/login", json={"email": email, "password": password})
        if length <= 4096:
            assert_problem(answer, 401, "invalid_credentials", context=f"{length} chars")
        else:
            assert_problem(answer, range(400, 500), context=f"{length} chars")
    assert hash_spy.take() == []


@pytest.mark.parametrize("length", [1025, 2000, 1_000_000])
async def test_oversize_passwords_on_password_change_are_never_hashed(
    client: httpx.AsyncClient, hash_spy: HashSpy, length: int
) -> None:
    tokens = await signup_login(client)
    hash_spy.take()
    huge = (MARK + "z" * length)[:length]
    new_too_long = await client.post(
        "/v1/me/password",
        json={"current_password": PASSWORD, "new_password": huge},
        headers=bearer(tokens["access_token"]),
    )
    current_too_long = await client.post(
        "/v1/me/password",
        json={"current_password": huge, "new_password": "a brand new passphrase"},
        headers=bearer(tokens["access_token"]),
    )
    if length <= 4096:
        problem = assert_problem(new_too_long, 422, "password_too_long")
        assert problem["errors"][0]["field"] == "new_password"
        assert_problem(current_too_long, 403, "invalid_current_password")
    else:
        assert_problem(new_too_long, range(400, 500))
        assert_problem(current_too_long, range(400, 500))
    assert hash_spy.take() == []
    # Nothing changed: the old password still logs in.
    login = await client.post(
        "/v1/auth/login", json={"email": tokens["email"], "password": PASSWORD}
    )
    assert login.status_code == 200


async def test_passwords_are_nfkc_normalised(client: httpx.AsyncClient) -> None:
    """v5.0.0-6.2.x: the same password typed as a ligature or plain letters is one password."""
    email = new_email()
    ligature = "\ufb01ne grained passphrase \uff14\uff12"  # "ﬁne grained passphrase ４２"
    plain = "fine grained passphrase 42"
    signup = await client.post("/v1/auth/signup", json={"email": email, "password": ligature})
    assert signup.status_code == 202
    for password in (plain, ligature):
        login = await client.post("/v1/auth/login", json={"email": email, "password": password})
        assert login.status_code == 200, login.text
    near = await client.post(
        "/v1/auth/login", json={"email": email, "password": "fine grained passphrase 43"}
    )
    assert near.status_code == 401


async def _assert_no_account(client: httpx.AsyncClient, email: str) -> None:
    """Nothing was written: the address with a policy-compliant password does not log in."""
    login = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert_problem(login, 401, "invalid_credentials", context=f"account {email} exists")


# ---------------------------------------------------------------------------------------
# Unknown routes and methods


@pytest.mark.parametrize(
    "path", ["/nope", "/v1/unknown", "/v1/me/sessions/1/2/3", "/v1/auth/login/../../admin", "/%00"]
)
async def test_unknown_route_is_404_problem(client: httpx.AsyncClient, path: str) -> None:
    assert_problem(await client.get(path), 404, "not_found", context=path)


async def test_wrong_method_is_405_problem_on_every_route(
    client: httpx.AsyncClient, caller: Caller, all_routes: list[Any]
) -> None:
    """Every route answers an unserved method with 405 problem+json and an Allow header."""
    served: dict[str, set[str]] = {}
    concrete: dict[str, str] = {}
    for target in all_routes:
        served.setdefault(target.template, set()).add(target.method)
        concrete[target.template] = target.path
    assert served
    for template, methods in served.items():
        for method in sorted(set(METHODS) - methods):
            answer = await client.request(
                method, concrete[template], headers=bearer(caller.tokens["access_token"])
            )
            assert_problem(answer, 405, "method_not_allowed", context=f"{method} {template}")
            assert answer.headers.get("allow"), f"{method} {template}: no Allow header"


# ---------------------------------------------------------------------------------------
# Hash pool full: 503 + Retry-After, and the running check still completes


async def test_full_hash_pool_answers_503_with_retry_after(
    make_settings: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """DESIGN.md 4: a full pool fails fast (503, Retry-After) instead of queueing forever."""
    settings = make_settings(hash_workers=1, hash_queue=0)
    application = create_app(settings)
    async with lifespan(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            email = new_email()
            signup = await client.post(
                "/v1/auth/signup", json={"email": email, "password": PASSWORD}
            )
            assert signup.status_code == 202
            pool = application.state.services.hash_pool
            assert pool.capacity == 1
            entered, release = threading.Event(), threading.Event()
            real_verify = pool._hasher.verify

            def blocking_verify(stored_hash: str, password: str) -> bool:
                entered.set()
                release.wait(timeout=30)
                return bool(real_verify(stored_hash, password))

            monkeypatch.setattr(pool._hasher, "verify", blocking_verify)
            credentials = {"email": email, "password": PASSWORD}
            results: dict[str, httpx.Response] = {}

            async def first_login() -> None:
                results["first"] = await client.post("/v1/auth/login", json=credentials)

            try:
                async with anyio.create_task_group() as group:
                    group.start_soon(first_login)
                    with anyio.fail_after(10):
                        await anyio.to_thread.run_sync(entered.wait)
                    assert pool.in_flight == 1
                    second = await client.post("/v1/auth/login", json=credentials)
                    problem = assert_problem(second, 503, "hash_queue_full")
                    assert int(second.headers["retry-after"]) >= 1, problem
                    release.set()
            finally:
                release.set()
            assert results["first"].status_code == 200, results["first"].text
            assert pool.in_flight == 0
            third = await client.post("/v1/auth/login", json=credentials)
            assert third.status_code == 200
