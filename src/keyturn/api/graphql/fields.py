"""Typed spellings of ``@strawberry.field(...)`` / ``@strawberry.mutation(...)``.

With keyword arguments only, strawberry's overloads return ``Any``, which mypy --strict
refuses as an untyped decorator; these keep each resolver's own signature.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import strawberry

F = TypeVar("F", bound=Callable[..., Any])


def field(description: str) -> Callable[[F], F]:
    return cast(Callable[[F], F], strawberry.field(description=description))


def mutation(description: str) -> Callable[[F], F]:
    return cast(Callable[[F], F], strawberry.mutation(description=description))
