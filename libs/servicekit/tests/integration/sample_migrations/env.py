from servicekit.db import alembic_env

alembic_env()
