"""GraphQL errors with the REST codes, read from the error table of ``api/problems.py``.

A ``KeyturnError`` becomes an error whose ``extensions.code`` is the same stable code the
REST API puts in its problem document (plus ``status`` and field ``errors``). Anything
unexpected is logged here and answered as ``internal_error`` without its message or
trace. Parse and validation errors keep graphql-core's message (it describes the query,
not the server) and get ``invalid_query`` unless a limit rule set its own code; where
introspection is off (production), their "Did you mean ...?" suggestions are cut, or they
would spell out the schema that introspection keeps private, one typo at a time.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import structlog
from graphql import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.schema import Schema
from strawberry.types import ExecutionContext

from keyturn.api.problems import rendering
from keyturn.errors import KeyturnError, ServiceUnavailable

log = structlog.get_logger(__name__)

INVALID_QUERY = "invalid_query"
INTERNAL_ERROR = "internal_error"
# graphql-core's suggestion sentence (pyutils/did_you_mean.py): " Did you mean 'a' or 'b'?",
# also "the enum value 'A'"; GraphQL names never hold '?'. graphql-core can leave them out
# itself (hide_suggestions) but strawberry does not pass that through to validation and
# execution, and cutting here covers every error, whichever step raised it.
_SUGGESTION = re.compile(r"\s*Did you mean [^?]*\?")


def _unexpected(error: GraphQLError) -> bool:
    original = error.original_error
    if original is None or isinstance(original, KeyturnError | GraphQLError):
        return False
    # Before execution (no path), a ValueError/TypeError is graphql-core refusing an input
    # value (a malformed UUID, a string for an Int): the client's mistake, not ours.
    return error.path is not None or not isinstance(original, ValueError | TypeError)


def shape(error: GraphQLError, *, hide_suggestions: bool = False) -> GraphQLError:
    """The error as the client sees it (without name suggestions if ``hide_suggestions``)."""
    original = error.original_error
    if isinstance(original, KeyturnError):
        shown = rendering(original)
        extensions: dict[str, Any] = {"code": shown.code, "status": shown.status}
        if original.errors:
            extensions["errors"] = original.errors
        if isinstance(original, ServiceUnavailable):
            # GraphQL answers 200, so the Retry-After of REST travels in the error itself.
            extensions["retry_after"] = original.retry_after
        message = shown.detail
    elif _unexpected(error):
        extensions = {"code": INTERNAL_ERROR}
        message = "An unexpected error occurred."
    else:
        extensions = {"code": INVALID_QUERY, **(error.extensions or {})}
        message = _SUGGESTION.sub("", error.message) if hide_suggestions else error.message
    return GraphQLError(
        message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        extensions=extensions,
    )


class ErrorCodes(SchemaExtension):
    """Rewrites every error of a result into its client form (see the module docstring).

    Args:
        hide_suggestions: Cut "Did you mean ...?" (where introspection is off).
    """

    def __init__(self, *, hide_suggestions: bool = False) -> None:
        super().__init__()
        self.hide_suggestions = hide_suggestions

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        if result is not None and result.errors:
            hide = self.hide_suggestions
            result.errors = [shape(error, hide_suggestions=hide) for error in result.errors]


class KeyturnSchema(Schema):
    """strawberry's schema, logging only the errors that are our bug (no domain noise)."""

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        for error in errors:
            if _unexpected(error):
                log.error(
                    "graphql_unhandled_error",
                    error_type=type(error.original_error).__name__,
                    path=error.path,
                    exc_info=error.original_error,
                )
