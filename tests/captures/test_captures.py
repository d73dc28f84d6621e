"""Take snapshot, downloads, Start/Stop recording and playback, and who may use them."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import av
import pytest
from sqlalchemy import select

from lens import features
from lens.captures.models import Recording, Snapshot
from lens.extensions import db
from lens.sessions.models import SessionEvent
from tests.captures.conftest import counts, restrict, session_id_of, started_session
from tests.conftest import Console


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def event_kinds(app, session_id: int) -> list[str]:
    with app.app_context():
        return list(
            db.session.scalars(
                select(SessionEvent.kind)
                .where(SessionEvent.session_id == session_id)
                .order_by(SessionEvent.id)
            )
        )


# --- snapshots -------------------------------------------------------------------------


def test_take_snapshot_stores_the_png_with_the_session(app, console, active, media):
    response = console.post(f"/sessions/{active}/snapshots")
    assert response.status_code == 200, response.text
    assert media.calls == [("snapshot", active)]
    with app.app_context():
        snapshot = db.session.scalars(select(Snapshot)).one()
        file = Path(app.instance_path) / snapshot.path
        assert file.parent == Path(app.instance_path) / "captures" / str(active)
        assert png_size(file.read_bytes()) == (352, 288) == (snapshot.width, snapshot.height)
        assert snapshot.bytes == file.stat().st_size
        assert snapshot.technician.email == "tess@example.com"
    # the thumbnail is in the swapped partial, with its downloads
    assert f'id="captures-{active}"' in response.text
    assert f"/console/sessions/{active}/snapshots/{snapshot.id}/image" in response.text
    assert f"/console/sessions/{active}/snapshots/{snapshot.id}.jpg" in response.text
    assert event_kinds(app, active)[-1] == "snapshot"
    # and the session's log says so
    log = console.client.get(f"/console/sessions/{active}").text
    assert "Snapshot taken (352x288)" in log


def test_snapshot_downloads_as_png_and_jpeg(app, console, active, media):
    console.post(f"/sessions/{active}/snapshots")
    with app.app_context():
        snapshot_id = db.session.scalars(select(Snapshot.id)).one()
    base = f"/console/sessions/{active}/snapshots/{snapshot_id}"

    png = console.client.get(base + ".png")
    assert png.status_code == 200
    assert png.mimetype == "image/png"
    assert png.headers["Content-Disposition"].startswith("attachment;")
    assert png.headers["Content-Disposition"].endswith(".png")
    assert png_size(png.data) == (352, 288)

    jpeg = console.client.get(base + ".jpg")
    assert jpeg.status_code == 200
    assert jpeg.mimetype == "image/jpeg"
    assert "attachment;" in jpeg.headers["Content-Disposition"]
    assert jpeg.data[:3] == b"\xff\xd8\xff"
    with av.open(io.BytesIO(jpeg.data), format="jpeg_pipe") as image:
        picture = next(image.decode(video=0))
    assert (picture.width, picture.height) == (352, 288)

    shown = console.client.get(base + "/image")
    assert shown.status_code == 200
    assert shown.headers["Content-Disposition"].startswith("inline")
    assert console.client.get(base + ".gif").status_code == 404
    assert event_kinds(app, active)[-2:] == ["snapshot_downloaded", "snapshot_downloaded"]


def test_only_the_sessions_technician_sees_its_snapshots(
    app, console, active, media, other_console
):
    console.post(f"/sessions/{active}/snapshots")
    with app.app_context():
        snapshot_id = db.session.scalars(select(Snapshot.id)).one()
    base = f"/console/sessions/{active}/snapshots/{snapshot_id}"
    before = counts(app, active)
    for path in (base + ".png", base + ".jpg", base + "/image"):
        assert other_console.client.get(path).status_code == 403
    assert other_console.post(f"/sessions/{active}/snapshots").status_code == 403
    assert other_console.post(f"/sessions/{active}/recording/start").status_code == 403
    assert counts(app, active) == before
    assert media.calls == [("snapshot", active)]
    # logged out: to the log-in page
    console.client.post("/logout", headers={"X-CSRFToken": console.token})
    assert console.client.get(base + ".png").status_code == 302


def test_a_snapshot_of_another_session_is_not_found(app, console, active, media, make_customer):
    console.post(f"/sessions/{active}/snapshots")
    with app.app_context():
        snapshot_id = db.session.scalars(select(Snapshot.id)).one()
    console.post(f"/sessions/{active}/end")
    second = started_session(app, console, make_customer)
    assert (
        console.client.get(f"/console/sessions/{second}/snapshots/{snapshot_id}.png").status_code
        == 404
    )


def test_a_snapshot_needs_an_active_session(app, console, media):
    pin = console.create_session()["pin"]
    session_id = session_id_of(app, pin)
    before = counts(app, session_id)
    response = console.post(f"/sessions/{session_id}/snapshots")
    assert response.status_code == 409
    assert "current state" in response.text
    assert counts(app, session_id) == before and media.calls == []


def test_a_sidecar_that_is_down_or_refuses_stores_nothing(app, console, active, media):
    before = counts(app, active)
    media.down = True
    response = console.post(f"/sessions/{active}/snapshots")
    assert response.status_code == 503
    assert "media server is not answering" in response.text
    media.down, media.refuse = False, True
    response = console.post(f"/sessions/{active}/snapshots")
    assert response.status_code == 409
    assert "refused" in response.text
    assert counts(app, active) == before
    assert not (Path(app.instance_path) / "captures").exists()


# --- recordings ------------------------------------------------------------------------


def test_start_and_stop_recording_keep_the_file_with_the_session(app, console, active, media):
    response = console.post(f"/sessions/{active}/recording/start")
    assert response.status_code == 200, response.text
    assert "Stop recording" in response.text and "Start recording" not in response.text
    root = Path(app.config["LENS_RECORDINGS_PATH"])
    with app.app_context():
        recording = db.session.scalars(select(Recording)).one()
        assert recording.is_running and recording.path.startswith(f"{active}/")
        assert (root / recording.path).is_file()
    assert console.post(f"/sessions/{active}/recording/start").status_code == 409

    response = console.post(f"/sessions/{active}/recording/stop")
    assert response.status_code == 200, response.text
    assert "Start recording" in response.text
    assert [c[2] for c in media.calls] == ["start", "stop"]
    with app.app_context():
        recording = db.session.scalars(select(Recording)).one()
        assert recording.stopped_at is not None
        assert (recording.duration, recording.size) == (12.5, 4100)
    src = f"/console/sessions/{active}/recordings/{recording.id}.webm"
    assert f'<video controls preload="metadata" src="{src}"' in response.text
    assert event_kinds(app, active)[-2:] == ["recording_started", "recording_stopped"]
    assert console.post(f"/sessions/{active}/recording/stop").status_code == 409

    # playable: the right type, and byte ranges for seeking
    whole = console.client.get(src)
    assert whole.status_code == 200 and whole.mimetype == "video/webm"
    assert whole.headers["Accept-Ranges"] == "bytes"
    assert whole.headers["Content-Disposition"].startswith("inline")
    part = console.client.get(src, headers={"Range": "bytes=0-3"})
    assert part.status_code == 206 and part.data == b"\x1aE\xdf\xa3"
    assert part.headers["Content-Range"].startswith("bytes 0-3/")
    kept = console.client.get(src + "?download=1")
    assert kept.headers["Content-Disposition"].startswith("attachment;")
    assert console.client.get(src.replace(".webm", ".mkv")).status_code == 404


def test_ending_the_session_finishes_its_recording(app, console, active, media):
    console.post(f"/sessions/{active}/recording/start")
    assert console.post(f"/sessions/{active}/end").status_code == 200
    assert [c for c in media.calls if c[0] != "snapshot"][-2:] == [
        ("recording", active, "finish"),
        ("close", active),
    ]
    with app.app_context():
        recording = db.session.scalars(select(Recording)).one()
        assert recording.stopped_at is not None and recording.duration == 12.5
    assert "recording_stopped" in event_kinds(app, active)


# --- the Web Console and restricted groups -----------------------------------------------


@pytest.fixture
def web_console(client, technician) -> Console:
    con = Console(client, prefix="/web")
    assert con.login("tess@example.com").status_code == 302
    return con


@pytest.mark.parametrize(
    "path",
    ["/sessions/{id}/snapshots", "/sessions/{id}/recording/start", "/sessions/{id}/recording/stop"],
)
def test_the_web_console_refuses_capture_and_recording(
    app, web_console, make_customer, media, path
):
    session_id = started_session(app, web_console, make_customer)
    before = counts(app, session_id)
    for prefix in ("/web", "/console"):  # the session's console decides, not the URL
        response = web_console.client.post(
            prefix + path.format(id=session_id),
            headers={"HX-Request": "true", "X-CSRFToken": web_console.token},
        )
        assert response.status_code == 403
        assert "The Web Console has no" in response.text
    assert counts(app, session_id) == before
    assert media.calls == []
    assert not (Path(app.instance_path) / "captures").exists()
    assert not Path(app.config["LENS_RECORDINGS_PATH"]).exists()


def test_the_web_console_shows_no_capture_tools(app, web_console, make_customer, media):
    session_id = started_session(app, web_console, make_customer)
    panel = web_console.client.get(f"/web/sessions/{session_id}").text
    assert "Take snapshot" not in panel and "Start recording" not in panel


def test_a_group_without_snapshot_or_recording_is_refused(app, console, make_customer, media):
    restrict(app, "tess@example.com", {features.SNAPSHOT})
    active = started_session(app, console, make_customer)
    before = counts(app, active)
    response = console.post(f"/sessions/{active}/snapshots")
    assert response.status_code == 403
    assert "Your group is not permitted to use screen capture" in response.text
    panel = console.client.get(f"/console/sessions/{active}").text
    assert "Take snapshot" not in panel and "Start recording" in panel

    console.post(f"/sessions/{active}/end")
    restrict(app, "tess@example.com", {features.RECORDING})
    active = started_session(app, console, make_customer)
    before = counts(app, active)
    response = console.post(f"/sessions/{active}/recording/start")
    assert response.status_code == 403
    assert "Your group is not permitted to record" in response.text
    assert counts(app, active) == before
    assert [call[0] for call in media.calls] == ["close"]  # the first session's end only


def test_the_tools_speak_dutch(app, console, active, media):
    dutch = {"Accept-Language": "nl"}
    panel = console.client.get(f"/console/sessions/{active}", headers=dutch).text
    assert 'aria-label="Schermopname"' in panel
    assert ">Schermopname maken</button>" in panel and ">Opname starten</button>" in panel
    response = console.client.post(
        f"/console/sessions/{active}/recording/start",
        headers={**dutch, "HX-Request": "true", "X-CSRFToken": console.token},
    )
    assert ">Opname stoppen</button>" in response.text
