"""The schema and the ``POST /graphql`` router, built per app from its settings."""

from __future__ import annotations

from strawberry.fastapi import GraphQLRouter
from strawberry.schema.config import StrawberryConfig

from keyturn.api.graphql.context import Context, get_context
from keyturn.api.graphql.errors import ErrorCodes, KeyturnSchema
from keyturn.api.graphql.limits import build_limits
from keyturn.api.graphql.mutation import Mutation
from keyturn.api.graphql.query import Query
from keyturn.config import Settings

PATH = "/graphql"


def build_schema(*, introspection: bool) -> KeyturnSchema:
    return KeyturnSchema(
        query=Query,
        mutation=Mutation,
        # ErrorCodes first: it runs its after-part last, seeing every other error. Where
        # the schema is private, so are the names a suggestion would give away.
        extensions=[
            lambda: ErrorCodes(hide_suggestions=not introspection),
            *build_limits(introspection=introspection),
        ],
        config=StrawberryConfig(auto_camel_case=True),
    )


def build_router(settings: Settings) -> GraphQLRouter[Context, None]:
    """``POST /graphql`` only: no GET (no queries in URLs or logs), no IDE page (it would
    load its assets from a CDN), no subscriptions (nothing to subscribe to)."""
    return GraphQLRouter(
        build_schema(introspection=settings.show_docs),
        path=PATH,
        graphql_ide=None,
        allow_queries_via_get=False,
        context_getter=get_context,
        subscription_protocols=(),
    )
