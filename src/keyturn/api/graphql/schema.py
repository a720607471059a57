"""The schema and the ``POST /graphql`` router, built per app from its settings."""

from __future__ import annotations

from strawberry.schema.config import StrawberryConfig

from keyturn.api.graphql.errors import ErrorCodes, KeyturnSchema
from keyturn.api.graphql.limits import build_limits
from keyturn.api.graphql.mutation import Mutation
from keyturn.api.graphql.query import Query
from keyturn.api.graphql.transport import PATH, KeyturnGraphQLRouter
from keyturn.config import Settings

__all__ = ["PATH", "build_router", "build_schema"]


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


def build_router(settings: Settings) -> KeyturnGraphQLRouter:
    """``POST /graphql``; GraphiQL on ``GET /graphql`` where introspection is on (dev).

    No queries via GET (no queries in URLs or logs), no subscriptions (nothing to
    subscribe to); transport errors answer as problem+json (``transport.py``).
    """
    return KeyturnGraphQLRouter(
        build_schema(introspection=settings.show_docs), ide=settings.show_docs
    )
