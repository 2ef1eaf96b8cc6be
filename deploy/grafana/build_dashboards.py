"""Writes the Grafana dashboards of deploy/grafana/dashboards/ (run it after editing this file).

    python deploy/grafana/build_dashboards.py          # rewrite the JSON files
    python deploy/grafana/build_dashboards.py --check  # exit 1 when they are out of date

Dashboards are generated so that every panel gets a title, a unit and the same datasource,
and tests/deploy can hold the committed JSON to this file. Metric names: servicekit's metrics
(every service), prometheus_client's process metrics, and the service exports listed in
docs/operations.md. `job` is the service. Business gauges are whole-chain values read from a
database, the same on every instance of a service: they are combined with `max`, never summed
across instances.

No dashboard names a fixed datasource uid: every query uses the dashboard variable
`datasource` (any Prometheus datasource, the default one unless chosen), and `__inputs` asks
for it when the JSON is imported into an existing Grafana (Dashboards > New > Import), so the
same files serve that import and the provisioning of docker-compose.yml.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards"
#: the import's input (Grafana replaces `${DS_PROMETHEUS}` with the datasource chosen)
DS_INPUT = "DS_PROMETHEUS"
#: every panel and query variable reads the dashboard's datasource variable, never a fixed uid
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
SERVICES = "pos-gateway|credit|loyalty|reporting|notifier"
JOB = 'job=~"$job"'
RATE = "[$__rate_interval]"


@dataclass
class Panel:
    title: str
    unit: str
    queries: list[tuple[str, str]]  # (PromQL, legend)
    kind: str = "timeseries"
    description: str = ""
    width: int = 12
    height: int = 8


@dataclass
class Dashboard:
    uid: str
    title: str
    filename: str
    description: str
    panels: list[Panel]
    variables: list[dict[str, Any]] = field(default_factory=list)


def datasource_variable() -> dict[str, Any]:
    """The Prometheus to read from: on import, the one chosen for `DS_PROMETHEUS`; when
    provisioned (no import, so no such value), Grafana falls back to the default datasource."""
    chosen = "${" + DS_INPUT + "}"
    return {
        "name": "datasource",
        "label": "Prometheus",
        "type": "datasource",
        "query": "prometheus",
        "current": {"selected": False, "text": chosen, "value": chosen},
        "refresh": 1,
        "regex": "",
        "hide": 0,
        "includeAll": False,
        "multi": False,
    }


def job_variable() -> dict[str, Any]:
    return {
        "name": "job",
        "label": "Service",
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": f'label_values(up{{job=~"{SERVICES}"}}, job)', "refId": "job"},
        "definition": f'label_values(up{{job=~"{SERVICES}"}}, job)',
        "refresh": 2,
        "multi": True,
        "includeAll": True,
        "allValue": SERVICES,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }


def chain_variable() -> dict[str, Any]:
    return {
        "name": "chain_id",
        "label": "Chain",
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": "label_values(credit_open_debt, chain_id)", "refId": "chain"},
        "definition": "label_values(credit_open_debt, chain_id)",
        "refresh": 2,
        "multi": True,
        "includeAll": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }


def quantile(q: float, metric: str, by: str, selector: str = JOB) -> str:
    return f"histogram_quantile({q}, sum by ({by}, le) (rate({metric}_bucket{{{selector}}}{RATE})))"


SYSTEM = Dashboard(
    uid="vip-system-overview",
    title="System overview",
    filename="system-overview.json",
    description="Traffic, errors and latency of every service's HTTP side.",
    variables=[datasource_variable(), job_variable()],
    panels=[
        Panel(
            "Instances up",
            "short",
            [(f"sum by (job) (up{{{JOB}}})", "{{job}}")],
            kind="stat",
            description="Scrape targets answering /metrics, per service.",
            width=24,
            height=4,
        ),
        Panel(
            "Requests per second by service",
            "reqps",
            [(f"sum by (job) (rate(http_requests_total{{{JOB}}}{RATE}))", "{{job}}")],
        ),
        Panel(
            "Requests per second by status",
            "reqps",
            [(f"sum by (status) (rate(http_requests_total{{{JOB}}}{RATE}))", "{{status}}")],
        ),
        Panel(
            "5xx error ratio by service",
            "percentunit",
            [
                (
                    f'sum by (job) (rate(http_requests_total{{{JOB}, status=~"5.."}}{RATE}))'
                    f" / sum by (job) (rate(http_requests_total{{{JOB}}}{RATE}))",
                    "{{job}}",
                )
            ],
            description="Alert HttpErrorRatioHigh fires above 5% for 10 minutes.",
        ),
        Panel(
            "4xx responses per second by service",
            "reqps",
            [
                (
                    f'sum by (job) (rate(http_requests_total{{{JOB}, status=~"4.."}}{RATE}))',
                    "{{job}}",
                )
            ],
            description="Refusals (422 card_blocked, payment_mismatch, ...) and bad requests.",
        ),
        Panel(
            "Latency p50 by service",
            "s",
            [(quantile(0.5, "http_request_duration_seconds", "job"), "{{job}}")],
            width=8,
        ),
        Panel(
            "Latency p95 by service",
            "s",
            [(quantile(0.95, "http_request_duration_seconds", "job"), "{{job}}")],
            width=8,
        ),
        Panel(
            "Latency p99 by service",
            "s",
            [(quantile(0.99, "http_request_duration_seconds", "job"), "{{job}}")],
            width=8,
        ),
        Panel(
            "Process CPU by instance (cores)",
            "short",
            [
                (
                    f"sum by (job, instance) (rate(process_cpu_seconds_total{{{JOB}}}{RATE}))",
                    "{{job}} {{instance}}",
                )
            ],
            description="CPU seconds per second of each service process (1 = one full core); "
            "compare with the pod's CPU limit.",
        ),
        Panel(
            "Process resident memory by instance",
            "bytes",
            [
                (
                    f"sum by (job, instance) (process_resident_memory_bytes{{{JOB}}})",
                    "{{job}} {{instance}}",
                )
            ],
            description="Resident set size of each service process; compare with the pod's "
            "memory limit (OOMKilled above it).",
        ),
        Panel(
            "Slowest routes (p95)",
            "s",
            [
                (
                    "topk(10, "
                    + quantile(0.95, "http_request_duration_seconds", "job, route")
                    + ")",
                    "{{job}} {{route}}",
                )
            ],
            width=24,
        ),
    ],
)

PIPELINE = Dashboard(
    uid="vip-pipeline",
    title="Pipeline",
    filename="pipeline.json",
    description="Kafka consumers, transactional outboxes, dead letters, credit's saga and "
    "the operations that failed for good.",
    variables=[datasource_variable(), job_variable()],
    panels=[
        Panel(
            "Consumer lag by consumer and topic",
            "short",
            [
                (
                    "sum by (consumer, topic) (max by (consumer, topic, partition) "
                    f"(consumer_lag_messages{{{JOB}}}))",
                    "{{consumer}} {{topic}}",
                )
            ],
            description="Messages not yet consumed (max per partition over instances, summed).",
        ),
        Panel(
            "Consumer lag, top 10 partitions",
            "short",
            [
                (
                    "topk(10, max by (consumer, topic, partition) "
                    f"(consumer_lag_messages{{{JOB}}}))",
                    "{{consumer}} {{topic}}[{{partition}}]",
                )
            ],
        ),
        Panel(
            "Messages processed per second",
            "mps",
            [
                (
                    f"sum by (consumer, topic) (rate(messages_processed_total{{{JOB}}}{RATE}))",
                    "{{consumer}} {{topic}}",
                )
            ],
        ),
        Panel(
            "Messages failed (to be redelivered) and duplicates skipped per second",
            "mps",
            [
                (
                    f"sum by (consumer, topic) (rate(messages_failed_total{{{JOB}}}{RATE}))",
                    "failed {{consumer}} {{topic}}",
                ),
                (
                    f"sum by (consumer, topic) (rate(messages_duplicate_total{{{JOB}}}{RATE}))",
                    "duplicate {{consumer}} {{topic}}",
                ),
            ],
        ),
        Panel(
            "Message processing time p95 by consumer",
            "s",
            [(quantile(0.95, "message_processing_seconds", "consumer"), "{{consumer}}")],
        ),
        Panel(
            "Records per batch by consumer (mean)",
            "short",
            [
                (
                    f"sum by (consumer) (rate(consumer_batch_messages_sum{{{JOB}}}{RATE}))"
                    f" / sum by (consumer) (rate(consumer_batch_messages_count{{{JOB}}}{RATE}))",
                    "{{consumer}}",
                )
            ],
        ),
        Panel(
            "Message delivery time p99 by consumer (made -> handled: one hop)",
            "s",
            [(quantile(0.99, "message_delivery_seconds", "consumer"), "{{consumer}}")],
        ),
        Panel(
            "Dead-lettered messages in the last hour",
            "short",
            [
                (
                    "sum by (consumer, topic) "
                    f"(increase(messages_dead_lettered_total{{{JOB}}}[1h]))",
                    "{{consumer}} {{topic}}",
                )
            ],
            kind="stat",
            description="By consumer and original topic; `make dead-letters` lists them.",
        ),
        Panel(
            "Consumer restarts by the watchdog in the last hour",
            "short",
            [
                (
                    f"sum by (job, consumer) (increase(consumer_restarts_total{{{JOB}}}[1h]))",
                    "{{job}} {{consumer}}",
                )
            ],
            description="Subscribers restarted with a new Kafka client after failing the probe; "
            "alert ConsumerRestarting fires at 3 in 30 minutes.",
        ),
        Panel(
            "Dead letters re-driven in the last hour",
            "short",
            [
                (
                    f"sum by (consumer, topic) (increase(messages_redriven_total{{{JOB}}}[1h]))",
                    "{{consumer}} {{topic}}",
                )
            ],
            description="Re-driven dead letters (`make redrive`) each consumer received again.",
        ),
        Panel(
            "Outbox backlog (unsent rows)",
            "short",
            [(f"max by (job) (outbox_backlog_messages{{{JOB}}})", "{{job}}")],
        ),
        Panel(
            "Outbox oldest unsent row age",
            "s",
            [(f"max by (job) (outbox_oldest_unsent_age_seconds{{{JOB}}})", "{{job}}")],
            description="Alert OutboxOldestUnsentTooOld fires above 60 s for 5 minutes.",
        ),
        Panel(
            "Outbox published per second by topic",
            "mps",
            [
                (
                    f"sum by (job, topic) (rate(outbox_published_total{{{JOB}}}{RATE}))",
                    "{{job}} {{topic}}",
                )
            ],
        ),
        Panel(
            "Outbox publish failures per second",
            "cps",
            [
                (
                    f"sum by (job) (rate(outbox_publish_failures_total{{{JOB}}}{RATE}))",
                    "{{job}}",
                )
            ],
        ),
        Panel(
            "Credit saga: operations waiting for loyalty",
            "short",
            [("max(credit_saga_in_flight_operations)", "in flight")],
            description="Pending credit operations whose loyalty answer has not come yet.",
        ),
        Panel(
            "Operations failed for good per interval",
            "short",
            [
                (
                    f"sum by (service, kind, reason) (increase(operations_failed_total{RATE}))",
                    "{{service}} {{kind}} {{reason}}",
                )
            ],
            description="Refused as operation_failed: no answer within credit's deadline, or a "
            "message of the operation failed for good (docs/operations.md, OperationsFailed).",
        ),
        Panel(
            "Periodic job runs per hour by outcome",
            "short",
            [
                (
                    f"sum by (job, job_name, outcome) (increase(job_runs_total{{{JOB}}}[1h]))",
                    "{{job}} {{job_name}} {{outcome}}",
                )
            ],
            width=24,
        ),
    ],
)


def by_chain(metric: str) -> str:
    return f'max by (chain_id) ({metric}{{chain_id=~"$chain_id"}})'


BUSINESS = Dashboard(
    uid="vip-business",
    title="Business",
    filename="business.json",
    description="Debt, overdue, advances, bonus liability and reminder tasks per chain. "
    "Money is in each chain's own currency: never add chains together.",
    variables=[datasource_variable(), chain_variable()],
    panels=[
        Panel(
            "Open debt by chain (chain currency)",
            "short",
            [(by_chain("credit_open_debt"), "{{chain_id}}")],
        ),
        Panel(
            "Overdue debt by chain (chain currency)",
            "short",
            [(by_chain("credit_overdue_debt"), "{{chain_id}}")],
            description="Alert OverdueDebtSpike fires on a jump within an hour.",
        ),
        Panel(
            "Overdue share of open debt by chain",
            "percentunit",
            [
                (
                    f"{by_chain('credit_overdue_debt')} / {by_chain('credit_open_debt')}",
                    "{{chain_id}}",
                )
            ],
        ),
        Panel(
            "Overdue customers by chain",
            "short",
            [(by_chain("credit_overdue_customers"), "{{chain_id}}")],
        ),
        Panel(
            "Advances held by chain (chain currency)",
            "short",
            [(by_chain("credit_advances_held"), "{{chain_id}}")],
        ),
        Panel(
            "Bonus liability by chain (chain currency)",
            "short",
            [(by_chain("loyalty_bonus_liability"), "{{chain_id}}")],
            description="Unspent, unexpired bonuses customers hold.",
        ),
        Panel(
            "Open reminder tasks by chain",
            "short",
            [(by_chain("notifier_open_tasks"), "{{chain_id}}")],
            width=24,
        ),
        Panel(
            "Loyalty: bonus operations per second by outcome (all chains)",
            "ops",
            [
                (
                    "sum by (outcome) (rate(loyalty_bonus_operations_total[$__rate_interval]))",
                    "{{outcome}}",
                )
            ],
            description="ApplyBonuses answered: applied, refused (insufficient bonus) or "
            "repeated (a redelivery answered again). Counters of each instance, summed.",
        ),
        Panel(
            "Loyalty: accrual cancellations and expiries in the last hour (all chains)",
            "short",
            [
                ("sum(increase(loyalty_accrual_cancellations_total[1h]))", "accruals cancelled"),
                ("sum(increase(loyalty_bonus_lots_expired_total[1h]))", "accruals expired"),
            ],
            description="Payments whose accrual the back office cancelled, and accruals or "
            "restorations that expired unspent.",
        ),
    ],
)

DASHBOARDS = (SYSTEM, PIPELINE, BUSINESS)


def render_panel(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    targets = [
        {
            "datasource": DATASOURCE,
            "refId": chr(ord("A") + i),
            "expr": expr,
            "legendFormat": legend,
            "range": panel.kind == "timeseries",
            "instant": panel.kind == "stat",
        }
        for i, (expr, legend) in enumerate(panel.queries)
    ]
    rendered: dict[str, Any] = {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "targets": targets,
    }
    if panel.kind == "timeseries":
        rendered["options"] = {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    else:
        rendered["options"] = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "none",
            "textMode": "auto",
        }
    return rendered


def render(dashboard: Dashboard) -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    x = y = row_height = 0
    for panel_id, panel in enumerate(dashboard.panels, start=1):
        if x + panel.width > 24:
            x, y, row_height = 0, y + row_height, 0
        panels.append(render_panel(panel, panel_id, x, y))
        x += panel.width
        row_height = max(row_height, panel.height)
    return {
        "__inputs": [
            {
                "name": DS_INPUT,
                "label": "Prometheus",
                "description": "The Prometheus that scrapes the five services",
                "type": "datasource",
                "pluginId": "prometheus",
                "pluginName": "Prometheus",
            }
        ],
        "__requires": [
            {"type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.0.0"},
            {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
            *(
                {"type": "panel", "id": kind, "name": kind, "version": ""}
                for kind in sorted({p.kind for p in dashboard.panels})
            ),
        ],
        "id": None,
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": ["vip-credit"],
        "timezone": "browser",
        "editable": False,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "annotations": {"list": []},
        "templating": {"list": dashboard.variables},
        "panels": panels,
    }


def as_text(dashboard: Dashboard) -> str:
    return json.dumps(render(dashboard), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    check = "--check" in argv[1:]
    stale = []
    for dashboard in DASHBOARDS:
        path = OUT / dashboard.filename
        text = as_text(dashboard)
        if check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(path.name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print("out of date (run python deploy/grafana/build_dashboards.py):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
