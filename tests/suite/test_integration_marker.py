"""What the `integration` marker promises about the suite holds: every service keeps at least
one test that goes through a real Kafka broker (the others feed records to the consumer)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("pos-gateway", "credit", "loyalty", "reporting", "notifier")
# a test over the broker takes the real broker's address from the fixture
USES_KAFKA = re.compile(r"def test_\w+\([^)]*\bkafka_bootstrap_servers\b", re.S)


def test_every_service_has_an_integration_test_over_real_kafka() -> None:
    without = []
    for service in SERVICES:
        folder = ROOT / "services" / service / "tests" / "integration"
        if not any(USES_KAFKA.search(p.read_text()) for p in folder.glob("test_*.py")):
            without.append(service)
    assert without == []


def test_the_integration_marker_says_what_its_tests_use() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    [marker] = [
        m
        for m in config["tool"]["pytest"]["ini_options"]["markers"]
        if m.startswith("integration:")
    ]
    assert "PostgreSQL" in marker and "directly" in marker and "real Kafka" in marker
