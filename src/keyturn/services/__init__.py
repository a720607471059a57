"""Use cases: async classes with keyword-only dependencies.

They take and return ``keyturn.domain`` objects and raise ``keyturn.errors``; they never
import the web framework, GraphQL, SQLAlchemy or Redis (see README.md).
"""
