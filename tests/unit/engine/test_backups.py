"""Backup sources: configuration, pgBackRest and WAL-G output as those tools print it, verdicts."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from app.engine.backups import (
    BackupConfig,
    DirectorySource,
    PgBackRestSource,
    WalGSource,
    check_pgbackrest,
    check_walg,
    format_age,
    parse_backup_config,
    worst,
)
from app.engine.backups.verdicts import Judge
from app.lib.errors import ConfigurationError

FIXTURES = Path(__file__).parent / "fixtures"
DAY = 86_400
# One hour after the newest backup of every fixture (2026-11-21 ~01:00-02:00 UTC).
NOW = datetime(2026, 11, 21, 3, 0, tzinfo=UTC)


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def judge(*, rpo: int = DAY, now: datetime = NOW, tolerance: float = 0.5) -> Judge:
    return Judge(source="repo", kind="test", rpo=rpo, now=now, tolerance=tolerance, history=7)


def by_check(checks: list[Any], source: str | None = None) -> dict[str, Any]:
    return {c.check: c for c in checks if source is None or c.source == source}


PGBACKREST = PgBackRestSource(name="repo1", command=("pgbackrest", "info", "--output=json"))


def test_pgbackrest_healthy_stanza_is_ok_with_the_age_of_its_newest_backup() -> None:
    checks = check_pgbackrest(fixture("pgbackrest-info.json"), PGBACKREST, judge())
    main = by_check(checks, "repo:main")
    assert {name: c.status for name, c in main.items()} == {
        "status": "ok",
        "freshness": "ok",
        "size": "ok",
        "archive": "ok",
    }
    newest = main["freshness"]
    assert newest.newest_at == datetime(2026, 11, 21, 1, 0, 12, tzinfo=UTC)
    assert newest.age_seconds == pytest.approx(3600 + 3600 - 12)
    assert newest.size_bytes == 42201180
    assert "00000001000000000000002F" in main["archive"].reason


def test_pgbackrest_stanza_without_valid_backups_is_critical_with_the_tools_message() -> None:
    checks = check_pgbackrest(fixture("pgbackrest-info.json"), PGBACKREST, judge())
    reports = by_check(checks, "repo:reports")
    assert reports["status"].status == "critical"
    assert reports["status"].reason == "stanza status 2: no valid backups"
    assert reports["freshness"].status == "critical"
    assert worst([c.status for c in checks]) == "critical"


def test_pgbackrest_stanza_filter_keeps_only_the_configured_stanza() -> None:
    source = PgBackRestSource(name="repo1", file="/dev/null", stanza="main")
    checks = check_pgbackrest(fixture("pgbackrest-info.json"), source, judge())
    assert {c.source for c in checks} == {"repo:main"}
    assert worst([c.status for c in checks]) == "ok"
    missing = PgBackRestSource(file="/dev/null", stanza="billing")
    (only,) = check_pgbackrest(fixture("pgbackrest-info.json"), missing, judge())
    assert (only.status, only.reason) == ("critical", "pgbackrest info reports no stanza billing")


def test_pgbackrest_backup_older_than_the_rpo_is_critical() -> None:
    later = NOW + timedelta(days=2)
    checks = by_check(
        check_pgbackrest(fixture("pgbackrest-info.json"), PGBACKREST, judge(now=later)), "repo:main"
    )
    assert checks["freshness"].status == "critical"
    assert checks["freshness"].reason == "newest valid backup is 2d 1h old, beyond the RPO 1d 0h"


def test_pgbackrest_newest_backup_with_errors_is_degraded_and_freshness_uses_the_last_good_one() -> None:
    document = fixture("pgbackrest-info.json")
    broken = copy.deepcopy(document[0]["backup"][-1])
    broken["label"] = "20261119-010002F_20261121-020000I"
    broken["error"] = True
    broken["timestamp"] = {
        "start": broken["timestamp"]["start"] + 3600,
        "stop": broken["timestamp"]["stop"] + 3600,
    }
    document[0]["backup"].append(broken)
    main = by_check(check_pgbackrest(document, PGBACKREST, judge()), "repo:main")
    assert main["errors"].status == "degraded"
    assert "20261119-010002F_20261121-020000I" in main["errors"].reason
    assert main["freshness"].newest_at == datetime(2026, 11, 21, 1, 0, 12, tzinfo=UTC)


def test_pgbackrest_shrunken_database_is_degraded() -> None:
    document = fixture("pgbackrest-info.json")
    document[0]["backup"][-1]["info"]["size"] = 4_000_000
    main = by_check(check_pgbackrest(document, PGBACKREST, judge()), "repo:main")
    assert main["size"].status == "degraded"
    assert main["size"].reason.startswith("newest backup (database size) is 90% smaller than the median")


def test_pgbackrest_output_that_is_not_a_stanza_list_is_critical() -> None:
    (only,) = check_pgbackrest({"error": "nope"}, PGBACKREST, judge())
    assert only.status == "critical"


def test_walg_detail_listing_is_ok_and_uses_finish_time_and_compressed_size() -> None:
    checks = by_check(check_walg(fixture("walg-backup-list-detail.json"), judge()))
    assert checks["freshness"].status == "ok"
    assert checks["freshness"].newest_at == datetime(2026, 11, 21, 2, 0, 43, 902555, tzinfo=UTC)
    assert checks["size"].status == "ok"
    assert checks["size"].size_bytes == 6215533


def test_walg_plain_listing_has_freshness_but_no_size() -> None:
    checks = by_check(check_walg(fixture("walg-backup-list.json"), judge()))
    assert checks["freshness"].status == "ok"
    assert checks["freshness"].newest_at == datetime(2026, 11, 21, 2, 0, 44, 118000, tzinfo=UTC)
    assert checks["size"].reason == "no base backup (compressed) size to compare"


def test_walg_old_backups_are_critical_and_an_empty_listing_too() -> None:
    old = by_check(check_walg(fixture("walg-backup-list-detail.json"), judge(now=NOW + timedelta(days=3))))
    assert old["freshness"].status == "critical"
    assert old["freshness"].reason.startswith("newest base backup is 3d 0h old")
    for empty in (None, []):
        checks = by_check(check_walg(empty, judge()))
        assert checks["freshness"].status == "critical"
        assert checks["freshness"].reason == "no base backup found"


def test_walg_backup_much_larger_than_usual_is_degraded() -> None:
    document = fixture("walg-backup-list-detail.json")
    document[-1]["compressed_size"] = 20_000_000
    checks = by_check(check_walg(document, judge()))
    assert checks["size"].status == "degraded"
    assert "larger than the median of the 2 previous" in checks["size"].reason


CONFIG = """
rpo_seconds: 172800
systems:
  shop:
    rpo_seconds: 3600
    scratch: {env: SHOP_SCRATCH_URL}
    sources:
      - kind: directory
        path: /var/backups/shop
        pattern: "shop-*.dump"
        rpo_seconds: 90000
      - kind: pgbackrest
        command: [pgbackrest, --stanza=main, info, --output=json]
        stanza: main
  crm:
    sources:
      - kind: walg
        name: s3
        file: /var/lib/lethe/walg.json
"""


def test_configuration_is_read_with_rpo_precedence_source_system_file_settings() -> None:
    config = parse_backup_config(CONFIG)
    shop, crm = config.systems["shop"], config.systems["crm"]
    directory, pgbackrest = shop.sources
    assert isinstance(directory, DirectorySource)
    assert isinstance(pgbackrest, PgBackRestSource)
    assert isinstance(crm.sources[0], WalGSource)
    assert shop.restore_source() is directory
    assert config.rpo_for("shop", directory, DAY) == 90000
    assert config.rpo_for("shop", pgbackrest, DAY) == 3600
    assert config.rpo_for("crm", crm.sources[0], DAY) == 172800
    assert BackupConfig(systems={"crm": crm}).rpo_for("crm", crm.sources[0], DAY) == DAY
    assert crm.sources[0].label == "s3"
    assert directory.label == "directory"


@pytest.mark.parametrize(
    ("document", "fragment"),
    [
        ("systems: {shop: {sources: [{kind: tape, path: /x}]}}", "tape"),
        ("systems: {shop: {sources: [{kind: directory, path: /x, patern: '*'}]}}", "patern"),
        ("systems: {shop: {sources: [{kind: walg}]}}", "exactly one of `command` or `file`"),
        ("systems: {shop: {sources: [{kind: walg, file: a}, {kind: walg, file: b}]}}", "same name"),
        ("systems: {shop: {scratch: {}, sources: []}}", "exactly one of `env`"),
        ("systems: [", "not valid YAML"),
    ],
)
def test_configuration_mistakes_are_refused_with_a_precise_message(document: str, fragment: str) -> None:
    with pytest.raises(ConfigurationError, match="backup sources") as info:
        parse_backup_config(document)
    assert fragment in str(info.value)


def test_ages_read_like_an_operator_writes_them() -> None:
    assert format_age(42) == "42s"
    assert format_age(3 * 60 + 5) == "3m 5s"
    assert format_age(5 * 3600 + 12 * 60) == "5h 12m"
    assert format_age(3 * DAY + 4 * 3600 + 59) == "3d 4h"


def test_the_readme_example_configuration_is_valid() -> None:
    readme = (Path(__file__).parents[3] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Backups") :]
    example = section[
        section.index("```yaml") + len("```yaml") : section.index("```", section.index("```yaml") + 7)
    ]
    config = parse_backup_config(example)
    shop = config.systems["shop"]
    assert [s.label for s in shop.sources] == ["directory", "repo1", "walg"]
    assert config.rpo_for("shop", shop.sources[0], DAY) == 43200
