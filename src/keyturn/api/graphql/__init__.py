"""GraphQL edge (strawberry): ``POST /graphql`` over the same services as REST."""

from keyturn.api.graphql.schema import build_router

__all__ = ["build_router"]
