"""Reading a lean route's request exactly as FastAPI reads the framework route's.

The answers must be the same bytes, errors included, so each function here mirrors the
FastAPI step it replaces (FastAPI 0.16x ``routing.get_request_handler``,
``dependencies.utils.request_body_to_args``, ``security.HTTPBearer``) and raises what that
step raises: ``RequestValidationError`` with ``body``-prefixed locations, or the 400
``HTTPException``; ``api/problems.py`` renders both as before.
"""

from __future__ import annotations

import email.message
import json
from typing import Any, Final, TypeVar

from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request

from keyturn.api.http.deps import get_principal
from keyturn.domain import Principal

M = TypeVar("M", bound=BaseModel)


class _Missing:
    """No body at all (not JSON ``null``, which is a value and fails differently)."""


MISSING: Final = _Missing()
_JSON = "application/json"


_ADAPTERS: dict[type[BaseModel], TypeAdapter[Any]] = {}


def _adapter(model: type[M]) -> TypeAdapter[M]:
    # One adapter per model for the process (building one compiles a schema).
    adapter = _ADAPTERS.get(model)
    if adapter is None:
        adapter = _ADAPTERS[model] = TypeAdapter(model)
    return adapter


def _is_json_media_type(content_type: str) -> bool:
    if content_type == _JSON:
        return True  # the common case, without parsing the header
    # FastAPI's own test: application/json or application/*+json, parameters allowed.
    message = email.message.Message()
    message["content-type"] = content_type
    if message.get_content_maintype() != "application":
        return False
    subtype = message.get_content_subtype()
    return subtype == "json" or subtype.endswith("+json")


async def read_json(request: Request) -> Any:
    """The body as FastAPI hands it to validation.

    Returns:
        The parsed JSON under a JSON media type; the raw bytes under any other media type
        or none (FastAPI's strict content type: validation then fails at ``("body",)`` and
        ``api/problems.py`` answers 415); :data:`MISSING` for an empty body.

    Raises:
        RequestValidationError: Malformed JSON (``json_invalid``: 400 ``malformed_json``).
        HTTPException: 400 for a body that cannot be decoded; the body cap's 413 as is.
    """
    try:
        body = await request.body()
        if not body:
            return MISSING
        content_type = request.headers.get("content-type")
        if content_type and _is_json_media_type(content_type):
            # json.loads as Starlette's request.json(): the same encodings and errors.
            return await request.json()
        return body
    except json.JSONDecodeError as exc:
        error = {
            "type": "json_invalid",
            "loc": ("body", exc.pos),
            "msg": "JSON decode error",
            "input": {},
            "ctx": {"error": exc.msg},
        }
        raise RequestValidationError([error], body=exc.doc) from exc
    except HTTPException:
        raise  # the body cap (BodyLimitMiddleware)
    except Exception as exc:
        # As FastAPI: anything else (invalid UTF-8, a client hanging up) is a 400 whose
        # cause problems.py inspects (a hang-up is re-raised as ClientDisconnect).
        raise HTTPException(400, "There was an error parsing the body") from exc


def validate_body(model: type[M], body: Any) -> M:
    """``body`` (from :func:`read_json`) as ``model``, validated as FastAPI validates it.

    Raises:
        RequestValidationError: The errors FastAPI reports, at ``("body", ...)``.
    """
    if body is MISSING:
        missing = {"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}
        raise RequestValidationError([missing], body=None)
    try:
        # from_attributes as FastAPI's ModelField.validate (it changes some error types).
        return _adapter(model).validate_python(body, from_attributes=True)
    except ValidationError as exc:
        errors = [
            {**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)
        ]
        raise RequestValidationError(errors, body=body) from None


def dump_json(model: BaseModel) -> bytes:
    """The JSON bytes FastAPI's response-model fast path sends for ``model``."""
    return _adapter(type(model)).dump_json(model)


def bearer_credentials(request: Request) -> HTTPAuthorizationCredentials | None:
    """``fastapi.security.HTTPBearer(auto_error=False)``: the scheme is case-insensitive
    (RFC 9110 section 11.1); no header, no token or another scheme is None."""
    authorization = request.headers.get("authorization")
    if not authorization:
        return None
    scheme, _, param = authorization.partition(" ")
    credentials = param.strip()
    if not scheme or not credentials or scheme.lower() != "bearer":
        return None
    return HTTPAuthorizationCredentials(scheme=scheme, credentials=credentials)


async def principal(request: Request) -> Principal:
    """The caller (access token or ``kt_`` API key) through the one Bearer check."""
    return await get_principal(request, bearer_credentials(request))
