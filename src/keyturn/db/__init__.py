"""Persistence: SQLAlchemy 2 async models, repositories (flush, never commit), unit of work.

The schema is made only by the Alembic migrations in ``keyturn/db/migrations``.
"""
