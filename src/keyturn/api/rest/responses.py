"""OpenAPI descriptions of the problem answers each route can give."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from keyturn.api.rest.schemas.common import ProblemDetail

_DESCRIPTIONS = {
    400: "Malformed JSON (`malformed_json`) or an unusable one-time token (`token_*`)",
    401: "Missing, invalid (`invalid_token`), expired (`token_expired`) or revoked credentials",
    403: "Not allowed",
    404: "Not found",
    413: "Body over `KEYTURN_MAX_BODY_BYTES`",
    415: "The body is not sent as `application/json` (`unsupported_media_type`)",
    409: "Conflict (`conflict`)",
    422: "Invalid fields (`invalid_request`, password policy codes)",
    429: "Too many requests (`rate_limited`), with Retry-After and RateLimit headers",
    503: "Hash pool full (`hash_queue_full`), with Retry-After",
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    if 413 in statuses or {400, 422} <= set(statuses):
        # The routes that take a JSON body (malformed JSON, invalid fields, body cap):
        # any other Content-Type answers 415.
        statuses = tuple(sorted({*statuses, 415}))
    return {
        status: {
            "model": ProblemDetail,
            "description": _DESCRIPTIONS[status],
            "content": {"application/problem+json": {}},
        }
        for status in statuses
    }


def no_content(*statuses: int) -> dict[str, Any]:
    """Route arguments of an answer without content: 204 (the handler returns None) and
    the problems it can give."""
    return {"status_code": 204, "response_class": Response, "responses": problems(*statuses)}
