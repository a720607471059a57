"""The exported OpenAPI document must equal what the app serves (CI fails on drift)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import httpx
import pytest

from keyturn.cli.openapi import openapi_document, render

pytestmark = pytest.mark.anyio

EXPORTED = Path(__file__).parents[3] / "docs" / "specifications" / "openapi.json"
# The copy the wheel ships (package data), for an installed server with no source tree.
PACKAGED = files("keyturn.api") / "openapi.json"


async def test_exported_document_matches_the_served_one(client: httpx.AsyncClient) -> None:
    served = (await client.get("/openapi.json")).json()
    assert render(served) == render(openapi_document())
    assert EXPORTED.read_text(encoding="utf-8") == render(served), (
        "docs/specifications/openapi.json is stale: run `make openapi`"
    )
    assert PACKAGED.read_text(encoding="utf-8") == render(served), (
        "src/keyturn/api/openapi.json is stale: run `make openapi`"
    )


async def test_every_route_documents_its_problems(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    for path, operations in document["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, operation in operations.items():
            errors = [status for status in operation["responses"] if status.startswith("4")]
            assert errors, f"{method.upper()} {path} documents no error answer"
