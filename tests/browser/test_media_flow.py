"""Live video and two-way audio through the sidecar, in Debian Chromium with fake devices."""

from __future__ import annotations

import os
import threading
import time

import pytest
from playwright.sync_api import expect

from tests.browser.test_session_flow import console_of, create_pin, customer_joins

pytestmark = [pytest.mark.browser, pytest.mark.media]

SENDER_BYTES = """async () => {
  const pc = window.lensCustomer.peer.pc;
  let bytes = 0;
  (await pc.getStats()).forEach((r) => {
    if (r.type === "outbound-rtp" && r.kind === "video") bytes += r.bytesSent;
  });
  return bytes;
}"""

PHONE_READY = """() => {
  const p = window.lensCustomer.peer;
  return p && p.pc && p.pc.connectionState === "connected";
}"""

FRAMES = """() => {
  const v = document.querySelector('.remote-video');
  return v ? v.getVideoPlaybackQuality().totalVideoFrames : 0;
}"""

TRACK_LIVE = """(selector) => {
  const el = document.querySelector(selector);
  const tracks = el && el.srcObject ? el.srcObject.getAudioTracks() : [];
  return tracks.length > 0 && tracks[0].readyState === "live";
}"""


LOST = "Connection lost. Reconnecting…"

# the console's connection before the sidecar is killed, and frames decoded on a newer one
MARK_PC = "() => { window.lensOldPc = window.lensConsoleMedia.current().peer.pc; }"
NEW_PC_FRAMES = """async () => {
  const session = window.lensConsoleMedia.current();
  const pc = session && session.peer && session.peer.pc;
  if (!pc || pc === window.lensOldPc) return 0;
  let frames = 0;
  (await pc.getStats()).forEach((r) => {
    if (r.type === "inbound-rtp" && r.kind === "video") frames += r.framesDecoded || 0;
  });
  return frames;
}"""


def assert_frame_rate(page, minimum: float) -> None:
    """Frames keep arriving for several seconds at >= minimum fps."""
    page.wait_for_function(f"({FRAMES})() > 10", timeout=10000)
    first = page.evaluate(FRAMES)
    start = page.evaluate("performance.now()")
    page.wait_for_timeout(3000)  # a measured window, not a wait for a condition
    frames = page.evaluate(FRAMES) - first
    seconds = (page.evaluate("performance.now()") - start) / 1000
    assert frames / seconds >= minimum, f"{frames} frames in {seconds:.1f} s"


def joined_phone(browser, base: str, name: str):
    """A console and a phone that joined its new session `name` and accepted, the phone's
    connection to the sidecar ready: ((tech context, page), (phone context, page))."""
    tech_context, tech = console_of(browser, base)
    pin = create_pin(tech, name)
    phone_context, phone = customer_joins(browser, base, pin)
    phone.wait_for_function(PHONE_READY, timeout=15000)
    return (tech_context, tech), (phone_context, phone)


def press_start(tech, name: str) -> None:
    """Start the session `name` in the console; its video connects."""
    tech.get_by_role("row").filter(has_text=name).get_by_role("button", name="Start").click()
    expect(tech.locator(".media-state")).to_have_text("Connected", timeout=15000)


def test_start_shows_live_video_and_audio(app, technician, live_server, sidecar, browser):
    # prepared in advance: connected to the sidecar, yet nothing sent before Start
    (tech_context, tech), (phone_context, phone) = joined_phone(
        browser, live_server, "Media Customer"
    )
    assert phone.evaluate(SENDER_BYTES) == 0

    press_start(tech, "Media Customer")

    assert_frame_rate(tech, minimum=20)
    assert tech.evaluate(TRACK_LIVE, ".remote-video")
    phone.wait_for_function(TRACK_LIVE, arg="#technician-audio", timeout=10000)
    assert phone.evaluate(SENDER_BYTES) > 0

    # the sidecar dies mid-session and is started again at once (as `bin/run` does): both
    # pages say so as soon as the web process notices, and the video comes back on the
    # same session without waiting for Chrome to notice the dead connection
    tech.evaluate(MARK_PC)
    killed_at = time.perf_counter()
    sidecar.kill()
    restart = threading.Thread(target=sidecar.start)
    restart.start()
    seen: dict[str, float] = {}
    while "frames" not in seen and time.perf_counter() - killed_at < 30:
        if "tech lost" not in seen and tech.locator(".media-state").text_content() == LOST:
            seen["tech lost"] = time.perf_counter() - killed_at
        if "phone lost" not in seen and phone.locator("#media-state").text_content() == LOST:
            seen["phone lost"] = time.perf_counter() - killed_at
        if tech.evaluate(NEW_PC_FRAMES) >= 5:
            seen["frames"] = time.perf_counter() - killed_at
        time.sleep(0.05)  # sampling the pages' states: each sample is a round trip anyway
    restart.join()
    print(
        "sidecar killed and restarted: "
        + ", ".join(f"{name} after {at:.2f} s" for name, at in seen.items())
        + f" (load {os.getloadavg()[0]:.1f})"
    )
    assert "frames" in seen, f"no video on a new connection within 30 s: {seen}"
    assert "tech lost" in seen and "phone lost" in seen, f"a page never said so: {seen}"
    expect(tech.locator(".media-state")).to_have_text("Connection restored")
    expect(phone.locator("#media-state")).to_have_text("Connection restored")
    assert_frame_rate(tech, minimum=20)

    for context in (phone_context, tech_context):
        context.close()


def test_a_media_server_that_stays_down_is_named_on_both_pages(
    app, technician, live_server, sidecar, browser
):
    (tech_context, tech), (phone_context, phone) = joined_phone(
        browser, live_server, "Outage Customer"
    )
    press_start(tech, "Outage Customer")

    # the sidecar dies and nothing starts it again: the pages' offers find no media server
    # (the web process waits for one, then answers "unavailable"), and each page says that
    # it is the server, not the customer's network, until it is back
    sidecar.kill()
    expect(tech.locator(".media-state")).to_have_text(
        "The media server is not answering. Reconnecting…", timeout=30000
    )
    expect(phone.locator("#media-state")).to_have_text(
        "The video server is not answering. Please wait…", timeout=30000
    )
    sidecar.start()
    expect(tech.locator(".media-state")).to_have_text("Connection restored", timeout=30000)
    expect(phone.locator("#media-state")).to_have_text("Connection restored", timeout=30000)
    tech.wait_for_function(f"({FRAMES})() > 10", timeout=10000)

    for context in (phone_context, tech_context):
        context.close()


def test_a_reconnection_while_waiting_is_no_news_to_the_customer_at_start(
    app, technician, live_server, sidecar, browser
):
    (tech_context, tech), (phone_context, phone) = joined_phone(
        browser, live_server, "Waiting Customer"
    )
    # the sidecar restarts while the customer waits: the phone's prepared connection is
    # rebuilt out of sight (its status line is hidden until Start)
    sidecar.kill()
    sidecar.start()
    phone.wait_for_function(
        "() => document.getElementById('media-state').dataset.state === 'restored'",
        timeout=30000,
    )
    press_start(tech, "Waiting Customer")
    expect(phone.locator("#media-state")).to_be_visible()
    expect(phone.locator("#media-state")).to_have_text("Connected")

    for context in (phone_context, tech_context):
        context.close()
