"""Routes under attack, derived from the app's own route table (DESIGN.md section 8).

A route added later is attacked automatically: nothing here names a path.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel

from helpers import PASSWORD
from keyturn.api.http.deps import get_principal
from passkey_helpers import SHAPED_CREDENTIALS


@dataclass(frozen=True)
class Target:
    """One (method, concrete path) of a route, with path parameters filled in."""

    method: str
    path: str
    template: str
    dependant: Dependant

    @property
    def body_model(self) -> type[BaseModel] | None:
        params = self.dependant.body_params
        if not params:
            return None
        annotation = params[0].field_info.annotation
        assert isinstance(annotation, type)
        assert issubclass(annotation, BaseModel)
        return annotation

    def __str__(self) -> str:
        return f"{self.method} {self.template}"


def depends_on(dependant: Dependant, target: object) -> bool:
    """Whether ``target`` is anywhere in the dependency tree of ``dependant``."""
    return any(dep.call is target or depends_on(dep, target) for dep in dependant.dependencies)


def targets(app: FastAPI) -> list[Target]:
    """Every (method, path) the app serves through FastAPI, included routers flattened."""
    found = []
    # FastAPI 0.16x keeps included routers as nodes of app.routes; iter_route_contexts
    # flattens them into the effective routes (full path, merged dependencies).
    for context in iter_route_contexts(app.routes):
        if not isinstance(context.original_route, APIRoute):
            continue
        dependant: Dependant = context.dependant
        template = str(context.path)
        # Any UUID will do: authentication must fail before the id is looked at.
        path = str(context.path_format).format(
            **{name: str(uuid.uuid4()) for name in context.param_convertors}
        )
        methods = sorted(context.methods or ())
        found += [Target(method, path, template, dependant) for method in methods]
    return found


@pytest.fixture
def all_routes(app: FastAPI) -> list[Target]:
    """Every (method, path) served by a FastAPI route."""
    return targets(app)


@pytest.fixture
def protected_routes(app: FastAPI) -> list[Target]:
    """Every route whose dependencies (recursively) include the Bearer principal."""
    return [t for t in targets(app) if depends_on(t.dependant, get_principal)]


@pytest.fixture
def body_routes(app: FastAPI) -> list[Target]:
    """Every route that takes a JSON request body."""
    return [t for t in targets(app) if t.body_model is not None]


def _valid_body(target: Target, *, email: str = "someone@example.com") -> dict[str, Any]:
    """A body the route's model accepts, so only authentication can stop the request.

    Unknown field names fail loudly: a new body route must teach this function its
    fields rather than be attacked with an invalid body (which proves nothing).
    """
    model = target.body_model
    assert model is not None
    values: dict[str, Any] = {
        "email": email,
        "new_email": email,
        "password": PASSWORD,
        "current_password": PASSWORD,
        "new_password": "pwned password 0123",
        "name": "pwned",
        "refresh_token": "A" * 43,
        "token": "A" * 43,
        "description": "pwned",
        "permissions": [],
        "email_verified": False,
        "disabled": False,
        "scopes": ["me:read"],
        "expires_at": None,
        # OAuth clients (RFC 7591 metadata)
        "client_name": "pwned",
        "redirect_uris": ["https://app.example.com/cb"],
        "post_logout_redirect_uris": [],
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
        "scope": "openid",
        "token_endpoint_auth_method": "client_secret_basic",
        "allowed_cors_origins": [],
        "require_pkce": True,
        "id_token_signed_response_alg": "RS256",
        "client_uri": "https://app.example.com",
        "policy_uri": "https://app.example.com/privacy",
        "tos_uri": "https://app.example.com/terms",
        # A TOTP code (issue 15)
        "code": "123456",
    }
    if "credential" in model.model_fields:
        # WebAuthn (issue 15): the shape of this route's credential (creation or assertion).
        credential = model.model_fields["credential"].annotation
        values["credential"] = SHAPED_CREDENTIALS[getattr(credential, "__name__", "")]
    unknown = set(model.model_fields) - set(values)
    assert not unknown, f"{target}: teach valid_body the fields {sorted(unknown)}"
    body = {name: values[name] for name in model.model_fields}
    model.model_validate(body)
    return body


@pytest.fixture
def valid_body() -> Callable[..., dict[str, Any]]:
    """``valid_body(target, email=...)``: a body that passes the route's model."""
    return _valid_body
