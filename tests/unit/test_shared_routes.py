"""The suite's process-wide route state (``tests/shared_routes.py``) changes when FastAPI
builds a route's state, never what a request gets."""

from __future__ import annotations

import httpx
import pytest

import shared_routes
from conftest import SettingsFactory
from helpers import lifespan
from keyturn.api.http.deps import get_principal
from keyturn.app import create_app
from keyturn.domain import Principal
from keyturn.errors import CredentialsMissing

pytestmark = pytest.mark.anyio


async def _me(app: object) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        return await http.get("/v1/me/sessions")


async def test_a_module_route_is_built_once_and_overrides_still_reach_their_app(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings()
    first = create_app(settings)
    async with lifespan(first):
        assert (await _me(first)).status_code == 401
    built = dict(shared_routes._built)
    second = create_app(settings)
    async with lifespan(second):
        assert (await _me(second)).status_code == 401
    # The second app reused every state the first one built and built none of its own.
    assert shared_routes._built == built
    assert built

    called: list[str] = []

    async def spy() -> Principal:
        called.append("spy")
        raise CredentialsMissing

    third = create_app(settings)
    third.dependency_overrides[get_principal] = spy
    async with lifespan(third):
        answer = await _me(third)
    assert answer.status_code == 401
    assert called == ["spy"]
