"""Prometheus and Grafana files: valid for promtool, alert rules tested, every metric name real
(servicekit's or a documented business export), every panel titled and with a unit."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from deployfiles import REPO, SERVICES, load_yaml, promql_metric_names

PROMETHEUS = REPO / "deploy" / "prometheus"
GRAFANA = REPO / "deploy" / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
METRICS_PY = REPO / "libs" / "servicekit" / "src" / "servicekit" / "metrics.py"
OPERATIONS = REPO / "docs" / "operations.md"

#: Series Prometheus makes itself for every target.
PROMETHEUS_OWN = frozenset({"up"})
#: The business gauges the brief asks for (the documented list may hold more).
BUSINESS_GAUGES = (
    "credit_open_debt",
    "credit_overdue_debt",
    "credit_overdue_customers",
    "credit_advances_held",
    "loyalty_bonus_liability",
    "notifier_open_tasks",
)
SAGA_METRICS = ("credit_saga_in_flight_operations",)
LOYALTY_COUNTERS = (
    "loyalty_bonus_operations_total",
    "loyalty_accrual_cancellations_total",
    "loyalty_bonus_lots_expired_total",
)


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is not installed: it checks deploy/prometheus. Install Debian's "
            "`prometheus` package (apt-get install -y prometheus; scripts/bootstrap.sh "
            "should do it).",
            pytrace=False,
        )
    return path


def run_promtool(*args: str, cwd: Path = PROMETHEUS) -> None:
    result = subprocess.run(
        [promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, (
        f"promtool {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    )


def servicekit_series() -> set[str]:
    """Series names servicekit's metrics expose, read from metrics.py's source."""
    tree = ast.parse(METRICS_PY.read_text(encoding="utf-8"))
    series: set[str] = set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            continue
        kind = node.func.id
        if kind not in ("Counter", "Gauge", "Histogram", "Summary") or not node.args:
            continue
        first = node.args[0]
        assert isinstance(first, ast.Constant) and isinstance(first.value, str)
        name = first.value
        if kind == "Counter":
            series.add(name if name.endswith("_total") else f"{name}_total")
        elif kind == "Gauge":
            series.add(name)
        elif kind == "Histogram":
            series |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        else:
            series |= {name, f"{name}_sum", f"{name}_count"}
    assert series, "no metric found in servicekit/metrics.py"
    return series


def documented_exports() -> dict[str, dict[str, str]]:
    """The 'Required metric exports' table of docs/operations.md: name -> its columns."""
    text = OPERATIONS.read_text(encoding="utf-8")
    match = re.search(r"^## Required metric exports\n(.*?)(?=^## )", text, re.M | re.S)
    assert match, "docs/operations.md needs a '## Required metric exports' section"
    rows: dict[str, dict[str, str]] = {}
    header: list[str] = []
    for line in match.group(1).splitlines():
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not header:
            header = cells
            continue
        if set(cells[0]) <= {"-", ":"}:
            continue
        name = cells[0].strip("`")
        rows[name] = dict(zip(header, cells, strict=True))
    assert rows, "the 'Required metric exports' table is empty"
    return rows


def allowed_series() -> set[str]:
    return servicekit_series() | set(documented_exports()) | PROMETHEUS_OWN


def alert_rules() -> list[dict[str, Any]]:
    data = load_yaml(PROMETHEUS / "alerts.yml")
    return [rule for group in data["groups"] for rule in group["rules"] if "alert" in rule]


def dashboards() -> dict[str, dict[str, Any]]:
    result = {}
    for path in sorted(DASHBOARDS.glob("*.json")):
        result[path.name] = json.loads(path.read_text(encoding="utf-8"))
    assert result, "no dashboard in deploy/grafana/dashboards"
    return result


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and every query variable."""
    queries = []
    for filename, dashboard in dashboards().items():
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                queries.append((f"{filename} '{panel['title']}'", target["expr"]))
        for variable in dashboard.get("templating", {}).get("list", []):
            if variable.get("type") != "query":
                continue
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            found = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", text)
            expr = found.group(1) if found else text
            queries.append((f"{filename} variable {variable['name']}", expr))
    return queries


def test_metric_names_are_read_from_promql_without_functions_labels_or_keywords() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (job, le) (rate(http_request_duration_seconds_bucket"
        '{job=~"$job", route="/v1/x"}[$__rate_interval]))) / on (job) group_left '
        "max(up offset 1h) and sum(x_total) by (chain_id) > 1e3 unless absent(y)"
    )
    assert promql_metric_names(expr) == {
        "http_request_duration_seconds_bucket",
        "up",
        "x_total",
        "y",
    }


def test_the_documented_exports_hold_the_business_gauges_by_chain_and_the_saga_metrics() -> None:
    exports = documented_exports()
    for name in BUSINESS_GAUGES:
        assert name in exports, f"{name} must be listed in docs/operations.md"
        assert exports[name]["type"] == "gauge"
        assert "chain_id" in exports[name]["labels"]
    for name in SAGA_METRICS:
        assert name in exports, f"{name} must be listed in docs/operations.md"
    clash = set(exports) & servicekit_series()
    assert not clash, f"listed as service exports but already servicekit's: {clash}"


def test_every_metric_in_alerts_and_dashboards_exists_in_servicekit_or_the_documented_list() -> (
    None
):
    allowed = allowed_series()
    unknown = []
    for rule in alert_rules():
        for name in promql_metric_names(rule["expr"]) - allowed:
            unknown.append(f"alert {rule['alert']}: {name}")
    for where, expr in dashboard_queries():
        for name in promql_metric_names(expr) - allowed:
            unknown.append(f"{where}: {name}")
    assert not unknown, (
        "metric names that neither servicekit/metrics.py nor docs/operations.md "
        "('Required metric exports') define:\n" + "\n".join(unknown)
    )


def test_promtool_accepts_the_configurations_and_the_rules() -> None:
    run_promtool("check", "config", "prometheus.yml")
    run_promtool("check", "config", "prometheus.local.yml")
    run_promtool("check", "rules", "alerts.yml")


def test_promtool_unit_tests_of_the_alerts_pass() -> None:
    run_promtool("test", "rules", "alerts_test.yml")


def test_promtool_accepts_every_dashboard_query(tmp_path: Path) -> None:
    # Recording rules with the dashboards' queries (Grafana variables filled in): promtool
    # parses each one, so a PromQL typo in a panel fails here and not in front of a person.
    rules = []
    for index, (where, expr) in enumerate(dashboard_queries()):
        filled = (
            expr.replace("$__rate_interval", "5m")
            .replace("$job", "credit")
            .replace("$chain_id", ".*")
        )
        assert "$" not in filled, f"{where}: unknown Grafana variable in {expr}"
        rules.append({"record": f"dashboard_query:{index}", "expr": filled})
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    run_promtool("check", "rules", str(path), cwd=tmp_path)


def test_every_alert_has_a_severity_a_runbook_section_and_a_firing_unit_test() -> None:
    operations = OPERATIONS.read_text(encoding="utf-8")
    headings = {
        re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
        for h in re.findall(r"^#{2,4} (.+)$", operations, re.M)
    }
    tests = load_yaml(PROMETHEUS / "alerts_test.yml")["tests"]
    firing = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    for rule in alert_rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        runbook = rule["annotations"]["runbook"]
        page, _, anchor = runbook.partition("#")
        assert page == "docs/operations.md" and anchor in headings, (
            f"{name}: runbook {runbook} has no heading in docs/operations.md"
        )
        assert name in firing, f"{name}: alerts_test.yml has no case where it fires"


def test_the_alerts_cover_lag_outbox_errors_dead_letters_downtime_and_overdue_debt() -> None:
    rules = {rule["alert"]: rule["expr"] for rule in alert_rules()}
    covered = {
        "consumer lag growing": "consumer_lag_messages",
        "outbox oldest row too old": "outbox_oldest_unsent_age_seconds",
        "error ratio": "http_requests_total",
        "dead letters appearing": "messages_dead_lettered_total",
        "a service down": "up",
        "overdue debt spike": "credit_overdue_debt",
    }
    for what, metric in covered.items():
        assert any(metric in promql_metric_names(expr) for expr in rules.values()), (
            f"no alert on {what} ({metric})"
        )


def test_scrape_configs_reach_every_service_as_a_job_named_after_it() -> None:
    compose = load_yaml(PROMETHEUS / "prometheus.yml")
    local = load_yaml(PROMETHEUS / "prometheus.local.yml")
    for config, host in ((compose, None), (local, "127.0.0.1")):
        jobs = {job["job_name"]: job for job in config["scrape_configs"]}
        assert "alerts.yml" in config["rule_files"]
        for service in SERVICES:
            job = jobs[service.name]
            assert job.get("metrics_path", "/metrics") == "/metrics"
            targets = [t for sc in job["static_configs"] for t in sc["targets"]]
            assert targets == [f"{host or service.name}:{service.port}"]
    k8s = load_yaml(PROMETHEUS / "prometheus.k8s.yml")
    (pods,) = k8s["scrape_configs"]
    relabel = {tuple(r.get("source_labels", [])): r for r in pods["relabel_configs"]}
    job_rule = relabel[("__meta_kubernetes_pod_label_app_kubernetes_io_name",)]
    assert job_rule["target_label"] == "job"
    assert relabel[("__meta_kubernetes_pod_annotation_prometheus_io_scrape",)]["action"] == "keep"


def _datasources(node: Any, where: str = "") -> list[tuple[str, Any]]:
    """Every `datasource` value in a dashboard's JSON, with where it is."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                found.append((where, value))
            found += _datasources(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _datasources(value, f"{where}[{i}]")
    return found


def test_every_dashboard_imports_into_an_existing_grafana_without_a_fixed_datasource() -> None:
    for filename, dashboard in dashboards().items():
        # the import asks for one Prometheus datasource ...
        assert dashboard["__inputs"] == [
            {
                "name": "DS_PROMETHEUS",
                "label": "Prometheus",
                "description": "The Prometheus that scrapes the five services",
                "type": "datasource",
                "pluginId": "prometheus",
                "pluginName": "Prometheus",
            }
        ], filename
        assert dashboard["id"] is None, filename  # a new dashboard wherever it is imported
        # ... which the dashboard's datasource variable takes (provisioned: the default one)
        [variable] = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
        assert (variable["name"], variable["query"]) == ("datasource", "prometheus")
        assert variable["current"]["value"] == "${DS_PROMETHEUS}"
        # and every panel, query and query variable reads that variable: no uid anywhere
        sources = _datasources(dashboard["panels"]) + _datasources(dashboard["templating"])
        assert sources, filename
        fixed = [
            f"{filename}{where}: {value}"
            for where, value in sources
            if value != {"type": "prometheus", "uid": "${datasource}"}
        ]
        assert fixed == []
        used = {p["type"] for p in dashboard["panels"]}
        required = {r["id"] for r in dashboard["__requires"] if r["type"] == "panel"}
        assert used == required, filename


def test_there_are_the_three_dashboards_and_every_panel_has_a_title_and_a_unit() -> None:
    datasource = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")
    (source,) = datasource["datasources"]
    uids = set()
    titles = set()
    problems = []
    for filename, dashboard in dashboards().items():
        titles.add(dashboard["title"])
        assert dashboard["uid"] not in uids, f"{filename}: uid used twice"
        uids.add(dashboard["uid"])
        ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(ids) == len(set(ids)), f"{filename}: panel ids repeat"
        for panel in dashboard["panels"]:
            where = f"{filename} panel {panel.get('id')}"
            if not panel.get("title", "").strip():
                problems.append(f"{where}: no title")
            if not panel.get("fieldConfig", {}).get("defaults", {}).get("unit"):
                problems.append(f"{where} '{panel.get('title')}': no unit")
            if not panel.get("targets"):
                problems.append(f"{where}: no query")
    assert not problems, "\n".join(problems)
    assert {"System overview", "Pipeline", "Business"} <= titles
    # compose provisions one default Prometheus: the dashboards' variable falls back to it
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    assert source["isDefault"] is True


def metrics_of(title: str) -> set[str]:
    (dashboard,) = [d for d in dashboards().values() if d["title"] == title]
    names: set[str] = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            names |= promql_metric_names(target["expr"])
    return names


def exprs_of(title: str) -> str:
    (dashboard,) = [d for d in dashboards().values() if d["title"] == title]
    return "\n".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])


def test_the_overview_shows_traffic_errors_and_latency_quantiles_per_service() -> None:
    assert {"http_requests_total", "http_request_duration_seconds_bucket"} <= metrics_of(
        "System overview"
    )
    exprs = exprs_of("System overview")
    for quantile in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({quantile}, sum by (job, le)" in exprs
    assert 'status=~"5.."' in exprs


def test_the_pipeline_shows_lag_throughput_outbox_dead_letters_and_the_saga() -> None:
    assert {
        "consumer_lag_messages",
        "messages_processed_total",
        "outbox_backlog_messages",
        "outbox_oldest_unsent_age_seconds",
        "messages_dead_lettered_total",
        "operations_failed_total",
        *SAGA_METRICS,
    } <= metrics_of("Pipeline")


def test_the_business_dashboard_shows_every_business_gauge_per_chain() -> None:
    assert set(BUSINESS_GAUGES) <= metrics_of("Business")
    for line in exprs_of("Business").splitlines():
        if not promql_metric_names(line) & set(BUSINESS_GAUGES):
            continue
        # whole-chain values, identical on every instance: never summed over instances
        assert "sum" not in line and "by (chain_id)" in line, line


def test_operations_see_process_cpu_and_memory_consumer_restarts_redrives_and_loyalty() -> None:
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes"} <= metrics_of(
        "System overview"
    )
    assert {"consumer_restarts_total", "messages_redriven_total"} <= metrics_of("Pipeline")
    assert set(LOYALTY_COUNTERS) <= metrics_of("Business")
    for line in exprs_of("Business").splitlines():
        if promql_metric_names(line) & set(LOYALTY_COUNTERS):
            # counters of each instance: summed over instances, as rates or increases
            assert line.startswith("sum") and ("rate(" in line or "increase(" in line), line


def test_the_committed_dashboards_are_what_the_generator_writes() -> None:
    result = subprocess.run(
        [sys.executable, str(GRAFANA / "build_dashboards.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
