"""Take snapshot and recording in the Technician Console, through the real sidecar."""

from __future__ import annotations

import struct
import time
from pathlib import Path

import pytest
import requests
from playwright.sync_api import expect
from sqlalchemy import select

from lens.captures.models import Recording, Snapshot
from lens.extensions import db
from lens.sessions.models import LensSession
from tests.browser.test_media_flow import FRAMES
from tests.browser.test_session_flow import console_of, create_pin, customer_joins

pytestmark = [pytest.mark.browser, pytest.mark.media]

VIDEO_SIZE = """() => {
  const v = document.querySelector('.remote-video');
  return [v.videoWidth, v.videoHeight];
}"""


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def recorded_frames(sidecar, session_id: int) -> int:
    """Video frames the sidecar has written to the session's recording so far."""
    state = requests.get(
        f"{sidecar.url}/sessions/{session_id}",
        headers={"Authorization": f"Bearer {sidecar.secret}"},
        timeout=5,
    ).json()
    return (state.get("recording") or {}).get("video_frames", 0)


def test_take_snapshot_and_record_in_the_console(
    app, technician, live_server, sidecar, browser, shots
):
    tech_context, tech = console_of(browser, live_server)
    pin = create_pin(tech, "Capture Customer")
    with app.app_context():
        session_id = db.session.scalar(select(LensSession.id).where(LensSession.pin == pin))
    phone_context, phone = customer_joins(browser, live_server, pin)

    # select the row first, then Start in its panel (a Start inside the row also selects
    # the row, and that panel can arrive after the started one)
    tech.get_by_role("row").filter(has_text="Capture Customer").get_by_role("cell").first.click()
    panel = tech.locator("#session-panel")
    panel.get_by_role("button", name="Start", exact=True).click()
    expect(tech.locator(".media-state")).to_have_text("Connected", timeout=15000)
    tech.wait_for_function(f"({FRAMES})() > 15", timeout=15000)

    # Take snapshot: a thumbnail appears, and the stored image has the video's resolution
    video_size = tuple(tech.evaluate(VIDEO_SIZE))
    tech.get_by_role("button", name="Take snapshot").click()
    snapshots = tech.get_by_role("list", name="Snapshots")
    thumbnail = snapshots.get_by_role("img")
    expect(thumbnail).to_have_count(1, timeout=10000)
    tech.wait_for_function(
        "() => { const i = document.querySelector('.snapshots img'); "
        "return i && i.complete && i.naturalWidth > 0; }",
        timeout=10000,
    )
    assert tuple(tech.evaluate(VIDEO_SIZE)) == video_size  # the picture did not change size
    with app.app_context():
        snapshot = db.session.scalars(select(Snapshot)).one()
        stored = (Path(app.instance_path) / snapshot.path).read_bytes()
    assert png_size(stored) == (snapshot.width, snapshot.height) == video_size
    natural = tech.evaluate(
        "() => { const i = document.querySelector('.snapshots img');"
        " return [i.naturalWidth, i.naturalHeight]; }"
    )
    assert tuple(natural) == video_size
    expect(
        tech.get_by_role("link", name=f"Download snapshot {snapshot.id} as JPEG")
    ).to_be_visible()
    expect(tech.locator(".session-log")).to_contain_text("Snapshot taken")

    # Start recording, let some video pass, Stop recording: the recording plays in the page
    tech.get_by_role("button", name="Start recording").click()
    stop = tech.get_by_role("button", name="Stop recording")
    expect(stop).to_be_visible(timeout=10000)
    told = phone.get_by_text("Your technician is recording this session.")
    expect(told).to_be_visible(timeout=10000)  # the customer is told, live
    # two seconds of video in the file (the phone's keyframe can take a moment to come)
    # the phone's encoder may change the resolution under load (Chrome's adaptation):
    # note every size the live video had while it was recorded
    live_sizes = {video_size}
    deadline = time.monotonic() + 15
    while recorded_frames(sidecar, session_id) < 60:
        assert time.monotonic() < deadline, "the sidecar wrote no video"
        live_sizes.add(tuple(tech.evaluate(VIDEO_SIZE)))
        time.sleep(0.1)  # polling the sidecar: it has no event to wait for
    live_sizes.add(tuple(tech.evaluate(VIDEO_SIZE)))
    stop.click()
    expect(told).to_be_hidden(timeout=10000)
    player = tech.get_by_role("list", name="Recordings").locator("video")
    expect(player).to_have_count(1, timeout=10000)
    tech.wait_for_function(
        "() => { const v = document.querySelector('.recordings video');"
        " return v && v.readyState >= 1 && v.videoWidth > 0; }",
        timeout=15000,
    )
    recorded_size = tuple(
        tech.evaluate(
            "() => { const v = document.querySelector('.recordings video');"
            " return [v.videoWidth, v.videoHeight]; }"
        )
    )
    assert recorded_size in live_sizes, f"recorded {recorded_size}, live video was {live_sizes}"
    tech.screenshot(path=str(shots / "console-captures.png"), full_page=True)
    with app.app_context():
        recording = db.session.scalars(select(Recording)).one()
        assert recording.duration and recording.duration >= 1.9
        assert recording.size and recording.size > 10_000
        assert recording.path.endswith(".webm")

    for context in (phone_context, tech_context):
        context.close()


CAMERA_SIZES = """async () => {
  const track = window.lensCustomer.stream.getVideoTracks()[0];
  const largest = track.getCapabilities();
  let photo = null;
  if (window.ImageCapture) {
    try {
      const c = await new ImageCapture(track).getPhotoCapabilities();
      if (c.imageWidth && c.imageWidth.max) photo = [c.imageWidth.max, c.imageHeight.max];
    } catch (error) { photo = null; }
  }
  const now = track.getSettings();
  return { photo: photo, track: [largest.width.max, largest.height.max],
           streaming: [now.width, now.height] };
}"""


def test_a_full_resolution_photo_from_the_phone(
    app, technician, live_server, sidecar, browser, shots
):
    tech_context, tech = console_of(browser, live_server)
    pin = create_pin(tech, "Photo Customer")
    phone_context, phone = customer_joins(browser, live_server, pin)
    tech.get_by_role("row").filter(has_text="Photo Customer").get_by_role("cell").first.click()
    panel = tech.locator("#session-panel")
    panel.get_by_role("button", name="Start", exact=True).click()
    expect(tech.locator(".media-state")).to_have_text("Connected", timeout=15000)
    sizes = phone.evaluate(CAMERA_SIZES)
    # the fake camera's full resolution: the larger of its photo and its largest frame
    full = max(tuple(sizes["photo"] or (0, 0)), tuple(sizes["track"]), key=lambda s: s[0] * s[1])
    streamed = tuple(sizes["streaming"])
    assert full[0] * full[1] > streamed[0] * streamed[1], sizes  # more than the video
    print(f"\nfake camera: {sizes}; expected photo {full}")

    tech.get_by_role("button", name="Take photo").click()
    size = f"{full[0]}×{full[1]}"
    expect(tech.get_by_role("status").filter(has_text="Photo received")).to_have_text(
        f"Photo received: {size}", timeout=20000
    )
    photos = tech.get_by_role("list", name="Snapshots").locator("li.photo")
    expect(photos).to_have_count(1)
    expect(photos).to_contain_text(size)  # its real size, shown
    expect(phone.get_by_text("Your technician took a photo with your camera.")).to_be_visible()
    tech.get_by_role("list", name="Snapshots").scroll_into_view_if_needed()
    tech.screenshot(path=str(shots / "console-photo.png"))
    phone.screenshot(path=str(shots / "phone-photo-taken.png"))
    with app.app_context():
        photo = db.session.scalars(select(Snapshot)).one()
        stored = (Path(app.instance_path) / photo.path).read_bytes()
    print(f"stored photo: {photo.width}x{photo.height}, {photo.bytes} bytes, {photo.path}")
    assert photo.source == "camera"
    assert (photo.width, photo.height) == full
    assert len(stored) == photo.bytes
    expect(tech.locator(".session-log")).to_contain_text("took a full-resolution photo")
    for context in (phone_context, tech_context):
        context.close()


# A phone's still camera: ImageCapture offers photos larger than any video frame (Chromium's
# fake camera does not, so its photo capabilities are replaced here, in the page).
STILL_CAMERA = """() => {
  window.photoSettings = null;
  ImageCapture.prototype.getPhotoCapabilities = async function () {
    return { imageWidth: { min: 160, max: 4000, step: 1 },
             imageHeight: { min: 120, max: 3000, step: 1 } };
  };
  ImageCapture.prototype.takePhoto = async function (settings) {
    window.photoSettings = settings;
    const canvas = document.createElement("canvas");
    canvas.width = settings.imageWidth;
    canvas.height = settings.imageHeight;
    canvas.getContext("2d").fillRect(0, 0, 10, 10);
    return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.9));
  };
}"""


def test_a_still_camera_photo_comes_from_take_photo(app, technician, live_server, sidecar, browser):
    tech_context, tech = console_of(browser, live_server)
    pin = create_pin(tech, "Still Customer")
    phone_context, phone = customer_joins(browser, live_server, pin)
    tech.get_by_role("row").filter(has_text="Still Customer").get_by_role("cell").first.click()
    tech.locator("#session-panel").get_by_role("button", name="Start", exact=True).click()
    expect(tech.get_by_role("button", name="Take photo")).to_be_visible()
    phone.evaluate(STILL_CAMERA)

    tech.get_by_role("button", name="Take photo").click()
    expect(tech.get_by_role("status").filter(has_text="Photo received")).to_have_text(
        "Photo received: 4000×3000", timeout=20000
    )
    assert phone.evaluate("window.photoSettings") == {"imageWidth": 4000, "imageHeight": 3000}
    with app.app_context():
        photo = db.session.scalars(select(Snapshot)).one()
    assert (photo.source, photo.width, photo.height) == ("camera", 4000, 3000)
    assert photo.path.endswith(".jpg")
    for context in (phone_context, tech_context):
        context.close()
