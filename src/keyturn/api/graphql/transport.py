"""The HTTP side of ``/graphql``: transport errors as problem+json, GraphiQL in dev.

strawberry answers a body it cannot use (bad JSON, a form, no query) with ``400
text/plain``; here each becomes the domain error REST raises for the same mistake, so the
client meets the one problem table (``api/problems.py``): ``malformed_json``,
``unsupported_media_type``, ``missing_query``, ``invalid_graphql_request`` and
``method_not_allowed``. A request that reaches execution always answers 200 with GraphQL
``errors`` (``api/graphql/errors.py``).

``GET /graphql`` serves GraphiQL from local files (``graphiql/``) where introspection is on
(dev); elsewhere, and to any client that does not ask for HTML, it is a 405: queries never
travel in URLs (they would land in logs and browser history).
"""

from __future__ import annotations

import asyncio
import json
from importlib import resources
from typing import Any

from cross_web import AsyncHTTPRequestAdapter, HTTPException
from fastapi import Request
from starlette.responses import HTMLResponse, Response
from strawberry.fastapi import GraphQLRouter
from strawberry.http import GraphQLRequestData
from strawberry.types import ExecutionResult, SubscriptionExecutionResult

from keyturn.api.graphql.context import Context, get_context
from keyturn.api.graphql.errors import KeyturnSchema
from keyturn.errors import (
    GraphQLRequestInvalid,
    MalformedBody,
    MethodNotAllowed,
    NotFound,
    UnsupportedMediaType,
)

PATH = "/graphql"
ASSETS_PATH = PATH + "/assets"
_ASSETS = {
    "graphiql.min.js": "text/javascript; charset=utf-8",
    "graphiql.min.css": "text/css; charset=utf-8",
    "react.production.min.js": "text/javascript; charset=utf-8",
    "react-dom.production.min.js": "text/javascript; charset=utf-8",
    "init.js": "text/javascript; charset=utf-8",
    "page.css": "text/css; charset=utf-8",
}
# No inline script (init.js is a file); inline styles only because GraphiQL's editor sets
# them at run time (as Swagger UI does on /docs); fonts are data: URLs inside its CSS.
IDE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; object-src 'none'; base-uri 'none'; form-action 'none'"
)
_IDE_PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Keyturn GraphQL</title>
<link rel="stylesheet" href="{ASSETS_PATH}/graphiql.min.css">
<link rel="stylesheet" href="{ASSETS_PATH}/page.css">
</head>
<body>
<div id="graphiql">Loading GraphiQL...</div>
<script src="{ASSETS_PATH}/react.production.min.js"></script>
<script src="{ASSETS_PATH}/react-dom.production.min.js"></script>
<script src="{ASSETS_PATH}/graphiql.min.js"></script>
<script src="{ASSETS_PATH}/init.js"></script>
</body>
</html>
"""
_POST_ONLY = "Send GraphQL operations with POST and a JSON body {query, variables}."


def _is_json(content_type: str | None) -> bool:
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    return media_type == "application/json"


def request_data(body: bytes) -> GraphQLRequestData:
    """The GraphQL-over-HTTP request in ``body``; raises the domain error for each mistake."""
    try:
        data: Any = json.loads(body)
    except (ValueError, RecursionError):
        raise MalformedBody('Send a JSON object such as {"query": "{ me { id } }"}.') from None
    if not isinstance(data, dict):
        # A list would be a batch, which is off (one operation, one set of limits).
        raise GraphQLRequestInvalid("The body must be one JSON object, not a list or a value.")
    query = data.get("query")
    if query is None or query == "":
        raise GraphQLRequestInvalid(
            'The body has no query: send {"query": "..."}.', code="missing_query"
        )
    variables = data.get("variables")
    operation_name = data.get("operationName")
    extensions = data.get("extensions")
    if (
        not isinstance(query, str)
        or not isinstance(variables, dict | None)
        or not isinstance(operation_name, str | None)
        or not isinstance(extensions, dict | None)
    ):
        raise GraphQLRequestInvalid(
            "query and operationName must be strings, variables and extensions objects."
        )
    return GraphQLRequestData(
        query=query, variables=variables, operation_name=operation_name, extensions=extensions
    )


class KeyturnGraphQLRouter(GraphQLRouter[Context, None]):
    """strawberry's router with Keyturn's transport answers and, if ``ide``, GraphiQL."""

    def __init__(self, schema: KeyturnSchema, *, ide: bool) -> None:
        super().__init__(
            schema,
            path=PATH,
            # Our own page (local assets), not strawberry's CDN one: see render_graphql_ide.
            graphql_ide="graphiql" if ide else None,
            allow_queries_via_get=False,
            context_getter=get_context,
            subscription_protocols=(),
        )
        self.ide = ide
        if ide:
            self.add_api_route(
                ASSETS_PATH + "/{name}", self._asset, methods=["GET"], include_in_schema=False
            )

    def should_render_graphql_ide(self, request: Any) -> bool:
        # A browser asks for HTML; curl and GraphQL clients get the 405 problem instead.
        accepts_html = "text/html" in request.headers.get("accept", "")
        return bool(self.ide and request.method == "GET" and accepts_html)

    async def render_graphql_ide(self, request: Request) -> HTMLResponse:
        return HTMLResponse(_IDE_PAGE, headers={"content-security-policy": IDE_CSP})

    async def parse_http_body(
        self, request: AsyncHTTPRequestAdapter
    ) -> GraphQLRequestData | list[GraphQLRequestData]:
        if request.method != "POST":
            raise MethodNotAllowed(_POST_ONLY, allow="POST")
        if not _is_json(request.content_type):
            raise UnsupportedMediaType(
                "Send the GraphQL request as JSON with Content-Type: application/json."
            )
        return request_data(await request.get_body())

    async def execute_operation(
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        request_data: GraphQLRequestData | list[GraphQLRequestData],
        context: Context,
        root_value: None,
        sub_response: Response,
    ) -> ExecutionResult | list[ExecutionResult] | SubscriptionExecutionResult:
        try:
            return await super().execute_operation(
                request, request_adapter, request_data, context, root_value, sub_response
            )
        except HTTPException as exc:
            # strawberry's remaining refusals describe the request (an operationName the
            # document lacks, several operations and no name): the client's mistake.
            raise GraphQLRequestInvalid(str(exc.reason)) from None

    async def _asset(self, name: str) -> Response:
        media_type = _ASSETS.get(name)
        if media_type is None:
            raise NotFound("No GraphiQL asset has this name.")
        folder = resources.files("keyturn.api.graphql") / "graphiql"
        content = await asyncio.to_thread((folder / name).read_bytes)
        return Response(
            content,
            media_type=media_type,
            headers={"content-security-policy": IDE_CSP, "cache-control": "public, max-age=3600"},
        )
