"""Freeze, drawing and display settings from the technician's console to the phone's screen."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.test_media_flow import FRAMES, PHONE_READY
from tests.browser.test_session_flow import console_of, create_pin, customer_joins

pytestmark = [pytest.mark.browser, pytest.mark.media]

# Where a picture point (0..1) lies on the page: the video's picture rect, letterboxing included.
TECH_POINT = """([x, y]) => {
  const video = document.querySelector('.remote-video');
  const box = video.getBoundingClientRect();
  const r = LensDraw.elementPicture(video, video.videoWidth, video.videoHeight);
  return [box.left + r.x + x * r.width, box.top + r.y + y * r.height];
}"""

# How many painted pixels the phone's drawing canvas has around a picture point (radius in
# CSS px), or in all of it without a point.
PHONE_INK = """([point, radius]) => {
  const canvas = document.getElementById('technician-drawing');
  const frozen = document.getElementById('frozen-picture');
  const preview = document.getElementById('preview');
  const r = frozen.hidden
    ? LensDraw.elementPicture(preview, preview.videoWidth, preview.videoHeight)
    : LensDraw.elementPicture(frozen, frozen.width, frozen.height);
  const scale = canvas.width / canvas.clientWidth;
  let x = 0, y = 0, w = canvas.width, h = canvas.height;
  if (point) {
    x = Math.round((r.x + point[0] * r.width - radius) * scale);
    y = Math.round((r.y + point[1] * r.height - radius) * scale);
    w = h = Math.round(2 * radius * scale);
  }
  if (!w || !h) return 0;
  const data = canvas.getContext('2d').getImageData(x, y, w, h).data;
  let ink = 0;
  for (let i = 3; i < data.length; i += 4) if (data[i] > 0) ink++;
  return ink;
}"""

PHONE_VIDEO_WIDTH = "() => window.lensCustomer.stream.getVideoTracks()[0].getSettings().width"


def assert_bar_below_picture(page) -> None:
    """The connection bar covers no part of the picture (all of it can be drawn on)."""
    bar = page.locator(".video-bar").bounding_box()
    stage = page.locator(".video-stage").bounding_box()
    assert bar["y"] >= stage["y"] + stage["height"] - 1


def drag(page, start: tuple[float, float], end: tuple[float, float]) -> None:
    """Drag the mouse between two picture points of the technician's video."""
    x0, y0 = page.evaluate(TECH_POINT, list(start))
    x1, y1 = page.evaluate(TECH_POINT, list(end))
    page.mouse.move(x0, y0)
    page.mouse.down()
    for step in range(1, 11):
        page.mouse.move(x0 + (x1 - x0) * step / 10, y0 + (y1 - y0) * step / 10)
    page.mouse.up()


def test_the_technicians_drawing_freeze_and_quality_reach_the_phone(
    app, technician, live_server, sidecar, browser, shots
):
    tech_context, tech = console_of(browser, live_server)
    pin = create_pin(tech, "Drawing Customer")
    phone_context, phone = customer_joins(browser, live_server, pin)
    phone.wait_for_function(PHONE_READY, timeout=15000)
    row = tech.get_by_role("row").filter(has_text="Drawing Customer")
    row.get_by_role("button", name="Start").click()
    expect(row).to_contain_text("Active")
    # the Start click also selects the row, and that panel may be the one from before Start
    row.get_by_role("cell", name="Drawing Customer", exact=True).click()
    expect(tech.locator(".media-state")).to_have_text("Connected", timeout=15000)
    tech.wait_for_function(f"({FRAMES})() > 10", timeout=15000)
    tools = tech.get_by_role("toolbar", name="Video tools")
    assert_bar_below_picture(tech)
    # this test checks where shapes land on both screens: pinned, they stay where drawn
    # (following the content is tests/browser/test_anchored_drawing.py's)
    pin_to_screen = tools.get_by_role("button", name="Pin to screen")
    pin_to_screen.click()
    expect(pin_to_screen).to_have_attribute("aria-pressed", "true")

    # an arrow drawn on the technician's video shows on the phone at the same picture place
    tools.get_by_role("button", name="Arrow").click()
    expect(tools.get_by_role("button", name="Arrow")).to_have_attribute("aria-pressed", "true")
    drag(tech, (0.3, 0.3), (0.6, 0.5))
    phone.wait_for_function(f"({PHONE_INK})([[0.45, 0.4], 4]) > 0", timeout=10000)
    assert phone.evaluate(PHONE_INK, [[0.45, 0.4], 4]) > 0  # the arrow's middle
    assert phone.evaluate(PHONE_INK, [[0.6, 0.5], 4]) > 0  # its head
    assert phone.evaluate(PHONE_INK, [[0.15, 0.8], 10]) == 0  # nowhere near it
    expect(phone.get_by_role("status").filter(has_text="pointing something out")).to_be_visible()
    tech.screenshot(path=str(shots / "tools-1-console-arrow.png"))
    phone.screenshot(path=str(shots / "tools-1-phone-arrow.png"))

    tools.get_by_role("button", name="Erase drawings").click()
    phone.wait_for_function(f"({PHONE_INK})([null, 0]) === 0", timeout=10000)

    # Freeze: both sides hold the picture; a circle drawn on the still shows on the phone
    tools.get_by_role("button", name="Freeze").click()
    expect(tools.get_by_role("button", name="Unfreeze")).to_have_attribute("aria-pressed", "true")
    expect(tech.locator(".freeze-canvas")).to_be_visible()
    expect(phone.get_by_role("img", name="Frozen picture")).to_be_visible(timeout=10000)
    expect(phone.locator("#overlay-note")).to_contain_text("froze the picture")
    tools.get_by_role("button", name="Circle").click()
    drag(tech, (0.5, 0.5), (0.6, 0.5))
    phone.wait_for_function(f"({PHONE_INK})([[0.6, 0.5], 4]) > 0", timeout=10000)
    assert phone.evaluate(PHONE_INK, [[0.5, 0.5], 4]) == 0  # a ring, not a disc
    tech.screenshot(path=str(shots / "tools-2-console-frozen.png"))
    phone.screenshot(path=str(shots / "tools-2-phone-frozen.png"))
    tools.get_by_role("button", name="Unfreeze").click()
    expect(phone.get_by_role("img", name="Frozen picture")).to_be_hidden(timeout=10000)
    expect(tech.locator(".freeze-canvas")).to_be_hidden()

    # Display settings: the phone's camera is asked for more, then for less (the fake
    # camera is one device for the whole Chromium: another page may hold it at a low size)
    tools.get_by_label("Video quality").select_option("high")
    phone.wait_for_function(f"({PHONE_VIDEO_WIDTH})() > 320", timeout=10000)
    tools.get_by_label("Video quality").select_option("low")
    phone.wait_for_function(f"({PHONE_VIDEO_WIDTH})() <= 320", timeout=10000)
    tools.get_by_role("button", name="Zoom in").click()
    frame = tech.locator(".video-frame")
    stage = tech.locator(".video-stage")
    assert frame.bounding_box()["width"] > stage.bounding_box()["width"] * 1.2
    tools.get_by_role("button", name="Fit").click()
    assert abs(frame.bounding_box()["width"] - stage.bounding_box()["width"]) < 2

    # the fake camera has no flashlight: the console says so instead of asking
    torch = tools.get_by_role("button", name="Flashlight")
    expect(torch).to_be_disabled()  # aria-disabled: still focusable, and it explains itself
    torch.focus()
    tech.keyboard.press("Enter")
    expect(tools.get_by_role("status")).to_contain_text("no flashlight")

    # Text goes where the technician clicks
    tools.get_by_role("button", name="Text").click()
    x, y = tech.evaluate(TECH_POINT, [0.2, 0.7])
    tech.mouse.click(x, y)
    words = tech.get_by_label("Type the text, then press Enter")
    words.fill("Here")
    words.press("Enter")
    phone.wait_for_function(f"({PHONE_INK})([[0.22, 0.72], 6]) > 0", timeout=10000)
    assert phone.evaluate(PHONE_INK, [[0.6, 0.5], 4]) > 0  # the circle is still there

    # view: actual size shows the video's own pixels; full screen and back
    tools.get_by_role("button", name="Actual size").click()
    expect(tools.get_by_role("button", name="Actual size")).to_have_attribute(
        "aria-pressed", "true"
    )
    video_width = tech.evaluate("document.querySelector('.remote-video').videoWidth")
    assert abs(frame.bounding_box()["width"] - video_width) < 2
    tools.get_by_role("button", name="Fit").click()
    tools.get_by_role("button", name="Full screen").click()
    tech.wait_for_function("document.fullscreenElement?.classList.contains('video-shell')")
    # the picture takes the screen, the bar and the tools stay below it
    assert stage.bounding_box()["height"] > 0.6 * tech.viewport_size["height"]
    assert_bar_below_picture(tech)
    tech.screenshot(path=str(shots / "tools-5-console-full-screen.png"))
    tools.get_by_role("button", name="Exit full screen").click()
    tech.wait_for_function("document.fullscreenElement === null")
    tools.get_by_role("button", name="Fit").click()

    # a reopened panel knows the phone is still frozen and still shows drawings
    tools.get_by_role("button", name="Freeze").click()
    expect(phone.get_by_role("img", name="Frozen picture")).to_be_visible(timeout=10000)
    row.click()
    expect(tools.get_by_role("button", name="Unfreeze")).to_have_attribute("aria-pressed", "true")
    expect(tools.get_by_role("status")).to_contain_text("still sees the drawings")
    expect(tools.get_by_label("Video quality")).to_have_value("low")
    tools.get_by_role("button", name="Unfreeze").click()
    expect(phone.get_by_role("img", name="Frozen picture")).to_be_hidden(timeout=10000)

    # every tool use is in the session log
    row.click()
    log = tech.get_by_role("list", name="Session log")
    # (each drawing is not: it lasts until erased, and would be pushed to every console)
    for line in ("Drawings erased", "Picture frozen", "Picture unfrozen"):
        expect(log).to_contain_text(line)
    expect(log).to_contain_text("Video quality set to Low")

    for context in (phone_context, tech_context):
        context.close()


# The fake camera has no flashlight: this phone says it has one, and records what it is asked.
# It lists two ordinary cameras.
FAKE_TORCH = """
(() => {
  const capabilities = MediaStreamTrack.prototype.getCapabilities;
  MediaStreamTrack.prototype.getCapabilities = function () {
    const found = capabilities.call(this);
    if (this.kind === "video") found.torch = true;
    return found;
  };
  // Chromium's second fake camera is a depth camera (16-bit grey) that WebRTC cannot encode;
  // its third is an ordinary one: this phone has the first and the third
  const enumerate = MediaDevices.prototype.enumerateDevices;
  MediaDevices.prototype.enumerateDevices = async function () {
    return (await enumerate.call(this)).filter((d) => d.label !== "fake_device_1");
  };
  const apply = MediaStreamTrack.prototype.applyConstraints;
  window.torchAsked = [];
  MediaStreamTrack.prototype.applyConstraints = function (constraints) {
    if (constraints && constraints.advanced) {
      window.torchAsked.push(constraints.advanced[0].torch);
      return Promise.resolve();
    }
    return apply.call(this, constraints);
  };
})();
"""

PHONE_CAMERA = "() => window.lensCustomer.stream.getVideoTracks()[0].getSettings().deviceId"


class WithScript:
    """A browser whose new contexts run a script before each page's own."""

    def __init__(self, browser, script: str) -> None:
        self.browser = browser
        self.script = script

    def new_context(self, **options):
        context = self.browser.new_context(**options)
        context.add_init_script(self.script)
        return context


@pytest.fixture
def two_camera_browser(browser, live_server):
    """Chromium with three fake cameras (the page under FAKE_TORCH sees two of them)."""
    from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS

    args = [a for a in CHROMIUM_ARGS if not a.startswith("--use-fake-device-for-media-stream")]
    args.append("--use-fake-device-for-media-stream=fps=30,device-count=3")
    chromium = browser.browser_type.launch(executable_path=CHROMIUM, args=args)
    # a first page load, so the pages' scripts are ready as soon as their buttons show
    warm = chromium.new_page()
    warm.goto(live_server + "/")
    warm.wait_for_function("window.htmx !== undefined")
    warm.close()
    yield chromium
    chromium.close()


def test_flashlight_and_camera_switch_from_the_console(
    app, technician, live_server, sidecar, two_camera_browser
):
    browser = two_camera_browser
    tech_context, tech = console_of(browser, live_server)
    pin = create_pin(tech, "Torch Customer")
    phone_context, phone = customer_joins(WithScript(browser, FAKE_TORCH), live_server, pin)
    phone.wait_for_function(PHONE_READY, timeout=15000)
    row = tech.get_by_role("row").filter(has_text="Torch Customer")
    row.get_by_role("button", name="Start").click()
    expect(row).to_contain_text("Active")
    row.get_by_role("cell", name="Torch Customer", exact=True).click()
    expect(tech.locator(".media-state")).to_have_text("Connected", timeout=15000)
    tools = tech.get_by_role("toolbar", name="Video tools")

    torch = tools.get_by_role("button", name="Flashlight")
    expect(torch).to_be_enabled()
    torch.click()
    expect(torch).to_have_attribute("aria-pressed", "true")
    phone.wait_for_function("window.torchAsked.length === 1 && window.torchAsked[0] === true")
    expect(phone.locator("#overlay-note")).to_contain_text("turned the flashlight on")

    first_camera = phone.evaluate(PHONE_CAMERA)
    frames = tech.evaluate(FRAMES)
    switch = tools.get_by_role("button", name="Switch camera")
    expect(switch).to_be_enabled()
    switch.click()
    expect(tools.get_by_role("status")).to_have_text("Camera switched", timeout=10000)
    assert phone.evaluate(PHONE_CAMERA) != first_camera
    expect(phone.locator("#overlay-note")).to_contain_text("switched the camera")
    # the new camera's picture reaches the technician (the relay forwards packets and
    # restarts the technician's stream at the new camera's first keyframe)
    tech.wait_for_function(f"({FRAMES})() > {frames + 30}", timeout=25000)

    for context in (phone_context, tech_context):
        context.close()
