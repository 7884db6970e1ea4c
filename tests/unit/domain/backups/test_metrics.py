"""Backup gauges: ages grow between evaluations, statuses follow the last evaluation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry, generate_latest

from app.domain.backups.metrics import BackupMetrics
from app.engine.backups import BackupHealth, Check, SystemHealth


def health(status: str, newest: datetime) -> BackupHealth:
    check = Check(
        source="nightly",
        kind="directory",
        check="freshness",
        status=status,  # type: ignore[arg-type]
        reason="r",
        newest_at=newest,
        age_seconds=0.0,
    )
    return BackupHealth(
        status=status,
        checked_at=newest,  # type: ignore[arg-type]
        systems=[SystemHealth(system="shop", status=status, checks=[check])],
    )  # type: ignore[arg-type]


def scrape(metrics: BackupMetrics) -> dict[str, float]:
    registry = CollectorRegistry()
    registry.register(metrics)
    values = {}
    for line in generate_latest(registry).decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def test_ages_are_relative_to_the_scrape_and_statuses_to_the_last_evaluation() -> None:
    metrics = BackupMetrics()
    now = datetime.now(UTC)
    metrics.observe_health(health("critical", now - timedelta(days=2)))
    metrics.observe_restore_test("shop", now - timedelta(hours=5))
    values = scrape(metrics)
    age = values['lethe_backup_newest_age_seconds{source="nightly",system="shop"}']
    assert 2 * 86_400 <= age < 2 * 86_400 + 60
    assert values['lethe_backup_status{check="freshness",source="nightly",system="shop"}'] == 2.0
    assert values["lethe_backup_overall_status"] == 2.0
    assert 5 * 3600 <= values['lethe_backup_restore_test_age_seconds{system="shop"}'] < 5 * 3600 + 60

    metrics.observe_health(health("ok", now))
    metrics.observe_restore_test("shop", now - timedelta(days=9))  # older: ignored
    values = scrape(metrics)
    assert values['lethe_backup_status{check="freshness",source="nightly",system="shop"}'] == 0.0
    assert values['lethe_backup_restore_test_age_seconds{system="shop"}'] < 5 * 3600 + 60
