"""Migrate one service's database and exit: the command of the Kubernetes migration Jobs.

Every service also migrates at start-up (servicekit's runtime); running this first, once, as a
Job keeps a rolling upgrade from starting several replicas that race to apply the same
migration, and makes a failing migration stop the rollout before any new pod takes traffic.

Usage inside a service image: ``python /opt/deploy/migrate.py [package]`` (the package defaults
to ``$SERVICE_PACKAGE``, which deploy/docker/Dockerfile sets). It reads the same settings as the
service.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
from pathlib import Path


def migrations_dir(package: str) -> Path:
    """Where a service keeps its Alembic scripts: ``src/<package>/migrations`` (house layout)."""
    module = importlib.import_module(package)
    if module.__file__ is None:
        raise SystemExit(f"{package} is a namespace package: cannot locate its migrations")
    path = Path(module.__file__).parent / "migrations"
    if not (path / "env.py").is_file():
        raise SystemExit(f"{package} has no migrations at {path}")
    return path


def main(argv: list[str]) -> int:
    package = argv[1] if len(argv) > 1 else os.environ.get("SERVICE_PACKAGE", "")
    if not package:
        raise SystemExit("usage: migrate.py <package> (or set SERVICE_PACKAGE)")
    from servicekit.db import prepare_database

    settings = importlib.import_module(f"{package}.config").Settings()
    asyncio.run(prepare_database(migrations_dir(package), settings.database_url))
    print(f"{package}: database migrated to head", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
