"""Alembic environment of loyalty: servicekit runs it with the service's database URL."""

from servicekit.db import alembic_env

alembic_env()
