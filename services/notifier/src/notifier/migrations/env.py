"""Alembic environment of the notifier database (servicekit's async runner)."""

from servicekit.db import alembic_env

alembic_env()
