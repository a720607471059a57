"""The migrations are the schema: the ORM models must match what they build."""

from __future__ import annotations

import bcrypt
import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from helpers import new_email
from keyturn.config import Settings
from keyturn.db.engine import create_engine
from keyturn.db.models import Base, RoleRow, UserRow

pytestmark = pytest.mark.anyio


def _diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


# SQLite cannot reflect expression indexes (lower(name)); PostgreSQL compares them.
@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
@pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression-based")
async def test_models_match_the_migrated_schema(settings: Settings) -> None:
    engine = create_engine(settings.database_url)
    try:
        async with engine.connect() as connection:
            differences = await connection.run_sync(_diff)
            admin = await connection.scalar(
                select(RoleRow.permissions).where(RoleRow.name == "admin")
            )
    finally:
        await engine.dispose()
    assert differences == []
    assert admin is not None
    assert "users:read" in admin


async def test_imported_bcrypt_hash_logs_in_and_is_upgraded(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    """Users imported with bcrypt hashes keep their password; the hash becomes argon2id."""
    email, password = new_email(), "imported password 42"
    await client.post("/v1/auth/signup", json={"email": email, "password": "placeholder pw 99"})
    legacy = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    engine = create_engine(settings.database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                update(UserRow).where(UserRow.email == email).values(password_hash=legacy)
            )
        login = await client.post("/v1/auth/login", json={"email": email, "password": password})
        assert login.status_code == 200
        async with engine.connect() as connection:
            stored = await connection.scalar(
                select(UserRow.password_hash).where(UserRow.email == email)
            )
    finally:
        await engine.dispose()
    assert stored is not None
    assert stored.startswith("$argon2id$")
    again = await client.post("/v1/auth/login", json={"email": email, "password": password})
    assert again.status_code == 200
