"""Build lab manifests and run a subject path against the lab database."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import MetaData, select

from app.engine.subjects import Binds, path_condition
from app.manifest.graph import SubjectPath
from app.manifest.loading import load_manifest
from app.manifest.model import Manifest
from tests.integration.manifest.conftest import LAB_VARIABLE, LabTarget


def lab_manifest(tables: dict[str, Any], **extra: Any) -> Manifest:
    """A manifest of the lab target with the given ``tables`` section."""
    document = {
        "system": "lab",
        "connection": {"env": LAB_VARIABLE},
        "subject": {"table": "users", "key": "id", "identities": {"email": "email", "user_id": "id"}},
        "tables": tables,
        **extra,
    }
    return load_manifest(json.dumps(document), "json")


async def rows_of(lab: LabTarget, path: SubjectPath, subject_id: int) -> set[tuple[Any, ...]]:
    """Primary keys of ``path.table`` rows that belong to subject ``subject_id``."""
    metadata = MetaData()
    async with lab.engine.connect() as connection:
        await connection.run_sync(metadata.reflect)
        table = metadata.tables[path.table]
        dialect = connection.dialect.name
        condition = path_condition(path, metadata.tables, ("id",), Binds((subject_id,)), dialect=dialect)
        result = await connection.execute(select(*table.primary_key.columns).where(condition))
        return {tuple(row) for row in result}
