"""Kubernetes manifests (issue 16 item 5): `kubectl kustomize` renders both overlays (and
production with the ServiceMonitor component), kubernetes-validate checks every built-in
object against the Kubernetes schema (strict: unknown fields fail), and the semantic
checks below cover what a schema cannot: probes, securityContext, settings, selectors."""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from deploy.platform_checks import (
    DEPLOY,
    IMAGE,
    keyturn_commands,
    require_tool,
    settings_from,
    settings_named_in,
    unknown_settings,
)
from keyturn.api.http.hardening import TrustedProxies

KUBERNETES = DEPLOY / "kubernetes"
# The oldest Kubernetes we claim (preStop `sleep` is on by default from 1.30) and the
# newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
CRD_KINDS = {"ServiceMonitor"}
TMP = "/tmp"  # noqa: S108  (the containers' mount path, no file is made)
Manifest = dict[str, Any]


def kustomize(directory: Path) -> list[Manifest]:
    kubectl = require_tool("kubectl", "`kubectl kustomize` of deploy/kubernetes")
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def with_servicemonitor(tmp_path: Path) -> Path:
    """A kustomization that adds the optional component to the production overlay
    (kustomize wants relative paths)."""
    root = tmp_path / "production-with-servicemonitor"
    root.mkdir()
    overlay = os.path.relpath(KUBERNETES / "overlays" / "production", root)
    component = os.path.relpath(KUBERNETES / "components" / "servicemonitor", root)
    (root / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources: [{overlay}]\ncomponents: [{component}]\n",
        encoding="utf-8",
    )
    return root


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Manifest]]:
    tmp = tmp_path_factory.mktemp("kustomize")
    return {
        "dev": kustomize(KUBERNETES / "overlays" / "dev"),
        "production": kustomize(KUBERNETES / "overlays" / "production"),
        "production+servicemonitor": kustomize(with_servicemonitor(tmp)),
    }


def one(manifests: list[Manifest], kind: str) -> Manifest:
    found = [item for item in manifests if item["kind"] == kind]
    assert len(found) == 1, f"{len(found)} objects of kind {kind}"
    return found[0]


def pod_specs(manifests: list[Manifest]) -> list[Manifest]:
    return [
        item["spec"]["template"]["spec"]
        for item in manifests
        if item["kind"] in ("Deployment", "Job")
    ]


def test_every_object_matches_the_kubernetes_schema(
    rendered: dict[str, list[Manifest]],
) -> None:
    checked = 0
    for name, manifests in rendered.items():
        for manifest in manifests:
            if manifest["kind"] in CRD_KINDS:
                continue
            for version in KUBERNETES_VERSIONS:
                try:
                    kubernetes_validate.validate(manifest, version, strict=True)
                except kubernetes_validate.ValidationError as exc:
                    pytest.fail(f"{name}: {manifest['kind']} on {version}: {exc.message}")
                checked += 1
    assert checked >= 2 * 20


def test_strict_validation_rejects_an_unknown_field(rendered: dict[str, list[Manifest]]) -> None:
    # The check above means something only if a misspelt field fails it.
    deployment = one(rendered["production"], "Deployment")
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 3}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


def test_the_servicemonitor_scrapes_the_metrics_port(rendered: dict[str, list[Manifest]]) -> None:
    manifests = rendered["production+servicemonitor"]
    monitor, service = one(manifests, "ServiceMonitor"), one(manifests, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["name"] == "keyturn"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    service_ports = {port["name"] for port in service["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] == "metrics"
        assert endpoint["port"] in service_ports
        assert endpoint["path"] == "/metrics"
    assert "ServiceMonitor" not in {item["kind"] for item in rendered["production"]}


def test_probes_use_the_named_http_port(rendered: dict[str, list[Manifest]]) -> None:
    for manifests in rendered.values():
        container = one(manifests, "Deployment")["spec"]["template"]["spec"]["containers"][0]
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        assert ports == {"http": 8000, "metrics": 9000}
        expected = {"startupProbe": "/healthz", "livenessProbe": "/healthz"}
        expected["readinessProbe"] = "/readyz"
        for probe, path in expected.items():
            assert container[probe]["httpGet"] == {"path": path, "port": "http"}, probe
        service_ports = {
            port["name"]: (port["port"], port["targetPort"])
            for port in one(manifests, "Service")["spec"]["ports"]
        }
        assert service_ports == {"http": (80, "http"), "metrics": (9000, "metrics")}


def test_every_container_runs_locked_down(rendered: dict[str, list[Manifest]]) -> None:
    for manifests in rendered.values():
        for pod in pod_specs(manifests):
            assert pod["automountServiceAccountToken"] is False
            assert pod["securityContext"]["runAsNonRoot"] is True
            assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
            mounts_of = {volume["name"]: volume for volume in pod["volumes"]}
            for container in pod["containers"]:
                context = container["securityContext"]
                assert context["runAsNonRoot"] is True
                assert context["runAsUser"] == 10001
                assert context["readOnlyRootFilesystem"] is True
                assert context["allowPrivilegeEscalation"] is False
                assert context["capabilities"] == {"drop": ["ALL"]}
                assert context["seccompProfile"] == {"type": "RuntimeDefault"}
                tmp = [m for m in container["volumeMounts"] if m["mountPath"] == TMP]
                assert tmp
                assert "emptyDir" in mounts_of[tmp[0]["name"]]
                assert container["image"] == IMAGE
                assert "memory" in container["resources"]["limits"]


def test_every_keyturn_setting_is_real(rendered: dict[str, list[Manifest]]) -> None:
    for manifests in rendered.values():
        names = set(one(manifests, "ConfigMap")["data"])
        for pod in pod_specs(manifests):
            for container in pod["containers"]:
                names |= {variable["name"] for variable in container.get("env", [])}
        assert "KEYTURN_HOST" in names
        assert not unknown_settings(names)
    for text in (path.read_text(encoding="utf-8") for path in KUBERNETES.rglob("*.yaml")):
        assert not unknown_settings(settings_named_in(text))


def test_secret_files_match_the_mounted_secret(rendered: dict[str, list[Manifest]]) -> None:
    dev_secret = one(rendered["dev"], "Secret")
    for name, manifests in rendered.items():
        for pod in pod_specs(manifests):
            volumes = {volume["name"]: volume for volume in pod["volumes"]}
            container = pod["containers"][0]
            mount = next(m for m in container["volumeMounts"] if m["name"] == "secrets")
            secret_name = volumes["secrets"]["secret"]["secretName"]
            files = [e["value"] for e in container["env"] if e["name"].endswith("_FILE")]
            assert files, name
            for path in files:
                assert path.startswith(mount["mountPath"] + "/"), path
                if name == "dev":
                    # The generated Secret (hash-suffixed) is the one referenced.
                    assert secret_name == dev_secret["metadata"]["name"]
                    assert path.rsplit("/", 1)[1] in dev_secret["data"], path
                else:
                    # Production references a Secret created outside kustomize.
                    assert secret_name == "keyturn-secrets"
    assert not [item for item in rendered["production"] if item["kind"] == "Secret"]


def test_selectors_match_the_pods(rendered: dict[str, list[Manifest]]) -> None:
    for manifests in rendered.values():
        deployment, service = one(manifests, "Deployment"), one(manifests, "Service")
        job = one(manifests, "Job")
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels.items()
        assert service["spec"]["selector"].items() <= labels.items()
        # The migration Job's pods must not join the Service or the Deployment.
        job_labels = job["spec"]["template"]["metadata"]["labels"]
        assert not selector.items() <= job_labels.items()
        policy = one(manifests, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"]
        assert policy.items() <= labels.items()
        assert policy.items() <= job_labels.items()
        for budget in (item for item in manifests if item["kind"] == "PodDisruptionBudget"):
            assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
        job_container = job["spec"]["template"]["spec"]["containers"][0]
        server = deployment["spec"]["template"]["spec"]["containers"][0]
        assert job_container["image"] == server["image"]
        assert job_container["args"] == ["migrate"]
        assert server["args"] == ["serve"]


def test_overlays_differ_as_documented(rendered: dict[str, list[Manifest]]) -> None:
    dev, production = rendered["dev"], rendered["production"]
    assert one(dev, "Deployment")["spec"]["replicas"] == 1
    assert not [item for item in dev if item["kind"] == "HorizontalPodAutoscaler"]
    assert one(dev, "ConfigMap")["data"]["KEYTURN_ENV"] == "dev"
    hpa = one(production, "HorizontalPodAutoscaler")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 10)
    assert hpa["scaleTargetRef"]["name"] == one(production, "Deployment")["metadata"]["name"]
    assert one(production, "PodDisruptionBudget")["spec"]["minAvailable"] == 2
    config = one(production, "ConfigMap")["data"]
    assert config["KEYTURN_ENV"] == "production"
    assert config["KEYTURN_ISSUER"].startswith("https://")
    assert config["KEYTURN_TRUSTED_PROXIES"]
    deployment = one(production, "Deployment")["spec"]
    # The HPA owns the count; an applied `replicas` would fight it.
    assert "replicas" not in deployment
    assert deployment["template"]["spec"]["terminationGracePeriodSeconds"] == 40
    ingress = one(production, "Ingress")["spec"]
    assert ingress["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"] == {"name": "http"}


# What an operator puts into the production Secret (created outside kustomize).
PRODUCTION_SECRETS = {
    "secret-key": "k" * 43,
    "database-url": "postgresql+asyncpg://keyturn:pw@db.internal:5432/keyturn",
    "redis-url": "redis://cache.internal:6379/0",
    "smtp-url": "smtp://mailer:pw@smtp.internal:587",
}


@pytest.mark.parametrize("overlay", ["dev", "production"])
def test_the_settings_load_as_keyturn_reads_them(
    rendered: dict[str, list[Manifest]],
    overlay: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    manifests = rendered[overlay]
    if overlay == "dev":
        data = one(manifests, "Secret")["data"]
        secrets = {key: base64.b64decode(value).decode() for key, value in data.items()}
    else:
        secrets = PRODUCTION_SECRETS
    config = one(manifests, "ConfigMap")["data"]
    for index, pod in enumerate(pod_specs(manifests)):
        container = pod["containers"][0]
        assert container["args"][0] in keyturn_commands()
        environment = {**config, **{e["name"]: e["value"] for e in container["env"]}}
        workdir = tmp_path / str(index)
        workdir.mkdir()
        # load_settings runs the production checks: an http issuer or a missing SMTP URL
        # in the production overlay would raise here.
        settings = settings_from(environment, secrets, workdir, monkeypatch)
        assert settings.env == overlay
        assert settings.database_url.startswith("postgresql+asyncpg://")
        TrustedProxies(settings.trusted_proxies)


def test_the_network_policy_admits_only_what_keyturn_needs(
    rendered: dict[str, list[Manifest]],
) -> None:
    spec = one(rendered["production"], "NetworkPolicy")["spec"]
    assert sorted(spec["policyTypes"]) == ["Egress", "Ingress"]
    sources = {
        rule["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]: {
            port["port"] for port in rule["ports"]
        }
        for rule in spec["ingress"]
    }
    # The public port from the ingress controller, metrics from monitoring only.
    assert sources == {"ingress-nginx": {8000}, "monitoring": {9000}}
    egress = {port["port"] for rule in spec["egress"] for port in rule["ports"]}
    assert {5432, 6379, 587, 53} <= egress
