"""How long each service lets Kafka hold a fetch to gather a batch (`CONSUMER_FETCH_WAIT_MS`,
docs/architecture.md): not at all on a sale's critical path (the gateway, credit, loyalty: a
command or an answer is handed over as soon as it is there), 50 ms for the read models off it
(reporting, the notifier: their per-batch costs shared, their lag up to 50 ms more)."""

from __future__ import annotations

import importlib

import pytest

WAIT_MS = {
    ("pos_gateway", "GATEWAY_"): 0,
    ("credit", "CREDIT_"): 0,
    ("loyalty", "LOYALTY_"): 0,
    ("reporting", "REPORTING_"): 50,
    ("notifier", "NOTIFIER_"): 50,
}


@pytest.mark.parametrize(("service", "wait_ms"), WAIT_MS.items(), ids=[s for s, _ in WAIT_MS])
def test_each_service_waits_for_a_batch_only_off_the_sale_path(
    service: tuple[str, str], wait_ms: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    package, prefix = service
    settings = importlib.import_module(f"{package}.config").Settings
    monkeypatch.delenv(f"{prefix}CONSUMER_FETCH_WAIT_MS", raising=False)
    assert settings().consumer_fetch_wait_ms == wait_ms
    monkeypatch.setenv(f"{prefix}CONSUMER_FETCH_WAIT_MS", "20")
    assert settings().consumer_fetch_wait_ms == 20


def test_reporting_handles_a_batch_in_key_order() -> None:
    """A customer's events reach reporting on two topics, whose partitions may be read by two
    instances at once; each batch takes its customers' locks in key order, so the instances do
    not deadlock (measured without it: `stop23-x4` in docs/benchmarks). The ordering itself is
    servicekit's (`test_a_batch_sorted_by_key_keeps_each_keys_order`)."""
    from reporting.service_layer.handlers import make_consumer

    assert make_consumer().sort_batch_by_key is True
