"""Full-resolution photos: asked for over the control channel, uploaded by the phone."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from lens import features
from lens.captures.images import NotAPhoto, declared_size, photo_size
from lens.captures.models import Snapshot
from lens.controls.channel import controls_topic, receive_control
from lens.controls.messages import TECHNICIAN
from lens.extensions import db
from lens.features import features_of
from lens.sessions.models import LensSession, SessionEvent
from tests.captures.conftest import (
    make_jpeg,
    make_png,
    restrict,
    session_id_of,
    started_phone,
)

REQUEST = "a1b2c3d4e5f60718"


@pytest.fixture
def started(app, console, make_customer, media):
    """An active session and the phone that joined it."""
    return started_phone(app, console, make_customer)


def ask_for_photo(app, session_id: int, request: str = REQUEST, console: str = "technician"):
    """The technician's page sends a photo request over the control channel."""
    with app.test_request_context():
        lens_session = db.session.get(LensSession, session_id)
        actor = f"technician:{lens_session.technician_id}"
        allowed = features_of(lens_session, console)
        message = {"type": "photo", "request": request}
        return receive_control(session_id, TECHNICIAN, actor, allowed, message, console)


def upload(phone, body: bytes, request: str = REQUEST, content_type: str = "image/jpeg"):
    headers = {"X-CSRFToken": phone.token, "Content-Type": content_type}
    return phone.client.post(f"/c/photos/{request}", data=body, headers=headers)


def photos_of(app, session_id: int) -> list[Snapshot]:
    with app.app_context():
        query = select(Snapshot).where(Snapshot.session_id == session_id)
        rows = list(db.session.scalars(query))
        db.session.expunge_all()
        return rows


def test_a_requested_photo_is_kept_with_its_real_size(app, console, started):
    session_id, phone = started
    bus = app.extensions["lens.events"]
    subscription = bus.subscribe([controls_topic(session_id)])
    assert ask_for_photo(app, session_id) is None
    jpeg = make_jpeg(1920, 1440)

    response = upload(phone, jpeg)

    assert response.status_code == 201, response.text
    assert response.json["width"] == 1920 and response.json["height"] == 1440
    (photo,) = photos_of(app, session_id)
    assert (photo.source, photo.width, photo.height, photo.bytes) == (
        "camera",
        1920,
        1440,
        len(jpeg),
    )
    assert photo.path.endswith(".jpg") and photo.request_id == REQUEST
    assert (Path(app.instance_path) / photo.path).read_bytes() == jpeg
    with app.app_context():
        kinds = db.session.scalars(
            select(SessionEvent.kind).where(SessionEvent.session_id == session_id)
        ).all()
    assert "photo" in kinds and "photo_taken" in kinds
    # the technician's page hears of it on the session's channel
    message = subscription.get(timeout=5)
    while message is not None and message.get("type") != "photo_taken":
        message = subscription.get(timeout=5)  # the request itself came first
    subscription.close()
    assert message["request"] == REQUEST and message["from"] == "customer"
    assert (message["width"], message["height"]) == (1920, 1440)

    panel = console.client.get(f"/console/sessions/{session_id}/captures").text
    assert "Photo" in panel and "1920×1440" in panel
    image = console.client.get(f"/console/sessions/{session_id}/snapshots/{photo.id}/image")
    assert image.mimetype == "image/jpeg" and image.data == jpeg
    download = console.client.get(f"/console/sessions/{session_id}/snapshots/{photo.id}.jpg")
    assert download.data == jpeg
    assert (
        console.client.get(f"/console/sessions/{session_id}/snapshots/{photo.id}.png").status_code
        == 404
    )


def test_a_png_photo_is_kept_as_png(app, started):
    session_id, phone = started
    ask_for_photo(app, session_id)
    assert upload(phone, make_png(800, 600), content_type="image/png").status_code == 201
    (photo,) = photos_of(app, session_id)
    assert photo.path.endswith(".png") and (photo.width, photo.height) == (800, 600)


def test_a_photo_nobody_asked_for_is_refused(app, started):
    session_id, phone = started
    response = upload(phone, make_jpeg(640, 480))
    assert response.status_code == 409
    assert response.json["error"] == "not_requested"
    assert photos_of(app, session_id) == []


def test_one_photo_per_request(app, started):
    session_id, phone = started
    ask_for_photo(app, session_id)
    assert upload(phone, make_jpeg(640, 480)).status_code == 201
    again = upload(phone, make_jpeg(640, 480))
    assert again.status_code == 409 and again.json["error"] == "already_taken"
    assert len(photos_of(app, session_id)) == 1


def test_only_pictures_within_the_limits_are_kept(app, started):
    session_id, phone = started
    ask_for_photo(app, session_id)
    assert upload(phone, b"GIF89a" + b"\0" * 100).status_code == 422
    assert upload(phone, b"\xff\xd8\xff" + b"junk" * 100).status_code == 422
    app.config["LENS_PHOTO_MAX_PIXELS"] = 640 * 480
    assert upload(phone, make_jpeg(800, 600)).status_code == 422
    app.config["LENS_PHOTO_MAX_BYTES"] = 1000
    assert upload(phone, make_jpeg(640, 480)).status_code == 413
    assert photos_of(app, session_id) == []


def test_an_upload_needs_the_phones_csrf_token(app, started):
    session_id, phone = started
    ask_for_photo(app, session_id)
    response = phone.client.post(
        f"/c/photos/{REQUEST}", data=make_jpeg(320, 240), headers={"Content-Type": "image/jpeg"}
    )
    assert response.status_code == 400
    assert photos_of(app, session_id) == []


def test_another_phone_cannot_answer_the_request(app, console, started, make_customer):
    session_id, _phone = started
    ask_for_photo(app, session_id)
    other = make_customer("198.51.100.99")
    pin = console.create_session("Other Customer")["pin"]
    other.join(pin)
    assert upload(other, make_jpeg(320, 240)).status_code == 409  # its session asked nothing
    stranger = make_customer("198.51.100.100")
    assert upload(stranger, make_jpeg(320, 240)).status_code == 410  # no session at all
    assert photos_of(app, session_id) == []


def test_the_web_console_and_a_group_without_capture_cannot_ask(app, console, make_customer, media):
    pin = console.create_session()["pin"]
    session_id = session_id_of(app, pin)
    refused = ask_for_photo(app, session_id, console="web")
    assert refused["reason"] == "not_allowed"

    restrict(app, "tess@example.com", {features.SNAPSHOT})
    session_id, phone = started_phone(
        app, console, make_customer, "Without Capture", remote_addr="198.51.100.20"
    )
    assert ask_for_photo(app, session_id)["reason"] == "not_allowed"
    assert upload(phone, make_jpeg(320, 240)).status_code == 403
    assert photos_of(app, session_id) == []


def test_the_take_photo_button_is_offered_where_snapshots_are(app, console, started):
    session_id, _phone = started
    panel = console.client.get(f"/console/sessions/{session_id}/captures").text
    assert "Take photo" in panel and "Take snapshot" in panel


def test_a_photo_may_be_larger_than_any_other_body(app, started):
    session_id, phone = started
    ask_for_photo(app, session_id)
    jpeg = make_jpeg(1280, 960)
    app.config["MAX_CONTENT_LENGTH"] = len(jpeg) // 2  # every other body: refused unread
    assert phone.join("1" * len(jpeg)).status_code == 413
    assert upload(phone, jpeg).status_code == 201


def test_a_pictures_size_is_read_from_its_header_before_it_is_decoded():
    assert declared_size(make_jpeg(1920, 1440)) == (1920, 1440)
    assert declared_size(make_png(800, 600)) == (800, 600)
    # a PNG that claims 60000×60000 pixels is refused without decoding a byte of it
    bomb = bytearray(make_png(8, 8))
    bomb[16:24] = (60000).to_bytes(4, "big") * 2
    with pytest.raises(NotAPhoto):
        photo_size(bytes(bomb), 64_000_000)
    with pytest.raises(NotAPhoto):
        photo_size(b"\xff\xd8\xff\xd9", 64_000_000)  # a JPEG without a frame


def test_the_socket_and_the_upload_agree_on_a_requests_name(app, started):
    session_id, phone = started
    for name in ("a1b2c3d4", "A-_" + "x" * 29):  # 8 and 32 characters
        assert ask_for_photo(app, session_id, name) is None
        assert upload(phone, make_jpeg(320, 240), request=name).status_code == 201
    for name in ("a1b2c3d", "x" * 33, "a1b2c3d4.jpg", "a1b2%20c3d4"):
        assert ask_for_photo(app, session_id, name)["reason"] == "bad_message"
        assert upload(phone, make_jpeg(320, 240), request=name).status_code == 404
    assert len(photos_of(app, session_id)) == 2
