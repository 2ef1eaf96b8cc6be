"""The credit settings: prefix, defaults and the shared name of the overdue scan interval."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from credit.config import Settings


def test_overdue_scan_runs_every_minute_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OVERDUE_SCAN_INTERVAL_SECONDS", raising=False)
    monkeypatch.delenv("CREDIT_OVERDUE_SCAN_INTERVAL_SECONDS", raising=False)
    settings = Settings()
    assert settings.overdue_scan_interval_seconds == 60
    assert settings.port == 8081
    # the database's name, whatever the URL's query says (a socket directory under with-infra)
    assert urlsplit(settings.database_url).path == "/credit"


def test_overdue_scan_interval_is_read_with_or_without_the_prefix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OVERDUE_SCAN_INTERVAL_SECONDS", "5")
    assert Settings().overdue_scan_interval_seconds == 5
    monkeypatch.setenv("CREDIT_OVERDUE_SCAN_INTERVAL_SECONDS", "2")
    assert Settings().overdue_scan_interval_seconds == 2
