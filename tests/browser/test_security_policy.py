"""The security headers as Chromium enforces them: inline code refused, no framing, the
camera and microphone only on the pages that use them (lens.security.headers)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import PHONE
from tests.browser.test_session_flow import console_of, create_pin

pytestmark = pytest.mark.browser

ALLOWS = "(feature) => document.featurePolicy.allowsFeature(feature)"


def test_inline_code_is_refused_and_reported(live_server, technician, browser, policy_violations):
    context, page = console_of(browser, live_server)
    with page.expect_console_message(lambda m: "inline event handler" in m.text):
        page.evaluate(
            """() => document.body.insertAdjacentHTML('beforeend',
                '<img src="/static/favicon.svg" onload="window.ranInline = true">')"""
        )
    page.wait_for_function("document.querySelector('img[onload]').complete")
    assert page.evaluate("window.ranInline === undefined")
    # the hook of these tests found the refusal on the console: any other test with one fails
    assert any("inline event handler" in v for v in policy_violations), policy_violations
    policy_violations.clear()
    context.close()


def test_the_dialog_closes_without_inline_handlers(live_server, technician, browser):
    context, page = console_of(browser, live_server)
    create_pin(page, "Policy Customer")  # its Close button
    expect(page.get_by_role("dialog", name="New session")).to_have_count(0)
    page.get_by_role("button", name="New session").click()
    dialog = page.get_by_role("dialog", name="New session")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_have_count(0)
    context.close()


def test_no_other_site_can_frame_the_console(live_server, technician, browser, policy_violations):
    context, page = console_of(browser, live_server)
    other = context.new_page()  # a page of no origin of Lens's, with the log-in cookie
    with other.expect_console_message(lambda m: "frame-ancestors" in m.text):
        other.set_content(f'<iframe src="{live_server}/console/"></iframe>')
    framed = other.frames[-1]
    assert framed != other.main_frame
    assert framed.get_by_role("button", name="New session").count() == 0
    policy_violations.clear()  # the refusal is the point here
    context.close()


def test_camera_and_microphone_only_where_used(app, console, live_server, browser):
    pin = console.create_session("Device Customer")["pin"]
    phone_context = browser.new_context(viewport=PHONE, is_mobile=True, locale="en-US")
    phone = phone_context.new_page()
    phone.goto(live_server + "/")
    assert phone.evaluate(ALLOWS, "camera") is False
    assert phone.evaluate(ALLOWS, "microphone") is False
    phone.get_by_label("PIN").fill(pin)
    phone.get_by_role("button", name="Connect").click()
    expect(phone.get_by_role("button", name="Skip")).to_be_visible()
    assert phone.evaluate(ALLOWS, "camera") is True
    assert phone.evaluate(ALLOWS, "microphone") is True
    assert phone.evaluate(ALLOWS, "geolocation") is False
    phone_context.close()

    tech_context, tech = console_of(browser, live_server)
    assert tech.evaluate(ALLOWS, "microphone") is True
    assert tech.evaluate(ALLOWS, "camera") is False
    tech_context.close()
