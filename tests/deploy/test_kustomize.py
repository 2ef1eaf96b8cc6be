"""deploy/k8s as kustomize renders it: the base and the production overlay build, every object
of a built-in kind is valid against the Kubernetes API schema (kubernetes-validate, strict:
unknown fields are errors), the Prometheus Operator objects match what they monitor, the
PrometheusRule is exactly deploy/prometheus/alerts.yml, and the Ingress serves the gateway
over TLS only."""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from deployfiles import REPO, SERVICES, load_yaml

K8S = REPO / "deploy" / "k8s"
PROMETHEUS = REPO / "deploy" / "prometheus"
#: the oldest Kubernetes the manifests are for (topologySpreadConstraints.matchLabelKeys)
KUBERNETES_VERSION = "1.31.0"
MONITORING_API = "monitoring.coreos.com/v1"

#: What the Prometheus Operator's CRDs require of the two objects we ship (a subset of their
#: published schemas, which are not available offline): the fields the operator reads.
SERVICE_MONITOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "jobLabel": {"type": "string"},
                "selector": {
                    "type": "object",
                    "required": ["matchLabels"],
                    "properties": {
                        "matchLabels": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                        }
                    },
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["port"],
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "interval": {"type": "string", "pattern": "^[0-9]+[smh]$"},
                            "scrapeTimeout": {"type": "string", "pattern": "^[0-9]+[smh]$"},
                        },
                    },
                },
            },
        }
    },
}
PROMETHEUS_RULE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "spec": {
            "type": "object",
            "required": ["groups"],
            "additionalProperties": False,
            "properties": {
                "groups": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["name", "rules"],
                        "properties": {
                            "name": {"type": "string"},
                            "rules": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["expr"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "alert": {"type": "string"},
                                        "record": {"type": "string"},
                                        "expr": {"type": "string"},
                                        "for": {"type": "string"},
                                        "labels": {"type": "object"},
                                        "annotations": {"type": "object"},
                                    },
                                },
                            },
                        },
                    },
                }
            },
        }
    },
}


def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        pytest.fail(
            "kubectl is not installed: it renders deploy/k8s with its built-in "
            "kustomize (kubectl kustomize)",
            pytrace=False,
        )
    return path


def render(folder: Path) -> list[dict[str, Any]]:
    done = subprocess.run(
        [kubectl(), "kustomize", str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"kubectl kustomize {folder} failed:\n{done.stderr}"
    return [d for d in yaml.safe_load_all(done.stdout) if d]


@pytest.fixture(scope="module")
def base() -> list[dict[str, Any]]:
    return render(K8S / "base")


@pytest.fixture(scope="module")
def production() -> list[dict[str, Any]]:
    return render(K8S / "overlays" / "production")


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def schema_problems(docs: list[dict[str, Any]]) -> list[str]:
    problems = []
    for doc in docs:
        where = f"{doc['kind']} {doc['metadata']['name']}"
        if doc["apiVersion"] == MONITORING_API:
            schema = {
                "ServiceMonitor": SERVICE_MONITOR_SCHEMA,
                "PrometheusRule": PROMETHEUS_RULE_SCHEMA,
            }[doc["kind"]]
            try:
                jsonschema.validate(doc, schema)
            except jsonschema.ValidationError as exc:
                problems.append(f"{where}: {exc.message}")
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{where}: {exc.message} at {list(exc.path)}")
    return problems


def test_the_base_and_the_production_overlay_build_with_every_kind_expected(
    base: list[dict[str, Any]], production: list[dict[str, Any]]
) -> None:
    kinds = {d["kind"] for d in production}
    assert {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Job",
        "ConfigMap",
        "NetworkPolicy",
        "Ingress",
        "Namespace",
        "ServiceMonitor",
        "PrometheusRule",
    } <= kinds
    # the base needs no CRD: it applies to a cluster without the Prometheus Operator
    assert not [d for d in base if d["apiVersion"] == MONITORING_API]
    assert {d["metadata"].get("namespace") for d in production if d["kind"] != "Namespace"} == {
        "vip-credit"
    }


def test_every_rendered_object_is_valid_against_its_schema(
    base: list[dict[str, Any]], production: list[dict[str, Any]]
) -> None:
    assert schema_problems(base) == []
    assert schema_problems(production) == []


def test_the_schema_check_catches_a_misspelt_field(production: list[dict[str, Any]]) -> None:
    deployment = copy.deepcopy(of_kind(production, "Deployment")[0])
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    monitor = copy.deepcopy(of_kind(production, "ServiceMonitor")[0])
    monitor["spec"]["endpoints"][0]["intervall"] = "15s"
    assert len(schema_problems([deployment, monitor])) == 2


def test_the_prometheus_rule_is_the_alerts_file_and_promtool_accepts_it(
    production: list[dict[str, Any]], tmp_path: Path
) -> None:
    [rule] = of_kind(production, "PrometheusRule")
    alerts = load_yaml(PROMETHEUS / "alerts.yml")
    assert rule["spec"]["groups"] == alerts["groups"]
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed (scripts/bootstrap.sh installs it)"
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    done = subprocess.run(
        [promtool, "check", "rules", str(rules)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    generated = subprocess.run(
        [sys.executable, str(PROMETHEUS / "build_k8s_rules.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr


def test_the_service_monitor_scrapes_every_service_as_a_job_named_after_it(
    production: list[dict[str, Any]],
) -> None:
    [monitor] = of_kind(production, "ServiceMonitor")
    wanted = monitor["spec"]["selector"]["matchLabels"]
    selected = [
        s
        for s in of_kind(production, "Service")
        if wanted.items() <= s["metadata"]["labels"].items()
    ]
    job_label = monitor["spec"]["jobLabel"]
    assert sorted(s["metadata"]["labels"][job_label] for s in selected) == sorted(
        s.name for s in SERVICES
    )
    ports = {e["port"] for e in monitor["spec"]["endpoints"]}
    for service in selected:
        assert ports <= {p["name"] for p in service["spec"]["ports"]}
    assert [e["path"] for e in monitor["spec"]["endpoints"]] == ["/metrics"]


def test_the_ingress_serves_only_the_gateway_and_only_over_tls(
    production: list[dict[str, Any]],
) -> None:
    [ingress] = of_kind(production, "Ingress")
    spec = ingress["spec"]
    tls_hosts = {h for entry in spec["tls"] for h in entry["hosts"]}
    assert all(entry["secretName"] for entry in spec["tls"])
    services = {s["metadata"]["name"]: s for s in of_kind(production, "Service")}
    for rule in spec["rules"]:
        assert rule["host"] in tls_hosts, f"{rule['host']} has no certificate"
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend["name"] == "pos-gateway"
            assert backend["port"]["name"] in {
                p["name"] for p in services["pos-gateway"]["spec"]["ports"]
            }
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/force-ssl-redirect"] == "true"
    assert "example.com" not in str(spec)  # the overlay names its public host
