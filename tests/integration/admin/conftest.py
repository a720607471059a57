"""Fixtures of the admin integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from keyturn.db.engine import create_engine


@pytest.fixture
async def engine(private_database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on a private database of the test's backend (the audit tests tamper)."""
    created = create_engine(private_database_url)
    try:
        yield created
    finally:
        await created.dispose()
