"""Argument checks shared by the paginated fields (the same bounds REST's Query() sets)."""

from __future__ import annotations

from pydantic import TypeAdapter, ValidationError

from keyturn.api.graphql.limits import Page
from keyturn.api.rest.schemas.common import Name
from keyturn.errors import InvalidInput

MAX_CURSOR = 500


def check_first(first: int, page: Page) -> int:
    """Out of bounds is ``invalid_request``, like REST's ``limit``."""
    if not 1 <= first <= page.maximum:
        raise InvalidInput(
            f"`first` must be between 1 and {page.maximum}.",
            errors=[{"field": "first", "message": f"between 1 and {page.maximum}"}],
        )
    return first


def check_after(after: str | None) -> str | None:
    """A cursor too long to be ours is refused before any service decodes it."""
    if after is not None and len(after) > MAX_CURSOR:
        raise InvalidInput(
            "The cursor is not valid.", errors=[{"field": "after", "message": "malformed"}]
        )
    return after


def check_length(value: str | None, field: str, maximum: int) -> str | None:
    """The same length bound the REST route puts on this parameter."""
    if value is not None and len(value) > maximum:
        raise InvalidInput(
            f"`{field}` is at most {maximum} characters.",
            errors=[{"field": field, "message": f"at most {maximum} characters"}],
        )
    return value


_NAME: TypeAdapter[str | None] = TypeAdapter(Name | None)


def check_name(name: str | None) -> str | None:
    """A display name under the REST rules (``keyturn.api.rest.schemas.common.Name``)."""
    try:
        return _NAME.validate_python(name)
    except ValidationError as exc:
        raise InvalidInput(
            "The name is not valid.",
            errors=[{"field": "name", "message": str(error["msg"])} for error in exc.errors()],
        ) from exc
