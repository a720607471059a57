"""A minimal fastapi-users app: the Python peer of the Keyturn benchmark.

What its documentation's SQLAlchemy + JWT example builds, nothing more: one ``user``
table on PostgreSQL (asyncpg), the bearer transport with the JWT strategy, the auth
router (``POST /auth/jwt/login``, form body) and the users router (``GET /users/me``).

Environment:
    DATABASE_URL: ``postgresql+asyncpg://...`` (its own database).
    JWT_SECRET: HS256 secret of the JWT strategy.
    HASHER: ``default`` (fastapi-users' own PasswordHelper: pwdlib Argon2Hasher with
        argon2-cffi defaults, then bcrypt) or ``keyturn`` (argon2id m=19456 KiB, t=2, p=1,
        Keyturn's production cost).

Run by the harness in its own virtualenv (bench/peers/fastapi_users/.venv):
``python -m uvicorn app:app`` from this directory, or ``python app.py --hash-only``
to print the hash of stdin's first line under the chosen hasher (for seeding).
"""

import os
import sys
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI
from fastapi_users import BaseUserManager, FastAPIUsers, UUIDIDMixin, schemas
from fastapi_users.authentication import AuthenticationBackend, BearerTransport, JWTStrategy
from fastapi_users.password import PasswordHelper
from fastapi_users_db_sqlalchemy import SQLAlchemyBaseUserTableUUID, SQLAlchemyUserDatabase
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase


def password_helper(name: str) -> PasswordHelper:
    if name == "default":
        return PasswordHelper()
    if name == "keyturn":
        return PasswordHelper(
            PasswordHash((Argon2Hasher(memory_cost=19456, time_cost=2, parallelism=1),))
        )
    raise SystemExit(f"unknown HASHER {name!r}")


HELPER = password_helper(os.environ.get("HASHER", "default"))


class Base(DeclarativeBase):
    pass


class User(SQLAlchemyBaseUserTableUUID, Base):
    pass


class UserRead(schemas.BaseUser[uuid.UUID]):
    pass


class UserUpdate(schemas.BaseUserUpdate):
    pass


def build_app() -> FastAPI:
    engine = create_async_engine(os.environ["DATABASE_URL"], pool_size=10)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    secret = os.environ["JWT_SECRET"]

    async def get_session() -> AsyncGenerator[AsyncSession, None]:
        async with sessions() as session:
            yield session

    async def get_user_db(
        session: Annotated[AsyncSession, Depends(get_session)],
    ) -> AsyncGenerator[SQLAlchemyUserDatabase[User, uuid.UUID], None]:
        yield SQLAlchemyUserDatabase(session, User)

    class UserManager(UUIDIDMixin, BaseUserManager[User, uuid.UUID]):
        reset_password_token_secret = secret
        verification_token_secret = secret

    async def get_user_manager(
        user_db: Annotated[SQLAlchemyUserDatabase[User, uuid.UUID], Depends(get_user_db)],
    ) -> AsyncGenerator[UserManager, None]:
        yield UserManager(user_db, HELPER)

    backend = AuthenticationBackend(
        name="jwt",
        transport=BearerTransport(tokenUrl="auth/jwt/login"),
        get_strategy=lambda: JWTStrategy(secret=secret, lifetime_seconds=86400),
    )
    users = FastAPIUsers[User, uuid.UUID](get_user_manager, [backend])

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        yield
        await engine.dispose()

    app = FastAPI(lifespan=lifespan)
    app.include_router(users.get_auth_router(backend), prefix="/auth/jwt")
    app.include_router(users.get_users_router(UserRead, UserUpdate), prefix="/users")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


if __name__ == "__main__" and sys.argv[1:] == ["--hash-only"]:
    print(HELPER.hash(sys.stdin.readline().rstrip("\n")))
elif __name__ != "__main__":
    app = build_app()
