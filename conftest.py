"""Root pytest hooks: tests are marked by where they live, so `make unit` can leave out what
needs infrastructure without every test file remembering its marker.

- `.../integration/...` and `libs/devstack/tests/test_integration*.py`: `integration`
- `tests/e2e/...`: `e2e`
"""

from __future__ import annotations

import pytest

# real-infrastructure fixtures (Kafka, PostgreSQL, fresh databases) for every test folder
pytest_plugins = ["servicekit.testing"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = item.path.parts
        if "e2e" in parts:
            item.add_marker(pytest.mark.e2e)
        elif "integration" in parts or item.path.name.startswith("test_integration"):
            item.add_marker(pytest.mark.integration)
