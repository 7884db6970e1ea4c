"""Export artifacts in both stores: the filesystem and a real S3 API (moto's server on loopback).

Multipart uploads of several parts, ranged reads, listing and deletion per request, aborts and a
writer killed mid-upload (nothing readable is left), and an access export end to end through the
API with artifacts in the bucket: download, encryption at rest, expiry and purge.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path

import obstore
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from obstore.store import S3Store
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.db.audit import AuditEvent
from app.domain.audit.sequencer import sequence_now
from app.engine.artifacts import FRAME_BYTES, EncryptedWriter, read_frames
from app.engine.storage import (
    S3_PART_BYTES,
    ArtifactMissing,
    ArtifactStore,
    FileStore,
    S3ArtifactStore,
    artifact_name,
    remove_request_artifacts,
)
from app.lib.errors import ConfigurationError
from tests.conftest import make_settings
from tests.integration.requests_support import SUBJECT_EMAIL, TARGET_ENV, create_crm, drain, register_crm, utc
from tests.s3_server import REGION, S3Server

KEY = bytes(range(32))
CONTEXT = b"lethe-artifact:r1:json:"
Headers = Callable[..., dict[str, str]]


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    return s3_server.create_bucket()


@pytest.fixture(params=["filesystem", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    if request.param == "filesystem":
        return FileStore(tmp_path / "artifacts")
    server: S3Server = request.getfixturevalue("s3_server")
    return S3ArtifactStore(make_settings(tmp_path, **server.settings(server.create_bucket())))


def _raw_bucket(server: S3Server, settings: Settings) -> S3Store:
    """The bucket seen directly, without the artifact store's prefix."""
    return S3Store(
        settings.artifact_s3_bucket,
        endpoint=server.endpoint,
        region=REGION,
        access_key_id=settings.artifact_s3_access_key_id,
        secret_access_key=settings.artifact_s3_secret_access_key,
        client_options={"allow_http": True},
    )


def test_multipart_round_trip_listing_and_removal(store: ArtifactStore) -> None:
    payload = os.urandom(2 * S3_PART_BYTES + FRAME_BYTES + 17)  # three parts in S3
    request_id = str(uuid.uuid4())
    for attempt in (1, 2):
        with EncryptedWriter(store.create(artifact_name(request_id, attempt, "json")), KEY, CONTEXT) as w:
            for start in range(0, len(payload), 100_000):
                w.write(payload[start : start + 100_000])
    other = str(uuid.uuid4())
    with EncryptedWriter(store.create(artifact_name(other, 1, "zip")), KEY, CONTEXT) as w:
        w.write(b"another request")

    frames = list(read_frames(store.open(artifact_name(request_id, 2, "json")), KEY, CONTEXT))
    assert b"".join(frames) == payload
    assert max(len(frame) for frame in frames) <= FRAME_BYTES
    assert store.request_names(request_id, 2) == [f"{request_id}.1.json.enc", f"{request_id}.2.json.enc"]

    remove_request_artifacts(store, request_id, 2, keep=2)
    assert store.request_names(request_id, 2) == [f"{request_id}.2.json.enc"]
    assert not store.exists(artifact_name(request_id, 1, "json"))
    remove_request_artifacts(store, request_id, 2, keep=None)
    assert store.request_names(request_id, 2) == []
    with pytest.raises(ArtifactMissing):
        store.open(artifact_name(request_id, 2, "json"))
    assert store.request_names(other, 1) == [f"{other}.1.zip.enc"]


def test_a_partial_file_of_a_crashed_attempt_is_listed_and_removed(tmp_path: Path) -> None:
    """On the filesystem a writer killed mid-write leaves its ``.partial`` file: the request's
    names include it, so completing another attempt (or expiry) deletes it."""
    store = FileStore(tmp_path / "artifacts")
    request_id = str(uuid.uuid4())
    with EncryptedWriter(store.create(artifact_name(request_id, 3, "json")), KEY, CONTEXT) as w:
        w.write(b"the export")
    crashed = tmp_path / "artifacts" / f"{artifact_name(request_id, 1, 'zip')}.partial"
    crashed.write_bytes(b"half an export")
    (tmp_path / "artifacts" / f"{request_id}x.1.json.enc").write_bytes(b"not this request's")
    assert store.request_names(request_id, 3) == [
        f"{request_id}.1.zip.enc.partial",
        f"{request_id}.3.json.enc",
    ]
    remove_request_artifacts(store, request_id, 3, keep=3)
    assert not crashed.exists()
    assert store.request_names(request_id, 3) == [f"{request_id}.3.json.enc"]


def test_aborted_upload_leaves_nothing_readable(store: ArtifactStore) -> None:
    name = artifact_name(str(uuid.uuid4()), 1, "zip")
    writer = EncryptedWriter(store.create(name), KEY, CONTEXT)
    writer.write(os.urandom(S3_PART_BYTES * 2 + 1))  # parts already uploaded
    writer.__exit__(RuntimeError, RuntimeError(), None)
    assert not store.exists(name)
    with pytest.raises(ArtifactMissing):
        store.open(name)
    assert store.request_names(name.split(".")[0], 1) == []


def test_aborted_upload_is_aborted_in_the_bucket(s3_server: S3Server, bucket: str, tmp_path: Path) -> None:
    store = S3ArtifactStore(make_settings(tmp_path, **s3_server.settings(bucket)))
    writer = EncryptedWriter(store.create(artifact_name(str(uuid.uuid4()), 1, "json")), KEY, CONTEXT)
    writer.write(os.urandom(S3_PART_BYTES * 2 + 1))
    assert s3_server.pending_uploads(bucket) == 1
    writer.abort()
    assert s3_server.pending_uploads(bucket) == 0


_KILLED_WRITER = """
import os, sys, time
from app.config import load_settings
from app.engine.artifacts import EncryptedWriter
from app.engine.storage import artifact_store
writer = EncryptedWriter(artifact_store(load_settings()).create(sys.argv[1]), bytes(range(32)), b"ctx")
writer.write(os.urandom(int(sys.argv[2])))
print("written", flush=True)
time.sleep(600)
"""


def test_writer_killed_mid_upload_leaves_no_readable_artifact(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, **s3_server.settings(bucket))
    env = {
        **os.environ,
        **{f"LETHE_{key.upper()}": value for key, value in s3_server.settings(bucket).items()},
        "LETHE_JWT_SECRET": "x" * 40,
        "LETHE_AUDIT_KEY": "y" * 40,
        "LETHE_AUDIT_CHAIN_KEY": "z" * 40,
    }
    request_id = str(uuid.uuid4())
    name = artifact_name(request_id, 1, "json")
    with subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, name, str(S3_PART_BYTES * 3)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    ) as writer:
        try:
            assert writer.stdout is not None
            assert writer.stdout.readline().strip() == "written"
            deadline = time.monotonic() + 30
            while s3_server.pending_uploads(bucket) == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert s3_server.pending_uploads(bucket) == 1  # parts went up, the upload is open
            writer.send_signal(signal.SIGKILL)
            writer.wait(timeout=10)
        finally:
            if writer.poll() is None:
                writer.kill()
    store = S3ArtifactStore(settings)
    assert not store.exists(name)
    with pytest.raises(ArtifactMissing):
        store.open(name)
    assert store.request_names(request_id, 1) == []
    assert obstore.list(_raw_bucket(s3_server, settings)).collect() == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"artifact_storage": "bucket"}, "LETHE_ARTIFACT_STORAGE"),
        ({"artifact_storage": "s3"}, "LETHE_ARTIFACT_S3_BUCKET"),
        (
            {"artifact_storage": "s3", "artifact_s3_bucket": "b", "artifact_s3_access_key_id": "k"},
            "go together",
        ),
        (
            {"artifact_storage": "s3", "artifact_s3_bucket": "b", "artifact_s3_endpoint_url": "minio:9000"},
            "LETHE_ARTIFACT_S3_ENDPOINT_URL",
        ),
    ],
)
def test_storage_settings_are_checked(tmp_path: Path, overrides: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        make_settings(tmp_path, **overrides)


def test_s3_secrets_are_read_from_files(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("from-file-key\n")
    (tmp_path / "secret").write_text("from-file-secret\n")
    from app.config import load_settings

    settings = load_settings(
        {
            "LETHE_JWT_SECRET": "x" * 40,
            "LETHE_AUDIT_KEY": "y" * 40,
            "LETHE_AUDIT_CHAIN_KEY": "z" * 40,
            "LETHE_ARTIFACT_STORAGE": "s3",
            "LETHE_ARTIFACT_S3_BUCKET": "exports",
            "LETHE_ARTIFACT_S3_ACCESS_KEY_ID_FILE": str(tmp_path / "key"),
            "LETHE_ARTIFACT_S3_SECRET_ACCESS_KEY_FILE": str(tmp_path / "secret"),
        }
    )
    assert settings.artifact_s3_access_key_id == "from-file-key"
    assert settings.artifact_s3_secret_access_key == "from-file-secret"


# --- end to end through the API, artifacts in the bucket ----------------------------------------


@pytest.fixture
def settings(tmp_path: Path, store_url: str, s3_server: S3Server, bucket: str) -> Settings:
    return make_settings(tmp_path, database_url=store_url, **s3_server.settings(bucket))


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
async def test_access_export_through_the_bucket(
    client: AsyncTestClient[Litestar],
    auth: Headers,
    settings: Settings,
    store_engine: AsyncEngine,
    s3_server: S3Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app.domain.requests.housekeeping import purge_expired_artifacts

    crm = f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}"
    await create_crm(crm)
    monkeypatch.setenv(TARGET_ENV, crm)
    await register_crm(client, auth())
    created = await client.post(
        "/v1/requests", json={"kind": "access", "identities": {"email": SUBJECT_EMAIL}}, headers=auth()
    )
    request_id = created.json()["id"]
    assert await drain(settings, store_engine) == 1

    raw = _raw_bucket(s3_server, settings)
    objects = sorted(meta["path"] for meta in obstore.list(raw).collect())
    assert objects == [f"exports/{request_id}/1.json.enc", f"exports/{request_id}/1.zip.enc"]
    for key in objects:
        assert SUBJECT_EMAIL.encode() not in bytes(obstore.get(raw, key).bytes())
    assert not Path(settings.artifacts_dir).exists()

    exported = await client.get(f"/v1/requests/{request_id}/export", headers=auth("requests:read"))
    assert exported.status_code == 200
    users = exported.json()["systems"]["crm"]["tables"]["users"]["rows"]
    assert [row["email"] for row in users] == [SUBJECT_EMAIL]
    archive = await client.get(f"/v1/requests/{request_id}/export?format=zip", headers=auth("requests:read"))
    assert "crm/users.csv" in zipfile.ZipFile(io.BytesIO(archive.content)).namelist()

    assert await purge_expired_artifacts(settings, store_engine, now=utc(2100, 1, 1)) == 1
    assert obstore.list(raw).collect() == []
    gone = await client.get(f"/v1/requests/{request_id}/export", headers=auth("requests:read"))
    assert gone.status_code == 404
    await sequence_now(store_engine)
    async with store_engine.connect() as connection:
        last = await connection.scalar(
            select(AuditEvent.action)
            .where(AuditEvent.request_id == request_id)
            .order_by(AuditEvent.seq.desc())
            .limit(1)
        )
    assert last == "request.export_purged"
