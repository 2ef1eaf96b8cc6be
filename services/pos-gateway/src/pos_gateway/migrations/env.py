"""Alembic environment of the gateway: servicekit's async env (URL set by servicekit.db)."""

from servicekit.db import alembic_env

alembic_env()
