"""Issue 15 in Debian Chromium: the whole session flow with no page errors on any page
(PIN, Start, zoom, Transfer, End from the phone), the keyboard and the modal New session
window, and a Technician Console session opened in the Web Console."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.test_media_flow import FRAMES, PHONE_READY
from tests.browser.test_session_flow import PHONE, console_of, create_pin
from tests.conftest import add_technician

pytestmark = [pytest.mark.browser, pytest.mark.media]

WIDE = {"width": 1440, "height": 900}

# The picture's width on the console, the stage's, the view, and the video's own width.
VIEW = """() => {
  const stage = document.querySelector('.video-stage');
  const frame = document.querySelector('.video-frame');
  const video = document.querySelector('.remote-video');
  return { view: stage.dataset.view, frame: frame.clientWidth, stage: stage.clientWidth,
           video: video.videoWidth };
}"""


def collect_errors(page, errors: list[str], who: str) -> None:
    """Uncaught errors, console errors and failed requests of a page, from now on."""
    page.on("pageerror", lambda error: errors.append(f"{who}: {error}"))
    page.on("console", lambda m: errors.append(f"{who}: {m.text}") if m.type == "error" else None)
    page.on(
        "response",
        lambda r: errors.append(f"{who}: {r.status} {r.url}") if r.status >= 400 else None,
    )


def phone_joins(browser, base: str, pin: str, errors: list[str]):
    """A customer joins with the PIN (tutorial, camera, licence), errors collected throughout."""
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True, locale="en-US")
    phone = context.new_page()
    collect_errors(phone, errors, "phone")
    phone.goto(base + "/")
    phone.get_by_label("PIN").fill(pin)
    phone.get_by_role("button", name="Connect").click()
    expect(phone.get_by_role("button", name="Skip")).to_be_visible()
    phone.wait_for_load_state()
    phone.get_by_role("button", name="OK").click()
    expect(phone.get_by_role("heading", name="Camera and microphone")).to_be_visible()
    phone.get_by_role("button", name="OK").click()
    phone.wait_for_function("document.getElementById('preview').videoWidth > 0")
    phone.get_by_role("button", name="Accept").click()
    expect(phone.get_by_role("heading", name="Waiting for your technician")).to_be_visible()
    phone.wait_for_function(PHONE_READY, timeout=15000)
    return context, phone


def start_from_panel(tech, name: str) -> None:
    row = tech.get_by_role("row").filter(has_text=name)
    row.get_by_role("link", name=name).click()
    panel = tech.locator("#session-panel")
    expect(panel.get_by_role("heading", name=name)).to_be_visible()
    panel.get_by_role("button", name="Start").click()
    expect(tech.locator(".media-state")).to_have_text("Connected", timeout=20000)
    tech.wait_for_function(f"({FRAMES})() > 10", timeout=15000)


def check_zoom_from_actual_size(tech) -> None:
    """At low resolution Actual size is smaller than Fit; Zoom in from it zooms in."""
    tools = tech.get_by_role("toolbar", name="Video tools")
    tools.get_by_label("Video quality").select_option("low")
    # low asks the phone's camera for 320 px at most; on the way there the phone's encoder
    # may first send 480 px (its bitrate is capped before the camera changes), and a size
    # that changes between Actual size and Zoom in would move the picture under the test
    tech.wait_for_function(
        """() => { const v = document.querySelector('.remote-video');
                   const s = document.querySelector('.video-stage');
                   return v.videoWidth > 0 && v.videoWidth <= 320
                          && v.videoWidth < 0.6 * s.clientWidth; }""",
        timeout=20000,
    )
    tools.get_by_role("button", name="Actual size").click()
    actual = tech.evaluate(VIEW)
    assert actual["view"] == "actual" and actual["frame"] == actual["video"], actual
    widths = [actual["frame"]]
    for _ in range(3):
        tools.get_by_role("button", name="Zoom in").click()
        now = tech.evaluate(VIEW)
        assert now["view"] == "zoom", now  # not Fit
        assert now["frame"] > widths[-1], (widths, now)
        widths.append(now["frame"])
    tools.get_by_role("button", name="Fit").click()
    assert tech.evaluate(VIEW)["view"] == "fit"
    tools.get_by_label("Video quality").select_option("high")


def test_the_whole_session_flow_has_no_page_errors(
    app, technician, live_server, sidecar, browser, shots
):
    """Errors are collected on every page: two consoles and the phone, from the first
    page load to the end (replaceTrack on closed connections, favicon.ico, …)."""
    add_technician(app, "Otto Other", "otto@example.com")
    errors: list[str] = []
    tess_context, tess = console_of(browser, live_server, "tess@example.com")
    otto_context, otto = console_of(browser, live_server, "otto@example.com")
    for page, who in ((tess, "tess"), (otto, "otto")):
        collect_errors(page, errors, who)
        page.set_viewport_size(WIDE)
        page.reload()  # from the first load on, with the collector in place
        page.wait_for_load_state()
    icon = tess.request.get(live_server + "/favicon.ico")  # the name browsers try first
    assert icon.ok and icon.headers["content-type"].startswith("image/svg+xml")

    pin = create_pin(tess, "Flow Customer")
    phone_context, phone = phone_joins(browser, live_server, pin, errors)
    start_from_panel(tess, "Flow Customer")
    expect(phone.get_by_role("heading", name="Session active")).to_be_visible()
    expect(phone.get_by_text("Your technician: Tess Technician")).to_be_visible()
    check_zoom_from_actual_size(tess)

    # Transfer: the phone's connection goes, a new one is prepared for Otto
    tess.get_by_role("button", name="Transfer", exact=True).click()
    tess.locator(".transfer-targets").get_by_role("button", name="Transfer to Otto Other").click()
    expect(phone.get_by_role("heading", name="Waiting for your technician")).to_be_visible()
    expect(phone.get_by_text("Your technician: Otto Other")).to_be_visible()
    phone.wait_for_function(PHONE_READY, timeout=15000)
    start_from_panel(otto, "Flow Customer")
    expect(phone.get_by_role("heading", name="Session active")).to_be_visible()

    # the customer ends it from the phone, after a confirm
    asked: list[str] = []

    def confirm(dialog) -> None:
        asked.append(dialog.message)
        dialog.accept()

    phone.once("dialog", confirm)
    phone.get_by_role("button", name="End session").click()
    expect(phone.get_by_role("heading", name="The session has ended")).to_be_visible()
    assert asked and "End the session?" in asked[0]
    row = otto.get_by_role("row").filter(has_text="Flow Customer")
    expect(row).to_contain_text("Closed")
    panel = otto.locator("#session-panel")
    expect(panel.get_by_text("This session has ended.")).to_be_visible()
    expect(otto.get_by_role("list", name="Session log")).to_contain_text(
        "Session ended (by the customer)"
    )
    expect(otto.locator(".remote-video")).to_have_count(0)
    phone.screenshot(path=str(shots / "phone-ended-by-customer.png"))

    # a second session, ended by the technician while the video runs
    pin = create_pin(tess, "Second Customer")
    second_context, second = phone_joins(browser, live_server, pin, errors)
    start_from_panel(tess, "Second Customer")
    tess.once("dialog", lambda d: d.accept())
    tess.locator("#session-panel").get_by_role("button", name="End session").click()
    expect(second.get_by_role("heading", name="The session has ended")).to_be_visible()
    tess.wait_for_timeout(1500)  # a late replaceTrack or reconnect attempt would show by now

    assert errors == [], "\n".join(errors)
    for context in (phone_context, second_context, tess_context, otto_context):
        context.close()


def test_keyboard_reaches_and_opens_a_row_and_the_new_session_window_is_modal(
    app, technician, live_server, browser
):
    tech_context, tech = console_of(browser, live_server)
    errors: list[str] = []
    collect_errors(tech, errors, "tess")
    create_pin(tech, "Keyboard Customer")
    panel = tech.locator("#session-panel")
    expect(panel.get_by_role("heading", name="Keyboard Customer")).to_have_count(0)

    # Tab to the row's link (no mouse), Enter opens the session
    link = (
        tech.get_by_role("row")
        .filter(has_text="Keyboard Customer")
        .get_by_role("link", name="Keyboard Customer")
    )
    tech.evaluate("() => document.activeElement && document.activeElement.blur()")
    for _ in range(30):
        tech.keyboard.press("Tab")
        if link.evaluate("(el) => el === document.activeElement"):
            break
    else:
        pytest.fail("Tab never reached the session's row")
    tech.keyboard.press("Enter")
    expect(panel.get_by_role("heading", name="Keyboard Customer")).to_be_visible()
    expect(tech.get_by_role("list", name="Session log")).to_contain_text("PIN")

    # the New session window is a modal dialog: focus moves in, Escape closes it
    new_session = tech.get_by_role("button", name="New session")
    new_session.focus()
    tech.keyboard.press("Enter")
    dialog = tech.get_by_role("dialog", name="New session")
    expect(dialog).to_be_visible()
    assert dialog.evaluate("(d) => d.matches(':modal') && d.contains(document.activeElement)")
    tech.keyboard.press("Escape")
    expect(tech.get_by_role("dialog", name="New session")).to_have_count(0)

    # a click outside it closes it too; a click inside does not
    new_session.click()
    expect(dialog).to_be_visible()
    dialog.get_by_role("heading", name="New session").click()
    expect(dialog).to_be_visible()
    tech.mouse.click(20, 880)  # the page behind, far from the window
    expect(tech.get_by_role("dialog", name="New session")).to_have_count(0)
    # and the page behind works again
    new_session.click()
    tech.get_by_role("dialog", name="New session").get_by_role("button", name="Cancel").click()
    expect(tech.get_by_role("dialog", name="New session")).to_have_count(0)

    assert errors == []
    tech_context.close()


def test_a_technician_console_session_opened_in_the_web_console(
    app, technician, live_server, sidecar, browser
):
    tech_context, tech = console_of(browser, live_server)
    tech.set_viewport_size(WIDE)
    errors: list[str] = []
    pin = create_pin(tech, "Web Customer")  # created in /console
    phone_context, phone = phone_joins(browser, live_server, pin, errors)
    expect(phone.get_by_role("textbox", name="Message", exact=True)).to_be_visible()

    collect_errors(tech, errors, "web")
    tech.goto(live_server + "/web/")
    tech.wait_for_load_state()
    start_from_panel(tech, "Web Customer")
    panel = tech.locator("#session-panel")
    tools = tech.get_by_role("toolbar", name="Video tools")
    expect(tools.get_by_role("button", name="Freeze")).to_be_visible()
    expect(tools.get_by_role("button", name="Switch camera")).to_be_visible()
    for name in ("Hold", "Take snapshot", "Start recording", "Transfer", "Send", "Zoom in"):
        expect(panel.get_by_role("button", name=name, exact=True)).to_have_count(0)
    expect(panel.get_by_label("Video quality")).to_have_count(0)
    expect(panel.get_by_role("log", name="Chat messages")).to_have_count(0)
    # the phone's chat went with the Technician Console
    expect(phone.get_by_role("textbox", name="Message", exact=True)).to_have_count(0)

    # a crafted request is refused by the server
    session_id = panel.locator(".session-detail").get_attribute("data-session")
    statuses = tech.evaluate(
        """async (id) => {
          const token = JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRFToken'];
          const post = (path) => fetch(path, { method: 'POST',
            headers: { 'X-CSRFToken': token, 'HX-Request': 'true' } }).then((r) => r.status);
          return [await post(`/web/sessions/${id}/hold`),
                  await post(`/web/sessions/${id}/transfer`),
                  await post(`/web/sessions/${id}/snapshots`),
                  await post(`/web/sessions/${id}/recording/start`)];
        }""",
        session_id,
    )
    assert statuses == [403, 403, 403, 403]
    errors = [e for e in errors if " 403 " not in e and "status of 403" not in e]
    assert errors == []
    for context in (phone_context, tech_context):
        context.close()
