"""Reading an OAuth request: its form parameters and the client's credentials.

RFC 6749 section 2.3.1 defines two ways to send a client secret (HTTP Basic and the
``client_secret`` form field) and section 2.3 forbids using more than one in a request;
a public client (section 2.1) only names itself with ``client_id``.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from keyturn.api.http.forms import FORM_MEDIA_TYPE, read_form
from keyturn.domain import ClientInfo, OAuthClient
from keyturn.errors import InvalidClient, OAuthInvalidRequest
from keyturn.services.oauth2 import ClientService, decode_basic_credentials

BASIC = "client_secret_basic"
POST = "client_secret_post"
NONE = "none"


def form_body(
    properties: dict[str, dict[str, Any]], *, required: list[str], description: str | None = None
) -> dict[str, Any]:
    """The ``openapi_extra`` of an endpoint reading ``properties`` and the client's
    credentials from a form (FastAPI cannot infer it from a raw Request)."""
    schema = {
        "type": "object",
        "properties": {
            **properties,
            "client_id": {"type": "string"},
            "client_secret": {"type": "string"},
        },
        "required": required,
    }
    body: dict[str, Any] = {"required": True, "content": {FORM_MEDIA_TYPE: {"schema": schema}}}
    if description is not None:
        body["description"] = description
    return {"requestBody": body}


async def oauth_form(request: Request) -> dict[str, str]:
    """The request's form parameters (RFC 6749 Appendix B), each at most once (section 3.1).

    Raises:
        OAuthInvalidRequest: A body that is not a well-formed form, or a repeated parameter.
    """
    form = await read_form(request)
    if form is None:
        raise OAuthInvalidRequest(
            "Send the parameters once each as application/x-www-form-urlencoded."
        )
    return form


def presented_credentials(request: Request, form: dict[str, str]) -> tuple[str, str | None, str]:
    """``(client_id, secret, method)`` as the client presented them.

    Raises:
        OAuthInvalidRequest: Two authentication methods in one request (section 2.3), or a
            form ``client_id`` that contradicts the Basic one.
        InvalidClient: No client identification at all, or malformed Basic credentials.
    """
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic":
        if "client_secret" in form:
            raise OAuthInvalidRequest("Use one client authentication method, not two.")
        client_id, secret = decode_basic_credentials(value)
        if form.get("client_id", client_id) != client_id:
            raise OAuthInvalidRequest("The client_id does not match the Basic credentials.")
        return client_id, secret, BASIC
    client_id = form.get("client_id", "")
    if not client_id:
        raise InvalidClient("Authenticate the client (RFC 6749 section 2.3).")
    if "client_secret" in form:
        return client_id, form["client_secret"], POST
    return client_id, None, NONE


async def authenticate_client(
    request: Request,
    form: dict[str, str],
    clients: ClientService,
    client_info: ClientInfo,
    *,
    allow_public: bool,
) -> OAuthClient:
    """The authenticated client of an OAuth request.

    Args:
        request: The request (its ``Authorization`` header).
        form: Its form parameters.
        clients: The client service (throttling, equal work, audit).
        client_info: Where the request came from.
        allow_public: Whether a public client naming itself with ``client_id`` is enough
            (token and revocation endpoints, RFC 7009 section 2.1), or a confidential
            client's secret is required (introspection, RFC 7662 section 2.1).

    Raises:
        InvalidClient: Authentication failed (one answer for every reason).
        OAuthInvalidRequest: The credentials were sent in two ways.
    """
    client_id, secret, method = presented_credentials(request, form)
    if method == NONE and not allow_public:
        raise InvalidClient("This endpoint needs client authentication with a secret.")
    return await clients.authenticate(
        client_id=client_id, client_secret=secret, method=method, client=client_info
    )
