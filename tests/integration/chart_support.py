"""Rendering the Helm chart with the real Helm engine, and reading the objects it renders."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

__all__ = (
    "CHART",
    "NAMESPACE",
    "PRODUCTION",
    "RELEASE",
    "ROOT",
    "by_kind",
    "declared_kube_version",
    "env_of",
    "merged",
    "named",
    "pod_spec",
    "pod_specs",
    "production_values",
    "render",
)

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "lethe"
PRODUCTION = CHART / "ci" / "production-values.yaml"
RELEASE, NAMESPACE = "lethe", "privacy"
POD_KINDS = ("Deployment", "Job", "CronJob")


def declared_kube_version() -> str:
    """The lowest Kubernetes version the chart declares in ``kubeVersion`` (e.g. ``1.29.0``)."""
    declared = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))["kubeVersion"]
    match = re.fullmatch(r">=\s*v?(\d+\.\d+\.\d+)(-0)?", declared)
    assert match, f"kubeVersion should be a lower bound, got {declared!r}"
    return match.group(1)


def production_values() -> dict[str, Any]:
    """The production-like values file shipped with the chart."""
    values: dict[str, Any] = yaml.safe_load(PRODUCTION.read_text(encoding="utf-8"))
    return values


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every object the chart renders for an install with ``values`` (NOTES.txt left out)."""
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(values or {})
        manifests = chart.render(values or {}, name=RELEASE, namespace=NAMESPACE, is_install=True)
    objects = []
    for path, text in sorted(manifests.items()):
        if path.endswith(".txt"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def merged(base: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """``base`` with nested overrides spelled ``api__workersEnabled=False``."""
    values = copy.deepcopy(base)
    for dotted, value in overrides.items():
        node = values
        *parents, leaf = dotted.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return values


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """The rendered objects of one kind."""
    return [o for o in objects if o["kind"] == kind]


def named(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    """The one rendered object of ``kind`` called ``name``."""
    found = [o for o in by_kind(objects, kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
    return found[0]


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    """The pod spec inside a Deployment, Job or CronJob."""
    spec = obj["spec"]
    if obj["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    result: dict[str, Any] = spec["template"]["spec"]
    return result


def pod_specs(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(kind/name, pod spec)`` of every workload."""
    for obj in objects:
        if obj["kind"] in POD_KINDS:
            yield f"{obj['kind']}/{obj['metadata']['name']}", pod_spec(obj)


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A container's env entries by name."""
    return {entry["name"]: entry for entry in container.get("env", [])}
