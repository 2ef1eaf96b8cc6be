"""Observability of the running system: a real Prometheus scrapes the five services, and every
metric the dashboards and alerts use is exported by them.

Prometheus comes from Debian's `prometheus` package (scripts/bootstrap.sh installs it); it runs
on a free loopback port with its data in a temporary folder, loads deploy/prometheus/alerts.yml,
and is stopped by its PID whatever happens.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from devstack.ports import free_port
from devstack.stack import Stack

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "deploy"))
from deployfiles import promql_metric_names  # noqa: E402

#: Prometheus job (as in deploy/prometheus) -> devstack's service name
JOBS = {
    "pos-gateway": "gateway",
    "credit": "credit",
    "loyalty": "loyalty",
    "reporting": "reporting",
    "notifier": "notifier",
}
#: Series Prometheus makes itself for every target.
PROMETHEUS_OWN = frozenset({"up"})
SHOES = {
    "sku": "SH-1",
    "barcode": "4820000000024",
    "name": "Shoes",
    "quantity": "1",
    "unit_price": "60.00",
    "discount": "0.00",
}


def make_traffic(chain: Any, idem: Any) -> dict[str, Any]:
    """A customer with 60.00 of debt and some bonus, through the public API."""
    customer = chain.customer(vip=True)
    for payments in (
        [{"method": "on_account", "amount": "60.00"}],
        [{"method": "cash", "amount": "60.00"}],
    ):
        sale = chain.terminal.post(
            "/v1/sales",
            headers=idem(),
            json={"card_number": customer["card_number"], "lines": [SHOES], "payments": payments},
        )
        assert sale.status_code == 201, sale.text
    return customer


def exported(stack: Stack) -> dict[str, set[str]]:
    """Sample names each service's /metrics exports (histograms as _bucket/_sum/_count)."""
    result = {}
    for job, service in JOBS.items():
        text = httpx.get(f"{stack.url(service)}/metrics", timeout=10).text
        result[job] = {
            sample.name
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }
    return result


def used_metric_names() -> dict[str, set[str]]:
    """Metric name -> where the dashboards and alert rules use it."""
    where: dict[str, set[str]] = {}
    for path in sorted((REPO / "deploy" / "grafana" / "dashboards").glob("*.json")):
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
        for variable in dashboard.get("templating", {}).get("list", []):
            if variable.get("type") == "query":
                query = variable["query"]
                text = query["query"] if isinstance(query, dict) else query
                exprs.append(text.removeprefix("label_values(").rsplit(",", 1)[0])
        for expr in exprs:
            for name in promql_metric_names(expr):
                where.setdefault(name, set()).add(path.name)
    alerts = yaml.safe_load((REPO / "deploy" / "prometheus" / "alerts.yml").read_text())
    for group in alerts["groups"]:
        for rule in group["rules"]:
            for name in promql_metric_names(rule["expr"]):
                where.setdefault(name, set()).add(f"alert {rule.get('alert')}")
    assert where, "no metric found in the dashboards and alerts"
    return where


def test_every_metric_the_dashboards_and_alerts_use_is_exported_by_the_running_services(
    stack: Stack, new_chain: Callable[..., Any], idem: Any, eventually: Any
) -> None:
    chain = new_chain()
    make_traffic(chain, idem)

    def missing() -> list[str]:
        names = set().union(*exported(stack).values())
        return [
            f"{name} (used in {', '.join(sorted(where))})"
            for name, where in sorted(used_metric_names().items())
            if name not in names and name not in PROMETHEUS_OWN
        ]

    # the gauges refreshed by periodic jobs appear within a few intervals
    with contextlib.suppress(AssertionError):  # the assertion below says what is missing
        eventually(lambda: not missing(), timeout=30, interval=1.0)
    assert not missing(), "used in deploy/ but exported by no running service:\n" + "\n".join(
        missing()
    )


@pytest.fixture
def prometheus(stack: Stack, tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("prometheus") or "/usr/bin/prometheus"
    if not Path(binary).exists():
        pytest.fail(
            "prometheus is not installed (Debian package `prometheus`; "
            "scripts/bootstrap.sh installs it)",
            pytrace=False,
        )
    port = free_port()
    rules = tmp_path / "alerts.yml"
    shutil.copy(REPO / "deploy" / "prometheus" / "alerts.yml", rules)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [
            {
                "job_name": job,
                "static_configs": [{"targets": [f"127.0.0.1:{stack.ports.of(service)}"]}],
            }
            for job, service in JOBS.items()
        ],
    }
    config_path = tmp_path / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config))
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/-/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(
                    "prometheus did not start:\n"
                    + (tmp_path / "prometheus.log").read_text()[-3000:]
                )
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()  # by its PID, the process this fixture started
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


def query(url: str, expr: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def test_a_real_prometheus_scrapes_every_service_and_the_queries_return_data(
    stack: Stack, prometheus: str, new_chain: Callable[..., Any], idem: Any, eventually: Any
) -> None:
    chain = new_chain()
    make_traffic(chain, idem)

    def targets_up() -> bool:
        active = httpx.get(f"{prometheus}/api/v1/targets", timeout=10).json()["data"][
            "activeTargets"
        ]
        return {t["labels"]["job"] for t in active if t["health"] == "up"} == set(JOBS)

    eventually(targets_up, timeout=60, interval=0.5)
    for job in JOBS:
        assert [r["value"][1] for r in query(prometheus, f'up{{job="{job}"}}')] == ["1"], job

    def has(expr: str) -> list[dict[str, Any]]:
        return eventually(lambda: query(prometheus, expr), timeout=30, interval=0.5)

    assert has('http_requests_total{job="pos-gateway", route="/v1/sales", status="201"}')
    processed = has("sum by (job) (messages_processed_total)")
    assert {r["metric"]["job"] for r in processed} >= {"credit", "loyalty", "reporting"}
    backlog = has("outbox_backlog_messages")
    assert {r["metric"]["job"] for r in backlog} >= {"pos-gateway", "credit", "loyalty"}
    assert has('consumer_lag_messages{job="credit", topic="pos.commands.v1"}')
    assert has("credit_saga_in_flight_operations")

    chain_id = chain.chain_id

    def value(expr: str, expected: float) -> bool:
        result = query(prometheus, expr)
        return bool(result) and float(result[0]["value"][1]) == expected

    # the business gauges of this chain, as the Business dashboard reads them
    eventually(
        lambda: value(f'max by (chain_id) (credit_open_debt{{chain_id="{chain_id}"}})', 60.0),
        timeout=30,
        interval=0.5,
    )
    for name in (
        "credit_overdue_debt",
        "credit_overdue_customers",
        "credit_advances_held",
        "notifier_open_tasks",
    ):
        # nothing overdue, no advance, no task: 0, not a missing series
        eventually(
            lambda n=name: value(f'max by (chain_id) ({n}{{chain_id="{chain_id}"}})', 0.0),
            timeout=30,
            interval=0.5,
        )
    liability = has(f'loyalty_bonus_liability{{chain_id="{chain_id}"}}')
    assert float(liability[0]["value"][1]) > 0  # the VIP accrued bonus on the cash sale
    # the alert rules load and evaluate against the live data
    groups = httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
    assert groups and all(g["rules"] for g in groups)
    assert all(r["health"] != "err" for g in groups for r in g["rules"]), groups
