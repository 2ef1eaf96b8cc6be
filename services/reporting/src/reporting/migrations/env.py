"""Alembic environment of the reporting database (servicekit's async runner)."""

from servicekit.db import alembic_env

alembic_env()
