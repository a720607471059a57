"""The root of the tree and the errors any capability (or the edge itself) raises."""

from __future__ import annotations


class KeyturnError(Exception):
    """Base of every error Keyturn raises on purpose.

    ``code`` is the stable machine-readable name (listed in the API specification);
    ``status`` and ``title`` are hints the edge renders (``keyturn.api.problems``). An
    instance may narrow ``code`` (a policy rule, an OAuth error name) without a subclass.
    """

    code: str = "error"
    status: int = 500
    title: str = "Internal error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: list[dict[str, str]] | None = None,
        code: str | None = None,
    ) -> None:
        self.detail = detail or self.title
        self.errors = errors or []
        if code is not None:
            self.code = code
        super().__init__(self.detail)


class InvalidInput(KeyturnError):
    code = "invalid_request"
    status = 422
    title = "The request is not valid"


class MalformedBody(InvalidInput):
    """The body cannot be decoded as JSON."""

    code = "malformed_json"
    status = 400
    title = "The body is not valid JSON"


class UnsupportedMediaType(InvalidInput):
    """A body sent without ``Content-Type: application/json`` (``curl -d`` sends a form)."""

    code = "unsupported_media_type"
    status = 415
    title = "The body must be sent as application/json"


class GraphQLRequestInvalid(InvalidInput):
    """A ``POST /graphql`` body that is JSON but no GraphQL request; ``code`` says why."""

    code = "invalid_graphql_request"
    status = 400
    title = "The body is not a GraphQL request"


class AuthenticationFailed(KeyturnError):
    code = "invalid_credentials"
    status = 401
    title = "Invalid credentials"


class PermissionDenied(KeyturnError):
    code = "permission_denied"
    status = 403
    title = "Not allowed"


class NotFound(KeyturnError):
    code = "not_found"
    status = 404
    title = "Not found"


class MethodNotAllowed(KeyturnError):
    """The path exists but not for this method; ``allow`` lists the ones it takes."""

    code = "method_not_allowed"
    status = 405
    title = "Method not allowed"

    def __init__(self, detail: str | None = None, *, allow: str) -> None:
        super().__init__(detail)
        self.allow = allow


class Conflict(KeyturnError):
    code = "conflict"
    status = 409
    title = "Conflict"


class RateLimited(KeyturnError):
    """Too many requests for this key (address, account+IP, IP); retry later."""

    code = "rate_limited"
    status = 429
    title = "Too many requests"

    def __init__(
        self, detail: str | None = None, *, retry_after: int, limit: int, reset_after: int
    ) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
        self.limit = limit
        self.reset_after = reset_after


class ServiceUnavailable(KeyturnError):
    code = "service_unavailable"
    status = 503
    title = "Temporarily unavailable"

    def __init__(self, detail: str | None = None, *, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class HashQueueFull(ServiceUnavailable):
    """The password hashing pool and its queue are full; the client should retry."""

    code = "hash_queue_full"
    title = "Too many password checks in progress; retry shortly"


class DatabaseUnavailable(ServiceUnavailable):
    """The database could not be reached (down, restarting, refusing connections).

    Raised by the db layer in place of the driver's connection error: an outage is no bug
    in the request, so the client hears 503 and ``Retry-After``, not 500. The code stays
    ``service_unavailable``: which store failed is the operator's business, not the
    client's (the log line names it).
    """

    def __init__(self, detail: str | None = None, *, retry_after: int = 5) -> None:
        super().__init__(detail, retry_after=retry_after)
