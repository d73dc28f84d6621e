"""The Technician Console's chat, hold and transfer in Debian Chromium, through a real sidecar.

Three contexts: the phone (fake camera), Tess's console, and Otto's console, open the whole
time, which receives the transferred session without a reload.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.test_media_flow import FRAMES, PHONE_READY
from tests.browser.test_session_flow import console_of, create_pin, customer_joins
from tests.conftest import add_technician

pytestmark = [pytest.mark.browser, pytest.mark.media]


def frames(page) -> int:
    return page.evaluate(FRAMES)


def test_chat_hold_and_transfer(app, technician, live_server, sidecar, browser, shots):
    add_technician(app, "Otto Other", "otto@example.com")
    tess_context, tess = console_of(browser, live_server, "tess@example.com")
    otto_context, otto = console_of(browser, live_server, "otto@example.com")
    pin = create_pin(tess, "Tool Customer")
    phone_context, phone = customer_joins(browser, live_server, pin)
    phone.wait_for_function(PHONE_READY, timeout=15000)

    row = tess.get_by_role("row").filter(has_text="Tool Customer")
    row.click()  # open the panel first, so that its answer cannot overtake Start's
    panel = tess.locator("#session-panel")
    expect(panel.get_by_role("heading", name="Tool Customer")).to_be_visible()
    panel.get_by_role("button", name="Start").click()
    expect(tess.locator(".media-state")).to_have_text("Connected", timeout=15000)
    tess.wait_for_function(f"({FRAMES})() > 10", timeout=10000)

    # chat both ways, shown at once on both sides; markup stays text
    tess.get_by_role("textbox", name="Message", exact=True).fill(
        "Hello, please show me the <b>label</b>"
    )
    tess.get_by_role("button", name="Send", exact=True).click()
    phone_log = phone.get_by_role("log", name="Chat messages")
    expect(phone_log).to_contain_text("Hello, please show me the <b>label</b>")
    assert phone_log.locator("b").count() == 0
    phone.get_by_role("textbox", name="Message", exact=True).fill("Here it is")
    phone.get_by_role("button", name="Send", exact=True).click()
    tess_log = tess.get_by_role("log", name="Chat messages")
    expect(tess_log).to_contain_text("Here it is")
    expect(phone_log).to_contain_text("You")
    tess.get_by_role("group", name="Predefined messages").get_by_role("button").first.click()
    expect(phone_log).to_contain_text("Please point your camera at the problem.")
    too_long = "x" * 1001
    phone.get_by_role("textbox", name="Message", exact=True).evaluate(
        "(el, v) => { el.maxLength = 5000; el.value = v; }", too_long
    )
    phone.get_by_role("button", name="Send", exact=True).click()
    expect(phone.get_by_role("alert")).to_contain_text("at most 1000 characters")
    phone.screenshot(path=str(shots / "tools-3-phone-chat.png"))

    # the customer pauses the camera: the technician is told
    phone.get_by_role("button", name="Pause camera").click()
    expect(tess.get_by_text("Customer paused the camera").first).to_be_visible()
    phone.get_by_role("button", name="Resume camera").click()
    expect(tess.locator("[data-camera-paused]")).to_be_hidden()

    # hold: the frame count stops rising; resume: it rises again
    tess.get_by_role("button", name="Hold", exact=True).click()
    expect(row).to_contain_text("On hold")
    expect(phone.get_by_role("heading", name="On hold")).to_be_visible()
    tess.wait_for_timeout(1000)  # frames in flight when Hold was pressed
    held = frames(tess)
    tess.wait_for_timeout(2000)  # a measured window: nothing may arrive in it
    assert frames(tess) <= held + 2, f"{frames(tess) - held} frames arrived on hold"
    tess.get_by_role("button", name="Resume", exact=True).click()
    expect(row).to_contain_text("Active")
    tess.wait_for_function(f"({FRAMES})() > {held + 30}", timeout=15000)
    tess.screenshot(path=str(shots / "tools-4-console-chat.png"))

    # transfer to Otto: it leaves Tess's list and arrives waiting in Otto's, live
    tess.get_by_role("button", name="Transfer", exact=True).click()
    targets = tess.locator(".transfer-targets")
    expect(targets).to_contain_text("Free")
    targets.get_by_role("button", name="Transfer to Otto Other").click()
    expect(
        tess.get_by_role("status").filter(has_text="was transferred to Otto Other")
    ).to_be_visible()
    expect(row).to_have_count(0)
    otto_row = otto.get_by_role("row").filter(has_text="Tool Customer")
    expect(otto_row).to_contain_text("Customer connected")  # pushed: no reload
    expect(phone.get_by_role("heading", name="Waiting for your technician")).to_be_visible()

    # Otto picks it up: the log and chat came along, and the phone's video reaches him
    otto_row.click()
    expect(otto.get_by_role("list", name="Session log")).to_contain_text("transferred")
    otto.locator("#session-panel").get_by_role("button", name="Start").click()
    expect(otto.get_by_role("log", name="Chat messages")).to_contain_text("Here it is")
    expect(otto.get_by_role("list", name="Session log")).to_contain_text(
        "Session transferred from Tess Technician to Otto Other"
    )
    expect(otto.locator(".media-state")).to_have_text("Connected", timeout=20000)
    otto.wait_for_function(f"({FRAMES})() > 10", timeout=15000)

    for context in (phone_context, tess_context, otto_context):
        context.close()
