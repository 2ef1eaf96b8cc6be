"""Alembic environment of the credit database (the engine comes from servicekit)."""

from servicekit.db import alembic_env

alembic_env()
