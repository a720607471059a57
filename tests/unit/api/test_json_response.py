"""``OrjsonResponse`` renders the bytes Starlette's JSONResponse rendered.

The token and introspection answers moved to orjson (issue 18); hypothesis draws the kind
of values they hold (no floats) and compares both bodies.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from starlette.responses import JSONResponse

from keyturn.api.http.json_response import OrjsonResponse

SCALARS = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text()
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(content=st.dictionaries(st.text(), VALUES, max_size=8))
def test_orjson_renders_the_bytes_json_rendered(content: dict[str, Any]) -> None:
    assert OrjsonResponse(content).body == JSONResponse(content).body


def test_a_token_answer_keeps_its_headers_and_media_type() -> None:
    answer = {"access_token": "eyJ.é.\u2028", "token_type": "Bearer", "expires_in": 600}
    response = OrjsonResponse(answer, headers={"Cache-Control": "no-store"})
    assert response.body == JSONResponse(answer).body
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
