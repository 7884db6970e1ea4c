"""The Helm chart, rendered by the real Helm engine and validated against Kubernetes schemas."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import pytest
import yaml
from kubernetes_validate import utils as kubernetes_schemas
from sqlalchemy.ext.asyncio import create_async_engine

from app.db.store import current_revision, head_revision
from app.lib.crypto import generate_signing_key_pem
from app.manifest.loading import load_manifest
from tests.conftest import TEST_AUDIT_KEY, TEST_JWT_SECRET
from tests.integration.chart_support import (
    CHART,
    ROOT,
    by_kind,
    declared_kube_version,
    env_of,
    merged,
    named,
    pod_spec,
    pod_specs,
    production_values,
    render,
)
from tests.servers import DatabaseServer

__all__ = ()

SECRET_SETTINGS = frozenset(
    {
        "LETHE_DATABASE_URL",
        "LETHE_JWT_SECRET",
        "LETHE_JWT_PUBLIC_KEY",
        "LETHE_AUDIT_KEY",
        "LETHE_AUDIT_SIGNING_KEY",
        "LETHE_AUDIT_CHAIN_KEY",
        "LETHE_ARTIFACT_KEY",
        "LETHE_ARTIFACT_S3_ACCESS_KEY_ID",
        "LETHE_ARTIFACT_S3_SECRET_ACCESS_KEY",
    }
)
SECRETS_DIR = "/etc/lethe/secrets"

# kubernetes-validate ships the core API schemas only; the fields of the Prometheus Operator's
# ServiceMonitor (monitoring.coreos.com/v1) that the chart uses are checked against this one.
SERVICE_MONITOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": {
                    "type": "object",
                    "properties": {
                        "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}
                    },
                },
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "any": {"type": "boolean"},
                        "matchNames": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                            "scrapeTimeout": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                        },
                    },
                },
            },
        },
    },
}


VALUE_SETS = {"default": {}, "production": production_values()}


@pytest.fixture(scope="module", params=sorted(VALUE_SETS))
def rendered(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    """The chart rendered with the default values and with the production-like file."""
    return render(VALUE_SETS[request.param])


@pytest.mark.parametrize("values_name", sorted(VALUE_SETS))
def test_helm_lint_is_clean(values_name: str) -> None:
    report = helm.lint(
        CHART, VALUE_SETS[values_name], strict=True, kube_version=f"v{declared_kube_version()}"
    )
    assert report["errors"] == []
    findings = [m for m in report["messages"] if m["error"] != "icon is recommended"]
    assert findings == []


def test_chart_declares_a_version_the_validator_knows() -> None:
    version = declared_kube_version()
    minor = ".".join(version.split(".")[:2])
    assert minor in {".".join(v.split(".")[:2]) for v in kubernetes_schemas.all_versions()}


def test_every_rendered_object_validates_against_the_declared_kubernetes(
    rendered: list[dict[str, Any]],
) -> None:
    version = declared_kube_version()
    for obj in rendered:
        if obj["kind"] == "ServiceMonitor":
            jsonschema.validate(obj, SERVICE_MONITOR_SCHEMA)
            continue
        # strict: unknown fields (a typo in a template) are errors, not silently dropped.
        assert kubernetes_schemas.validate(obj, version, strict=True)
        assert kubernetes_schemas.validate(obj, kubernetes_schemas.latest_version(), strict=True)


def test_the_expected_objects_are_rendered() -> None:
    default = {(o["kind"], o["metadata"]["name"]) for o in render()}
    assert default == {
        ("ConfigMap", "lethe"),
        ("Deployment", "lethe"),
        ("Service", "lethe"),
        ("ServiceAccount", "lethe"),
        ("Job", "lethe-migrate"),
        ("NetworkPolicy", "lethe"),
        ("PodDisruptionBudget", "lethe"),
    }
    production = {(o["kind"], o["metadata"]["name"]) for o in render(production_values())}
    assert production == default | {
        ("ConfigMap", "lethe-manifests"),
        ("Deployment", "lethe-worker"),
        ("Service", "lethe-worker"),
        ("HorizontalPodAutoscaler", "lethe"),
        ("PodDisruptionBudget", "lethe-worker"),
        ("CronJob", "lethe-retention"),
        ("ServiceMonitor", "lethe"),
        ("PersistentVolumeClaim", "lethe-data"),
        ("Ingress", "lethe"),
    }


def test_probes_hit_the_real_paths_on_the_served_port(rendered: list[dict[str, Any]]) -> None:
    exposed = re.search(r"^EXPOSE (\d+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert exposed
    for deployment in by_kind(rendered, "Deployment"):
        (container,) = pod_spec(deployment)["containers"]
        assert container["command"] == ["lethe"]
        assert container["args"][0] == "run"
        port = container["args"][container["args"].index("--port") + 1]
        assert port == exposed.group(1)
        assert container["ports"] == [{"name": "http", "containerPort": int(port), "protocol": "TCP"}]
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert container["resources"]["requests"]
        assert container["resources"]["limits"]["memory"]
    (service,) = [s for s in by_kind(rendered, "Service") if s["spec"].get("clusterIP") != "None"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "api"


def test_every_pod_runs_as_the_image_user_without_privileges(
    rendered: list[dict[str, Any]],
) -> None:
    image_user = re.search(r"^USER (\d+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert image_user
    for where, spec in pod_specs(rendered):
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["runAsUser"] == int(image_user.group(1)), where
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert spec["automountServiceAccountToken"] is False, where
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            volumes = {v["name"]: v for v in spec["volumes"]}
            tmp = mounts["/tmp"]  # noqa: S108 (the container's /tmp, an emptyDir)
            assert "emptyDir" in volumes[tmp], f"{where}: /tmp must be writable"


def test_secrets_never_appear_inline(rendered: list[dict[str, Any]]) -> None:
    assert by_kind(rendered, "Secret") == [], "the chart must reference, never create, secrets"
    for config_map in by_kind(rendered, "ConfigMap"):
        assert not set(config_map["data"]) & SECRET_SETTINGS
    for where, spec in pod_specs(rendered):
        volumes = {v["name"]: v for v in spec["volumes"]}
        for container in spec["containers"]:
            mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
            assert mounts[SECRETS_DIR]["readOnly"] is True
            secret = volumes[mounts[SECRETS_DIR]["name"]]["secret"]
            assert secret["defaultMode"] & 0o007 == 0, f"{where}: secret files readable by all"
            mounted = {item["path"] for item in secret["items"]}
            for name, entry in env_of(container).items():
                if name in SECRET_SETTINGS:
                    assert "value" not in entry, f"{where}: {name} given inline"
                    assert set(entry["valueFrom"]) == {"secretKeyRef"}
                if name.removesuffix("_FILE") in SECRET_SETTINGS and name.endswith("_FILE"):
                    directory, _, file = entry["value"].rpartition("/")
                    assert directory == SECRETS_DIR
                    assert file in mounted, f"{where}: {name} names a file that is not mounted"
                if "valueFrom" in entry:
                    assert set(entry["valueFrom"]) <= {"secretKeyRef", "configMapKeyRef", "fieldRef"}
            assert "LETHE_AUDIT_KEY_FILE" in env_of(container), where


def test_secrets_come_from_the_named_existing_secret() -> None:
    objects = render(production_values())
    for where, spec in pod_specs(objects):
        (secret,) = [v["secret"] for v in spec["volumes"] if "secret" in v]
        assert secret["secretName"] == "lethe-secrets", where
    (api,) = [d for d in by_kind(objects, "Deployment") if d["metadata"]["name"] == "lethe"]
    shop = env_of(pod_spec(api)["containers"][0])["LETHE_TARGET_SHOP_URL"]
    assert shop["valueFrom"] == {"secretKeyRef": {"name": "shop-database", "key": "url"}}


@pytest.mark.parametrize(
    "values",
    [
        {"extraEnv": [{"name": "LETHE_DATABASE_URL", "value": "postgresql+asyncpg://u:p@db/x"}]},
        {
            "config": {
                "jwtAudience": "a",
                "jwtIssuer": "i",
                "jwtAlgorithms": "HS256",
                "logLevel": "INFO",
                "extra": {"LETHE_AUDIT_KEY": "not-here"},
            }
        },
        {
            "secrets": {
                "existingSecret": "x",
                "keys": {"databaseUrl": "d", "jwtSecret": "j", "auditKey": "", "artifactKey": "a"},
            }
        },
        {
            "securityContext": {
                "runAsNonRoot": True,
                "readOnlyRootFilesystem": False,
                "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"]},
            }
        },
        {"podSecurityContext": {"runAsNonRoot": False}},
        {"replicaCount": 3},
    ],
    ids=["inline-secret-env", "secret-in-configmap", "no-audit-key", "writable-root", "root", "typo"],
)
def test_schema_rejects_unsafe_or_mistyped_values(values: dict[str, Any]) -> None:
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmValuesError):
        chart.validate_schema(values)


def test_hook_job_migrates_the_store_before_install_and_upgrade(
    rendered: list[dict[str, Any]],
) -> None:
    job = named(rendered, "Job", "lethe-migrate")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
    (container,) = pod_spec(job)["containers"]
    assert [*container["command"], *container["args"]] == ["lethe", "database", "upgrade", "--no-prompt"]
    assert "envFrom" not in container or all(
        "configMapRef" not in source for source in container["envFrom"]
    ), "the hook runs before the release's ConfigMap exists"
    assert env_of(container)["LETHE_WORKERS_ENABLED"]["value"] == "false"


@pytest.fixture(params=["sqlite", "postgresql"])
async def empty_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An unmigrated service store: an SQLite file, and a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    server: DatabaseServer = request.getfixturevalue("postgres_server")
    return await server.create_database("lethe_hook")


async def test_hook_job_command_migrates_a_real_store(tmp_path: Path, empty_store_url: str) -> None:
    """The Job's own command, env and secret files run the real CLI against a fresh store."""
    job = named(render(), "Job", "lethe-migrate")
    spec = pod_spec(job)
    (container,) = spec["containers"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: tmp_path / m["name"] for m in container["volumeMounts"]}
    contents = {
        "database-url": empty_store_url,
        "jwt-secret": TEST_JWT_SECRET,
        "audit-key": TEST_AUDIT_KEY,
        "audit-chain-key": TEST_AUDIT_KEY,
        "artifact-key": "dGVzdC1hcnRpZmFjdC1rZXktdGhhdC1pcy0zMi1ieXQ=",
        "audit-signing-key": generate_signing_key_pem(),
    }
    for directory in mounts.values():
        directory.mkdir()
    for item in volumes["secrets"]["secret"]["items"]:
        (mounts[SECRETS_DIR] / item["path"]).write_text(contents[item["key"]], encoding="utf-8")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    for entry in container["env"]:
        value = entry["value"]
        for mount_path, directory in mounts.items():
            if value.startswith(f"{mount_path}/"):
                value = str(directory) + value.removeprefix(mount_path)
                break
        env[entry["name"]] = value
    command = [sys.executable, "-m", "app", *container["args"]]
    result = await asyncio.to_thread(
        subprocess.run,
        command,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    engine = create_async_engine(empty_store_url)
    try:
        assert await current_revision(engine) == head_revision()
    finally:
        await engine.dispose()


def test_workers_run_in_the_api_by_default_and_in_their_own_deployment_in_production() -> None:
    default = render()
    assert [d["metadata"]["name"] for d in by_kind(default, "Deployment")] == ["lethe"]
    api = env_of(pod_spec(named(default, "Deployment", "lethe"))["containers"][0])
    assert api["LETHE_WORKERS_ENABLED"]["value"] == "true"

    production = render(production_values())
    api = env_of(pod_spec(named(production, "Deployment", "lethe"))["containers"][0])
    worker_deployment = named(production, "Deployment", "lethe-worker")
    worker = env_of(pod_spec(worker_deployment)["containers"][0])
    assert api["LETHE_WORKERS_ENABLED"]["value"] == "false"
    assert worker["LETHE_WORKERS_ENABLED"]["value"] == "true"
    assert worker_deployment["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == ("worker")
    service = named(production, "Service", "lethe")
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "api"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"api__workersEnabled": False}, "no pod would execute requests"),
        ({"api__replicaCount": 3}, "persistence.enabled=true"),
        ({"worker__enabled": True}, "persistence.enabled=true"),
        ({"api__autoscaling__enabled": True}, "artifacts.storage=s3"),
        (
            {
                "api__replicaCount": 2,
                "persistence__enabled": True,
                "persistence__accessModes": ["ReadWriteOnce"],
            },
            "a ReadWriteMany volume",
        ),
        ({"artifacts__storage": "s3"}, "artifacts.s3.bucket"),
        (
            {
                "artifacts__storage": "s3",
                "artifacts__s3__bucket": "b",
                "secrets__keys__artifactS3AccessKeyId": "k",
            },
            "or neither",
        ),
    ],
)
def test_values_that_cannot_work_are_refused_at_render(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmRenderError, match=re.escape(message)):
        render(merged({}, **overrides))


def test_many_replicas_and_the_autoscaler_with_artifacts_in_a_bucket() -> None:
    values = merged(
        {},
        api__replicaCount=4,
        api__autoscaling__enabled=True,
        worker__enabled=True,
        worker__replicaCount=3,
        artifacts__storage="s3",
        artifacts__s3__bucket="lethe-exports",
        artifacts__s3__endpointUrl="http://minio.storage:9000",
        secrets__keys__artifactS3AccessKeyId="s3-access-key",
        secrets__keys__artifactS3SecretAccessKey="s3-secret-key",
    )
    objects = render(values)
    assert named(objects, "HorizontalPodAutoscaler", "lethe")["spec"]["scaleTargetRef"]["name"] == "lethe"
    assert named(objects, "Deployment", "lethe-worker")["spec"]["replicas"] == 3
    assert by_kind(objects, "PersistentVolumeClaim") == []
    settings = named(objects, "ConfigMap", "lethe")["data"]
    assert settings["LETHE_ARTIFACT_STORAGE"] == "s3"
    assert settings["LETHE_ARTIFACT_S3_BUCKET"] == "lethe-exports"
    assert settings["LETHE_ARTIFACT_S3_ENDPOINT_URL"] == "http://minio.storage:9000"
    for where, spec in pod_specs(objects):
        (secret,) = [v["secret"] for v in spec["volumes"] if "secret" in v]
        assert {"key": "s3-access-key", "path": "artifact_s3_access_key_id"} in secret["items"], where
        env = env_of(spec["containers"][0])
        assert env["LETHE_ARTIFACT_S3_SECRET_ACCESS_KEY_FILE"]["value"] == (
            f"{SECRETS_DIR}/artifact_s3_secret_access_key"
        )
    # no key pair: the pods' web identity, nothing mounted
    web_identity = render(
        merged(values, secrets__keys__artifactS3AccessKeyId="", secrets__keys__artifactS3SecretAccessKey="")
    )
    for where, spec in pod_specs(web_identity):
        assert "LETHE_ARTIFACT_S3_ACCESS_KEY_ID_FILE" not in env_of(spec["containers"][0]), where


def test_manifests_are_mounted_where_the_settings_point() -> None:
    objects = render(production_values())
    settings = named(objects, "ConfigMap", "lethe")["data"]
    manifests = named(objects, "ConfigMap", "lethe-manifests")["data"]
    assert yaml.safe_load(manifests["shop.yaml"])["system"] == "shop"
    for deployment in by_kind(objects, "Deployment"):
        spec = pod_spec(deployment)
        (container,) = spec["containers"]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volume = next(v for v in spec["volumes"] if v["name"] == mounts[settings["LETHE_MANIFESTS_DIR"]])
        assert volume["configMap"]["name"] == "lethe-manifests"
        assert container["envFrom"][0] == {"configMapRef": {"name": "lethe"}}
        data = next(v for v in spec["volumes"] if v["name"] == "data")
        assert data["persistentVolumeClaim"]["claimName"] == "lethe-data"
        assert settings["LETHE_ARTIFACTS_DIR"].startswith(next(p for p, n in mounts.items() if n == "data"))
    assert "LETHE_MANIFESTS_DIR" not in named(render(), "ConfigMap", "lethe")["data"]


def test_pods_restart_when_settings_or_manifests_change() -> None:
    def checksum(values: dict[str, Any]) -> str:
        deployment = named(render(values), "Deployment", "lethe")
        return str(deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"])

    base = production_values()
    changed = merged(base, manifests__files={"shop.yaml": "system: shop\n"})
    assert checksum(base) != checksum(changed)
    assert checksum(base) != checksum(merged(base, config__logLevel="DEBUG"))


def test_retention_cron_job_runs_due_policies_once_at_a_time() -> None:
    assert by_kind(render(), "CronJob") == []
    cron = named(render(production_values()), "CronJob", "lethe-retention")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert cron["spec"]["timeZone"] == "Europe/Berlin"
    (container,) = pod_spec(cron)["containers"]
    assert [*container["command"], *container["args"]] == ["lethe", "retention", "run-due"]
    assert env_of(container)["LETHE_WORKERS_ENABLED"]["value"] == "false"
    (data,) = [v for v in pod_spec(cron)["volumes"] if v["name"] == "data"]
    assert data["persistentVolumeClaim"]["claimName"] == "lethe-data", "expired exports live there"


def test_scaling_disruption_network_and_monitoring_objects() -> None:
    objects = render(production_values())
    hpa = named(objects, "HorizontalPodAutoscaler", "lethe")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "lethe"}
    assert "replicas" not in named(objects, "Deployment", "lethe")["spec"], "the HPA owns replicas"
    for pdb in by_kind(objects, "PodDisruptionBudget"):
        assert pdb["spec"]["maxUnavailable"] == 1
    policy = named(objects, "NetworkPolicy", "lethe")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert {"port": 53, "protocol": "UDP"} in policy["spec"]["egress"][0]["ports"]
    assert policy["spec"]["ingress"][0]["ports"] == [{"port": "http", "protocol": "TCP"}]
    monitor = named(objects, "ServiceMonitor", "lethe")
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert monitor["spec"]["endpoints"][0]["port"] == "http"
    scraped = {
        s["metadata"]["name"]
        for s in by_kind(objects, "Service")
        if monitor["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
    }
    assert scraped == {"lethe", "lethe-worker"}
    assert named(objects, "PersistentVolumeClaim", "lethe-data")["spec"]["accessModes"] == ["ReadWriteMany"]


def test_image_is_pinned_by_digest_when_given() -> None:
    objects = render(production_values())
    images = {c["image"] for _, spec in pod_specs(objects) for c in spec["containers"]}
    assert images == {f"registry.example.com/privacy/lethe@{production_values()['image']['digest']}"}
    default_images = {c["image"] for _, spec in pod_specs(render()) for c in spec["containers"]}
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    assert default_images == {f"lethe:{chart['appVersion']}"}


# Gateway API's HTTPRoute is not in kubernetes-validate's core schemas: the fields the chart uses.
HTTP_ROUTE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "gateway.networking.k8s.io/v1"},
        "kind": {"const": "HTTPRoute"},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["parentRefs", "rules"],
            "properties": {
                "parentRefs": {"type": "array", "minItems": 1, "items": {"required": ["name"]}},
                "hostnames": {"type": "array", "items": {"type": "string"}},
                "rules": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "matches": {"type": "array"},
                            "backendRefs": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["name", "port"],
                                    "properties": {"port": {"type": "integer"}},
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


def test_the_chart_can_be_a_subchart() -> None:
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema({"global": {"imageRegistry": "registry.example.com", "storageClass": "efs"}})


def test_ingress_and_http_route_reach_the_api_service() -> None:
    version = declared_kube_version()
    ingress = named(render(production_values()), "Ingress", "lethe")
    assert kubernetes_schemas.validate(ingress, version, strict=True)
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "lethe.privacy.example.com"
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "lethe", "port": {"name": "http"}}
    objects = render(
        merged(
            {},
            httpRoute__enabled=True,
            httpRoute__parentRefs=[{"name": "public", "namespace": "gateway-system"}],
            httpRoute__hostnames=["lethe.example.com"],
        )
    )
    route = named(objects, "HTTPRoute", "lethe")
    jsonschema.validate(route, HTTP_ROUTE_SCHEMA)
    service = named(objects, "Service", "lethe")
    assert route["spec"]["rules"][0]["backendRefs"] == [
        {"name": "lethe", "port": service["spec"]["ports"][0]["port"]}
    ]
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmValuesError):
        chart.validate_schema(merged({}, httpRoute__enabled=True))


def test_the_migration_hook_alone_reads_the_migration_role_url() -> None:
    objects = render(production_values())
    job = pod_spec(named(objects, "Job", "lethe-migrate"))
    (secret,) = [v["secret"] for v in job["volumes"] if "secret" in v]
    items = {item["path"]: item["key"] for item in secret["items"]}
    assert items["database_url"] == "database-migration-url"
    for name in ("lethe", "lethe-worker"):
        spec = pod_spec(named(objects, "Deployment", name))
        (secret,) = [v["secret"] for v in spec["volumes"] if "secret" in v]
        assert {item["path"]: item["key"] for item in secret["items"]}["database_url"] == "database-url"
    default_job = pod_spec(named(render(), "Job", "lethe-migrate"))
    (secret,) = [v["secret"] for v in default_job["volumes"] if "secret" in v]
    assert {item["path"]: item["key"] for item in secret["items"]}["database_url"] == "database-url"


def test_pods_with_workers_outlive_the_lease_drain(rendered: list[dict[str, Any]]) -> None:
    for deployment in by_kind(rendered, "Deployment"):
        spec = pod_spec(deployment)
        (container,) = spec["containers"]
        pause = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
        assert pause > 0
        if env_of(container)["LETHE_WORKERS_ENABLED"]["value"] == "true":
            assert spec["terminationGracePeriodSeconds"] >= pause + 60 + 5, deployment["metadata"]["name"]
    with pytest.raises(helm.HelmRenderError, match="terminationGracePeriodSeconds must be at least 70"):
        render(merged({}, api__terminationGracePeriodSeconds=30))
    with pytest.raises(helm.HelmRenderError, match="at least 190"):
        render(merged({}, config__extra={"LETHE_WORKER_LEASE_SECONDS": "180"}))


def test_network_policy_admits_named_namespaces() -> None:
    policy = named(render(production_values()), "NetworkPolicy", "lethe")
    peers = policy["spec"]["ingress"][0]["from"]
    assert peers == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}
        for name in ("shop", "monitoring", "ingress-nginx")
    ]
    assert named(render(), "NetworkPolicy", "lethe")["spec"]["ingress"][0]["from"] == [{"podSelector": {}}]
    with pytest.raises(helm.HelmRenderError, match="admits nobody"):
        render(merged({}, networkPolicy__allowSameNamespace=False))


def test_pod_hooks_priority_and_no_service_links() -> None:
    extra = {"name": "proxy", "image": "envoyproxy/envoy:v1.31.0"}
    init = {"name": "wait", "image": "busybox:1.36", "command": ["true"]}
    values = merged(production_values(), sidecars=[extra], initContainers=[init])
    for where, spec in pod_specs(render(values)):
        assert spec["priorityClassName"] == "business-critical", where
        assert spec["enableServiceLinks"] is False, where
        if where.startswith("Deployment/"):
            assert spec["containers"][1] == extra
            assert spec["initContainers"] == [init]


def test_secret_changes_roll_the_pods() -> None:
    def annotations(values: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
        deployment = named(render(values), "Deployment", "lethe")
        return deployment["metadata"].get("annotations", {}), deployment["spec"]["template"]["metadata"][
            "annotations"
        ]

    deployment, pod = annotations(production_values())
    assert deployment["secret.reloader.stakater.com/reload"] == "lethe-secrets"
    _, moved = annotations(merged(production_values(), secrets__keys__auditKey="audit-key-2"))
    assert pod["checksum/secret-keys"] != moved["checksum/secret-keys"]


@pytest.mark.parametrize(
    "values_file", sorted([CHART / "values.yaml", *(CHART / "ci").glob("*.yaml")]), ids=lambda p: p.name
)
def test_every_embedded_manifest_passes_the_parser(values_file: Path) -> None:
    values = yaml.safe_load(values_file.read_text(encoding="utf-8"))
    for name, text in (values.get("manifests", {}).get("files") or {}).items():
        manifest = load_manifest(text.encode("utf-8"), "json" if name.endswith(".json") else "yaml")
        assert manifest.system, name
