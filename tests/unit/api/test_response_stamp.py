"""The edge's one-pass header stamp gives the list Starlette's MutableHeaders gave.

``RequestContextMiddleware`` used to set the request id, add each default header with
``setdefault`` and set the content type with its charset through ``MutableHeaders``;
``_stamp`` does the same in one pass (issue 18). The reference below is that old code,
and hypothesis draws answers' header lists (duplicates, names in other cases, defaults
already set) for both.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from starlette.datastructures import MutableHeaders

from keyturn.api.http.middleware import _DEFAULTS, _stamp, with_charset

NAMES = [
    b"content-type",
    b"Content-Type",
    b"x-request-id",
    b"cache-control",
    b"content-security-policy",
    b"cross-origin-resource-policy",
    b"strict-transport-security",
    b"vary",
    b"content-length",
]
VALUES = [b"application/json", b"text/html; charset=latin-1", b"no-cache", b"image/png", b"x"]


def reference(
    headers: list[tuple[bytes, bytes]], request_id: str, public: bool, https: bool
) -> list[tuple[bytes, bytes]]:
    message = {"type": "http.response.start", "status": 200, "headers": list(headers)}
    mutable = MutableHeaders(scope=message)
    mutable["x-request-id"] = request_id
    for name, value in _DEFAULTS[public, https]:
        mutable.setdefault(name.decode(), value.decode())
    content_type = mutable.get("content-type")
    if content_type is not None:
        mutable["content-type"] = with_charset(content_type)
    return list(message["headers"])


@given(
    headers=st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(VALUES)), max_size=8),
    public=st.booleans(),
    https=st.booleans(),
)
def test_the_stamp_equals_the_mutable_headers_it_replaced(
    headers: list[tuple[bytes, bytes]], public: bool, https: bool
) -> None:
    request_id = "0123456789abcdef"
    stamped = _stamp(headers, request_id, _DEFAULTS[public, https])
    assert stamped == reference(headers, request_id, public, https)


def test_an_api_answer_gets_the_id_the_charset_and_every_default() -> None:
    stamped = dict(_stamp([(b"content-type", b"application/json")], "rid", _DEFAULTS[False, True]))
    assert stamped == {
        b"content-type": b"application/json; charset=utf-8",
        b"x-request-id": b"rid",
        b"content-security-policy": b"default-src 'none'; frame-ancestors 'none'",
        b"x-content-type-options": b"nosniff",
        b"referrer-policy": b"no-referrer",
        b"cross-origin-opener-policy": b"same-origin",
        b"cross-origin-resource-policy": b"same-origin",
        b"cache-control": b"no-store",
        b"strict-transport-security": b"max-age=31536000; includeSubDomains",
    }
    # Over plain http no HSTS; a public path may be read by other origins.
    plain = dict(_stamp([], "rid", _DEFAULTS[True, False]))
    assert b"strict-transport-security" not in plain
    assert plain[b"cross-origin-resource-policy"] == b"cross-origin"
