"""The lean lane's folded edge (``keyturn.api.http.middleware.FoldedEdge``) runs every edge
layer a lean request meets, and its CORS step writes the headers Starlette's own
``CORSMiddleware`` writes (issue 18). The answers themselves are compared with the stacked
edge's in ``tests/integration/api/test_lean_edge_equality.py``."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware

from keyturn.api.http.hardening import _PREFLIGHT_OR_HEAD_ONLY, FOLDED, _edge_layers
from keyturn.api.http.middleware import vary_origin
from keyturn.config import Settings

pytestmark = pytest.mark.anyio

NAMES = [b"vary", b"Vary", b"content-type", b"cache-control", b"x-request-id"]
VALUES = [b"Accept-Encoding", b"Origin", b"application/json", b"*", b"x"]


def test_every_edge_layer_a_lean_request_meets_is_folded(settings: Settings) -> None:
    met = [layer for layer, _ in _edge_layers(settings) if layer not in _PREFLIGHT_OR_HEAD_ONLY]
    assert met == list(FOLDED)


async def _starlette(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """What Starlette's CORSMiddleware sends for an answer to a request without Origin."""
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    cors = CORSMiddleware(app=None, allow_origins=["https://app.example"])  # type: ignore[arg-type]
    message = {"type": "http.response.start", "status": 200, "headers": list(headers)}
    await cors.send(message, send=send, request_headers=Headers(raw=[]))
    return list(sent[0]["headers"])


@given(headers=st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(VALUES)), max_size=6))
async def test_vary_origin_equals_starlettes_cors_answer_without_origin(
    headers: list[tuple[bytes, bytes]],
) -> None:
    assert vary_origin(headers) == await _starlette(headers)


def test_vary_origin_joins_every_vary_into_the_first_place() -> None:
    headers = [(b"vary", b"Accept"), (b"x", b"1"), (b"vary", b"Cookie")]
    assert vary_origin(headers) == [(b"vary", b"Accept, Cookie, Origin"), (b"x", b"1")]
    assert vary_origin([(b"x", b"1")]) == [(b"x", b"1"), (b"vary", b"Origin")]
