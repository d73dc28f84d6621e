"""One storage for every host: a shared folder setting, or an S3-compatible object store
(tested against moto's S3 server, run as a local process)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from lens.captures.models import Recording, Snapshot
from lens.config import load_settings
from lens.extensions import db
from lens.media.app import upload_recording
from lens.media.config import MediaConfig, load_config
from lens.storage import FolderStorage, S3Storage, StorageError, safe_key
from tests.captures.conftest import FakeMedia, started_session

pytestmark = pytest.mark.scaleout

BUCKET = "lens-test"


@pytest.fixture
def media(app) -> FakeMedia:
    """The sidecar's client stood in for (tests/captures): snapshots, recordings."""
    fake = FakeMedia(Path(app.config["LENS_RECORDINGS_PATH"]))
    app.extensions["lens.media"] = fake
    return fake


@pytest.fixture
def s3_server(tmp_path, monkeypatch):
    """moto's S3 server on a free loopback port, with an empty bucket."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = Path(sys.executable).with_name("moto_server")
    log = open(tmp_path / "moto.log", "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen([str(server), "-H", "127.0.0.1", "-p", str(port)], stdout=log,
                               stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(url, timeout=5)
            break
        except requests.RequestException:  # not listening yet, or still loading (slow)
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                process.wait(timeout=10)
                log.close()
                pytest.fail("moto_server did not come up")
            time.sleep(0.1)
    for name, value in (("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):  # fmt: skip
        monkeypatch.setenv(name, value)
    S3Storage(BUCKET, url, "us-east-1")._client.create_bucket(Bucket=BUCKET)
    yield url
    process.terminate()
    process.wait(timeout=10)
    log.close()


def test_the_storage_folder_setting_holds_snapshots_and_recordings(tmp_path):
    shared = tmp_path / "shared"
    settings = load_settings(str(tmp_path / "host-a"), {"LENS_STORAGE_PATH": str(shared)})
    assert settings["LENS_RECORDINGS_PATH"] == str(shared / "recordings")
    sidecar = load_config({"LENS_STORAGE_PATH": str(shared), "LENS_MEDIA_SECRET": "m"})
    assert sidecar.recordings_path == shared / "recordings"  # the same folder on every host
    folder = FolderStorage(shared)
    folder.put_bytes("captures/1/a.png", b"png", "image/png")
    assert (shared / "captures" / "1" / "a.png").read_bytes() == b"png"
    for bad in ("../escape.png", "/etc/passwd/..", "captures/../../x", ""):
        with pytest.raises(StorageError):
            folder.put_bytes(bad, b"x", "image/png")
    assert safe_key("/captures//1/a.png") == "captures/1/a.png"


def test_snapshots_go_to_the_object_store_and_come_back(
    app, console, make_customer, media, s3_server
):

    storage = S3Storage(BUCKET, s3_server, "us-east-1")
    app.extensions["lens.storage"] = storage
    session_id = started_session(app, console, make_customer)
    taken = console.post(f"/sessions/{session_id}/snapshots")
    assert taken.status_code == 200, taken.text
    with app.app_context():
        snapshot = db.session.scalars(select(Snapshot)).one()
        key = snapshot.path
    stored = storage.get_bytes(key)
    assert stored.startswith(b"\x89PNG")
    assert not (Path(app.instance_path) / key).exists()  # not on this host's disk
    shown = console.client.get(f"/console/sessions/{session_id}/snapshots/{snapshot.id}/image")
    assert shown.status_code == 200 and shown.data == stored
    jpeg = console.client.get(f"/console/sessions/{session_id}/snapshots/{snapshot.id}.jpg")
    assert jpeg.status_code == 200 and jpeg.data.startswith(b"\xff\xd8")


def test_a_finished_recording_is_uploaded_and_served_through_a_signed_url(
    app, console, make_customer, media, s3_server, tmp_path
):
    storage = S3Storage(BUCKET, s3_server, "us-east-1")
    app.extensions["lens.storage"] = storage
    session_id = started_session(app, console, make_customer)
    assert console.post(f"/sessions/{session_id}/recording/start").status_code == 200
    with app.app_context():
        recording = db.session.scalars(select(Recording)).one()
        relative = recording.path
    file = Path(app.config["LENS_RECORDINGS_PATH"]) / relative
    content = file.read_bytes()
    # the sidecar's side: at stop it moves the file into the store
    config = MediaConfig(
        secret="m",
        recordings_path=Path(app.config["LENS_RECORDINGS_PATH"]),
        storage={"LENS_STORAGE": "s3", "LENS_S3_BUCKET": BUCKET,
                 "LENS_S3_ENDPOINT_URL": s3_server, "LENS_S3_REGION": "us-east-1"},
    )  # fmt: skip
    assert asyncio.run(upload_recording(config, file)) == {"stored": "s3"}
    assert not file.exists()
    assert console.post(f"/sessions/{session_id}/recording/stop").status_code == 200

    served = console.client.get(f"/console/sessions/{session_id}/recordings/1.webm")
    assert served.status_code == 302
    signed = served.headers["Location"]
    assert signed.startswith(s3_server) and "Signature" in signed
    assert requests.get(signed, timeout=10).content == content
    # another technician's browser gets no URL
    assert (
        console.client.get(f"/console/sessions/{session_id + 99}/recordings/1.webm").status_code
        == 404
    )


def test_an_unreachable_store_is_a_clear_error_not_a_500(
    app, console, make_customer, media, monkeypatch
):
    for name, value in (("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test")):
        monkeypatch.setenv(name, value)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    app.extensions["lens.storage"] = S3Storage(BUCKET, dead, "us-east-1")
    session_id = started_session(app, console, make_customer)
    taken = console.post(f"/sessions/{session_id}/snapshots")
    assert taken.status_code == 503
    assert "could not be stored" in taken.text
    with app.app_context():
        assert db.session.scalars(select(Snapshot)).first() is None  # nothing half-kept
