"""Fixtures shared by the security primitive tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    """Run async tests on asyncio only (the service runs on asyncio/uvloop)."""
    return "asyncio"
