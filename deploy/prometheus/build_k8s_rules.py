"""Writes deploy/k8s/monitoring/prometheusrule.yaml from deploy/prometheus/alerts.yml, so the
alerts reach a cluster run by the Prometheus Operator exactly as promtool tests them here.

    python deploy/prometheus/build_k8s_rules.py          # rewrite the PrometheusRule
    python deploy/prometheus/build_k8s_rules.py --check  # exit 1 when it is out of date

alerts.yml stays the one source (Prometheus without the operator reads it as it is, and
alerts_test.yml tests it); tests/deploy holds the committed PrometheusRule to this script.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
ALERTS = HERE / "alerts.yml"
OUT = HERE.parent / "k8s" / "monitoring" / "prometheusrule.yaml"

HEADER = """\
# GENERATED from deploy/prometheus/alerts.yml by deploy/prometheus/build_k8s_rules.py: edit the
# alerts there, then run the script (tests/deploy fails when this file is out of date).
# The Prometheus Operator loads it when its ruleSelector matches these labels (kube-prometheus-
# stack: add `release: <its release name>` in your overlay).
"""


def prometheus_rule(alerts: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "vip-credit-alerts",
            "labels": {
                "app.kubernetes.io/name": "vip-credit",
                "app.kubernetes.io/component": "monitoring",
            },
        },
        "spec": {"groups": alerts["groups"]},
    }


def _block_strings(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # multi-line PromQL stays readable as a block, as in alerts.yml
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def as_text() -> str:
    alerts = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    dumper = type("Dumper", (yaml.SafeDumper,), {})
    dumper.add_representer(str, _block_strings)
    body = yaml.dump(
        prometheus_rule(alerts), Dumper=dumper, sort_keys=False, width=100, allow_unicode=True
    )
    return HEADER + body


def main(argv: list[str]) -> int:
    text = as_text()
    if "--check" in argv[1:]:
        if not OUT.is_file() or OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT.name} is out of date: run python deploy/prometheus/build_k8s_rules.py")
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
