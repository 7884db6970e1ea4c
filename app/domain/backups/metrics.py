"""Prometheus gauges of backup health; ages are computed at scrape time from the last observation."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime

from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from app.engine.backups import STATUS_ORDER, BackupHealth

__all__ = ("BackupMetrics", "backup_metrics")


class BackupMetrics(Collector):
    """Holds the last health evaluation and restore-test times; exports them on each scrape.

    ``lethe_backup_newest_age_seconds{system,source}``: age of the newest backup per source.
    ``lethe_backup_status{system,source,check}``: 0 ok, 1 degraded, 2 critical.
    ``lethe_backup_overall_status``: worst status over every system.
    ``lethe_backup_restore_test_age_seconds{system}``: age of the last passed restore test.
    Ages are relative to the scrape, so a stalled backup job shows a growing age even when
    nobody re-evaluates the health in between.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._newest: dict[tuple[str, str], float] = {}
        self._status: dict[tuple[str, str, str], int] = {}
        self._overall: int | None = None
        self._restore_passed: dict[str, float] = {}

    def observe_health(self, health: BackupHealth) -> None:
        """Replace the health series with those of a fresh evaluation."""
        newest: dict[tuple[str, str], float] = {}
        status: dict[tuple[str, str, str], int] = {}
        for system in health.systems:
            for check in system.checks:
                key = (system.system, check.source, check.check)
                status[key] = max(status.get(key, 0), STATUS_ORDER[check.status])
                if check.newest_at is not None:
                    stamp = check.newest_at.timestamp()
                    newest[(system.system, check.source)] = max(
                        newest.get((system.system, check.source), 0), stamp
                    )
        with self._lock:
            self._newest, self._status = newest, status
            self._overall = STATUS_ORDER[health.status]

    def observe_restore_test(self, system: str, finished_at: datetime) -> None:
        """Record a passed restore test (older observations never replace newer ones)."""
        stamp = finished_at.timestamp()
        with self._lock:
            self._restore_passed[system] = max(self._restore_passed.get(system, 0.0), stamp)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Export the series (called by the registry on every scrape)."""
        now = time.time()
        with self._lock:
            newest, status = dict(self._newest), dict(self._status)
            overall, passed = self._overall, dict(self._restore_passed)
        age = GaugeMetricFamily(
            "lethe_backup_newest_age_seconds",
            "Age of the newest backup of a source",
            labels=["system", "source"],
        )
        for (system, source), stamp in sorted(newest.items()):
            age.add_metric([system, source], max(now - stamp, 0.0))
        yield age
        state = GaugeMetricFamily(
            "lethe_backup_status",
            "Backup check status: 0 ok, 1 degraded, 2 critical",
            labels=["system", "source", "check"],
        )
        for labels, value in sorted(status.items()):
            state.add_metric(list(labels), value)
        yield state
        if overall is not None:
            yield GaugeMetricFamily(
                "lethe_backup_overall_status", "Worst backup status over every system", value=overall
            )
        restore = GaugeMetricFamily(
            "lethe_backup_restore_test_age_seconds", "Age of the last passed restore test", labels=["system"]
        )
        for system, stamp in sorted(passed.items()):
            restore.add_metric([system], max(now - stamp, 0.0))
        yield restore


_REGISTERED: list[BackupMetrics] = []
_REGISTER_LOCK = threading.Lock()


def backup_metrics() -> BackupMetrics:
    """The process's collector, registered with the default registry on first use.

    ``/metrics`` serves the default registry, which is process-wide by nature; registering once
    keeps several app instances (tests) from colliding on the metric names.
    """
    with _REGISTER_LOCK:
        if not _REGISTERED:
            collector = BackupMetrics()
            REGISTRY.register(collector)
            _REGISTERED.append(collector)
        return _REGISTERED[0]
