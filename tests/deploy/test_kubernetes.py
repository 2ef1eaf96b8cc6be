"""deploy/k8s: the manifests parse, every pod is probed, limited, non-root and read-only, the
autoscalers stop at the partition count, secrets are referenced and never committed."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from deployfiles import (
    BACKENDS,
    REPO,
    SERVICES,
    Service,
    check_environment,
    load_yaml,
    load_yaml_documents,
    settings_names,
)

from servicekit.settings import ServiceSettings

K8S = REPO / "deploy" / "k8s"
BASE = K8S / "base"
PRODUCTION = K8S / "overlays" / "production"
SECRET_NAME = "vip-credit-secrets"
#: what only the Secret may hold
SECRET_KEYS = ("DATABASE_URL", "OPERATOR_TOKEN", "BACKOFFICE_SESSION_SECRET")
SHARED_CONFIG = "vip-credit-shared"


def base_documents() -> list[dict[str, Any]]:
    kustomization = load_yaml(BASE / "kustomization.yaml")
    docs: list[dict[str, Any]] = []
    for resource in kustomization["resources"]:
        path = BASE / resource
        assert path.is_file(), f"base kustomization lists {resource}, which does not exist"
        docs += load_yaml_documents(path)
    return docs


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    return base_documents()


def of_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def shared_config() -> dict[str, str]:
    kustomization = load_yaml(BASE / "kustomization.yaml")
    generators = {g["name"]: g for g in kustomization["configMapGenerator"]}
    literals = generators[SHARED_CONFIG]["literals"]
    return dict(item.split("=", 1) for item in literals)


def pod_specs(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
            yield f"{doc['kind']} {doc['metadata']['name']}", doc["spec"]["template"]["spec"]


def test_every_manifest_file_parses_and_every_base_file_is_in_the_kustomization() -> None:
    for path in sorted(K8S.rglob("*.yaml")):
        for doc in load_yaml_documents(path):
            assert "kind" in doc and "apiVersion" in doc, f"{path}: not a Kubernetes object"
    listed = set(load_yaml(BASE / "kustomization.yaml")["resources"])
    on_disk = {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml"}
    assert on_disk == listed, f"base files not in resources: {sorted(on_disk - listed)}"


def test_each_service_has_a_deployment_service_autoscaler_and_migration_job(
    docs: list[dict[str, Any]], backend: Service
) -> None:
    assert backend.name in of_kind(docs, "Deployment")
    assert backend.name in of_kind(docs, "Service")
    assert backend.name in of_kind(docs, "HorizontalPodAutoscaler")
    assert f"{backend.name}-migrate" in of_kind(docs, "Job")


def test_the_back_office_has_a_deployment_service_and_budget_and_no_migration(
    docs: list[dict[str, Any]],
) -> None:
    deployment = of_kind(docs, "Deployment")["backoffice"]
    assert deployment["spec"]["replicas"] >= 2, "a rolling update keeps pages served"
    assert "backoffice" in of_kind(docs, "Service")
    assert "backoffice" in of_kind(docs, "PodDisruptionBudget")
    assert "backoffice-migrate" not in of_kind(docs, "Job")
    assert "backoffice" not in of_kind(docs, "HorizontalPodAutoscaler")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = environment(container)
    assert env["BACKOFFICE_GATEWAY_URL"] == "http://pos-gateway:8080"
    assert env["BACKOFFICE_COOKIE_SECURE"] == "true"
    assert "KAFKA_BOOTSTRAP_SERVERS" not in env


def test_every_container_has_probes_on_the_health_endpoints(
    docs: list[dict[str, Any]], service: Service
) -> None:
    deployment = of_kind(docs, "Deployment")[service.name]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": service.port}
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    # start-up migrates and creates topics before the port opens: liveness must wait for it
    assert container["startupProbe"]["httpGet"]["path"] == "/health/live"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] in ("http", service.port)
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(service.port)
    assert annotations["prometheus.io/path"] == "/metrics"


def test_every_pod_is_limited_non_root_and_read_only_with_a_writable_tmp(
    docs: list[dict[str, Any]],
) -> None:
    problems = []
    for where, spec in pod_specs(docs):
        pod_security = spec.get("securityContext", {})
        if spec.get("enableServiceLinks") is not False:
            problems.append(f"{where}: enableServiceLinks must be false (<NAME>_PORT clashes)")
        if spec.get("automountServiceAccountToken") is not False:
            problems.append(f"{where}: no service-account token is needed")
        for container in spec["containers"] + spec.get("initContainers", []):
            name = f"{where}/{container['name']}"
            security = container.get("securityContext", {})
            non_root = security.get("runAsNonRoot", pod_security.get("runAsNonRoot"))
            user = security.get("runAsUser", pod_security.get("runAsUser"))
            if non_root is not True or user in (None, 0):
                problems.append(f"{name}: runAsNonRoot true and a non-zero runAsUser")
            if security.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{name}: readOnlyRootFilesystem must be true")
            if security.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{name}: allowPrivilegeEscalation must be false")
            if "ALL" not in security.get("capabilities", {}).get("drop", []):
                problems.append(f"{name}: capabilities must drop ALL")
            resources = container.get("resources", {})
            for kind in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    if not resources.get(kind, {}).get(resource):
                        problems.append(f"{name}: resources.{kind}.{resource} missing")
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            volumes = {v["name"]: v for v in spec.get("volumes", [])}
            if "emptyDir" not in volumes.get(mounts.get("/tmp", ""), {}):
                problems.append(f"{name}: /tmp must be an emptyDir volume")
    assert not problems, "\n".join(problems)


def environment(container: dict[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        name = source["configMapRef"]["name"]
        assert name == SHARED_CONFIG, f"unexpected envFrom {name}"
        env.update(shared_config())
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
        elif "configMapKeyRef" in item["valueFrom"]:
            ref = item["valueFrom"]["configMapKeyRef"]
            assert ref["name"] == SHARED_CONFIG, f"unexpected ConfigMap {ref['name']}"
            env[item["name"]] = shared_config()[ref["key"]]
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = f"<secret {ref['name']}/{ref['key']}>"
    return env


def test_deployments_and_jobs_give_each_service_exactly_the_variables_its_settings_read(
    docs: list[dict[str, Any]], service: Service
) -> None:
    names = settings_names(service)
    deployment = of_kind(docs, "Deployment")[service.name]
    checked = [("Deployment", deployment)]
    if service.backend:
        checked.append(("migration Job", of_kind(docs, "Job")[f"{service.name}-migrate"]))
    problems = []
    for where, doc in checked:
        (container,) = doc["spec"]["template"]["spec"]["containers"]
        env = environment(container)
        problems += check_environment(f"{where} {service.name}", service, names, env)
    assert not problems, "\n".join(problems)


def test_the_migration_job_runs_the_migration_entry_point_in_the_service_image(
    docs: list[dict[str, Any]], backend: Service
) -> None:
    service = backend
    job = of_kind(docs, "Job")[f"{service.name}-migrate"]
    spec = job["spec"]["template"]["spec"]
    assert spec["restartPolicy"] in ("Never", "OnFailure")
    (container,) = spec["containers"]
    assert container["command"] == ["python", "/opt/deploy/migrate.py", service.package]
    deployment = of_kind(docs, "Deployment")[service.name]
    assert container["image"] == deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert job["spec"].get("backoffLimit") is not None
    labels = job["spec"]["template"]["metadata"]["labels"]
    service_selector = of_kind(docs, "Service")[service.name]["spec"]["selector"]
    assert not service_selector.items() <= labels.items(), "the Service must not select Job pods"


def test_services_select_the_pods_of_their_deployment(
    docs: list[dict[str, Any]], service: Service
) -> None:
    deployment = of_kind(docs, "Deployment")[service.name]
    selector = of_kind(docs, "Service")[service.name]["spec"]["selector"]
    template_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= template_labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= template_labels.items()
    ports = of_kind(docs, "Service")[service.name]["spec"]["ports"]
    assert [(p["port"], p["targetPort"]) for p in ports] == [(service.port, "http")]


def test_autoscalers_never_exceed_the_topic_partitions(docs: list[dict[str, Any]]) -> None:
    partitions = int(shared_config()["KAFKA_TOPIC_PARTITIONS"])
    assert partitions == ServiceSettings.model_fields["kafka_topic_partitions"].default, (
        "the ConfigMap's KAFKA_TOPIC_PARTITIONS differs from servicekit's default"
    )
    autoscalers = of_kind(docs, "HorizontalPodAutoscaler")
    deployments = of_kind(docs, "Deployment")
    for name, hpa in autoscalers.items():
        spec = hpa["spec"]
        assert spec["maxReplicas"] == partitions, f"{name}: maxReplicas != {partitions}"
        assert 1 <= spec["minReplicas"] <= spec["maxReplicas"]
        target = spec["scaleTargetRef"]
        assert target["kind"] == "Deployment" and target["name"] in deployments
        assert "replicas" not in deployments[target["name"]]["spec"], (
            f"{name}: the autoscaler owns the replica count; drop spec.replicas"
        )
    assert set(autoscalers) == {s.name for s in BACKENDS}


def test_secrets_are_referenced_by_name_and_no_secret_value_is_committed(
    docs: list[dict[str, Any]],
) -> None:
    for path in sorted(K8S.rglob("*.yaml")):
        for doc in load_yaml_documents(path):
            assert doc["kind"] != "Secret", f"{path}: a Secret is committed"
            assert "secretGenerator" not in doc, f"{path}: secretGenerator commits values"
    config = shared_config()
    assert not set(SECRET_KEYS) & set(config)
    database_secrets: dict[str, set[str]] = {}
    for where, spec in pod_specs(docs):
        for container in spec["containers"]:
            service = next(s for s in SERVICES if container["image"].endswith(f"/{s.name}"))
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if item["name"] in ("OPERATOR_TOKEN", "BACKOFFICE_SESSION_SECRET"):
                    assert ref == {"name": SECRET_NAME, "key": item["name"]}, (
                        f"{where}: {item['name']} must come from Secret {SECRET_NAME}"
                    )
                if item["name"].endswith("DATABASE_URL"):
                    # one database secret per service, never the shared server URL
                    assert item["name"] == f"{service.prefix}DATABASE_URL", where
                    assert ref == {"name": f"{service.name}-database", "key": "url"}, where
                    database_secrets.setdefault(service.name, set()).add(ref["name"])
    assert database_secrets == {s.name: {f"{s.name}-database"} for s in BACKENDS}
    text = "\n".join(p.read_text(encoding="utf-8") for p in K8S.rglob("*.yaml"))
    assert not re.search(r"postgres(ql)?://[^\s'\"]*:[^\s'\"@]+@(?!HOST)", text), (
        "a database URL with a password is committed"
    )


def overlay_targets_exist(overlay: Path, docs: list[dict[str, Any]]) -> Iterator[str]:
    kustomization = load_yaml(overlay / "kustomization.yaml")
    for resource in kustomization["resources"]:
        if not (overlay / resource).exists():
            yield f"{overlay.name}: resource {resource} does not exist"
    names_by_kind: dict[str, set[str]] = {}
    for doc in docs:
        names_by_kind.setdefault(doc["kind"], set()).add(doc["metadata"]["name"])
    for patch in kustomization.get("patches", []):
        target = patch["target"]
        candidates = names_by_kind.get(target["kind"], set())
        pattern = re.compile(target.get("name", ".*"))
        if not any(pattern.fullmatch(n) for n in candidates):
            yield f"{overlay.name}: patch target {target} matches nothing in the base"
    base_images = set()
    for _where, spec in pod_specs(docs):
        base_images |= {c["image"].split(":")[0] for c in spec["containers"]}
    for image in kustomization.get("images", []):
        if image["name"] not in base_images:
            yield f"{overlay.name}: image {image['name']} is used by no container"
    for generator in kustomization.get("configMapGenerator", []):
        if generator.get("behavior") == "merge" and generator["name"] != SHARED_CONFIG:
            yield f"{overlay.name}: merges into unknown ConfigMap {generator['name']}"
        for literal in generator.get("literals", []):
            key = literal.split("=", 1)[0]
            if key in SECRET_KEYS:
                yield f"{overlay.name}: {key} belongs in the Secret, not the ConfigMap"


def test_the_production_overlay_builds_on_the_base_and_patches_what_exists(
    docs: list[dict[str, Any]],
) -> None:
    assert (PRODUCTION / "kustomization.yaml").is_file()
    kustomization = load_yaml(PRODUCTION / "kustomization.yaml")
    assert "../../base" in kustomization["resources"]
    assert kustomization["namespace"]
    problems = list(overlay_targets_exist(PRODUCTION, docs))
    assert not problems, "\n".join(problems)
    for patch in kustomization.get("patches", []):
        if patch["target"]["kind"] == "HorizontalPodAutoscaler":
            for op in load_yaml_documents_from_text(patch["patch"]):
                if op["path"] == "/spec/maxReplicas":
                    assert op["value"] == int(shared_config()["KAFKA_TOPIC_PARTITIONS"])
                if op["path"] == "/spec/minReplicas":
                    assert op["value"] <= int(shared_config()["KAFKA_TOPIC_PARTITIONS"])


def load_yaml_documents_from_text(text: str) -> list[dict[str, Any]]:
    loaded = yaml.safe_load(text)
    return list(loaded) if isinstance(loaded, list) else [loaded]
