"""An e-mail invitation end to end in Debian Chromium: the technician sends it through a real
SMTP server (aiosmtpd), the phone opens the link from the received message."""

from __future__ import annotations

import email
import re
from collections.abc import Iterator
from email.policy import default as default_policy

import pytest
from aiosmtpd.controller import Controller
from playwright.sync_api import expect

from lens.extensions import mail
from lens.invitations import setup as invitations
from tests.browser.conftest import PHONE
from tests.browser.test_session_flow import first_admin_password, technician_logs_in
from tests.invitations.invitation_servers import RecordingHandler, SmtpServer, free_port

pytestmark = pytest.mark.browser


@pytest.fixture
def smtp(app) -> Iterator[SmtpServer]:
    """aiosmtpd on loopback, and the app's Flask-Mail pointed at it."""
    handler = RecordingHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    app.config.update(
        MAIL_SERVER="127.0.0.1",
        MAIL_PORT=controller.port,
        MAIL_DEFAULT_SENDER=("Lens Support", "support@lens.example.com"),
        MAIL_SUPPRESS_SEND=False,
        LENS_INVITATION_TIMEOUT="5",
    )
    mail.init_app(app)
    invitations.init_app(app)
    try:
        yield SmtpServer(port=controller.port, handler=handler)
    finally:
        controller.stop()


def test_email_invitation_to_customer_connected(app, runner, live_server, browser, smtp, shots):
    password = first_admin_password(app, runner)
    tech_context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-US")
    tech = tech_context.new_page()
    technician_logs_in(tech, live_server, password)

    tech.get_by_role("button", name="New session").click()
    dialog = tech.get_by_role("dialog", name="New session")
    dialog.get_by_label("Name").fill("Eve Customer")
    email_tab = dialog.get_by_role("tab", name="E-mail")
    email_tab.focus()
    tech.keyboard.press("ArrowRight")  # keyboard: the tabs move with the arrow keys
    expect(dialog.get_by_role("tab", name="Link")).to_have_attribute("aria-selected", "true")
    tech.keyboard.press("ArrowLeft")
    expect(email_tab).to_have_attribute("aria-selected", "true")
    expect(dialog.get_by_role("button", name="Send SMS")).to_be_hidden()
    dialog.get_by_role("textbox", name="E-mail").fill("eve@example.com")
    dialog.get_by_label("Send via the Lens server").check()
    tech.screenshot(path=str(shots / "invite-email-tab.png"))
    dialog.get_by_role("button", name="Send email").click()

    expect(dialog.get_by_text("E-mail sent to e•••@example.com.")).to_be_visible()
    pin = dialog.locator("[data-pin]").get_attribute("data-pin")
    tech.screenshot(path=str(shots / "invite-email-sent.png"))
    [envelope] = smtp.handler.envelopes
    message = email.message_from_bytes(envelope.content, policy=default_policy)
    text = message.get_body(preferencelist=("plain",)).get_content()
    link = re.search(r"https?://\S+/j/[A-Za-z0-9_-]+", text).group(0)
    assert link.startswith(live_server) and pin in text
    dialog.get_by_role("button", name="Close").click()

    row = tech.locator("#session-rows").get_by_role("row").filter(has_text="Eve Customer")
    expect(row).to_contain_text("Waiting for customer")
    expect(row).to_contain_text("E-mail")

    phone_context = browser.new_context(
        viewport=PHONE, is_mobile=True, has_touch=True, locale="en-US"
    )
    phone = phone_context.new_page()
    phone.goto(link)
    phone.get_by_role("button", name="OK").click()  # the tutorial
    expect(phone.get_by_role("heading", name="Camera and microphone")).to_be_visible()
    phone.get_by_role("button", name="OK").click()
    expect(phone.get_by_label("Your camera")).to_be_visible()
    phone.get_by_role("button", name="Accept").click()
    expect(phone.get_by_role("heading", name="Waiting for your technician")).to_be_visible()

    # pushed over the WebSocket: the technician's page was never reloaded
    expect(row).to_contain_text("Customer connected")
    expect(row.get_by_role("button", name="Start")).to_be_enabled()
    row.click()
    log = tech.get_by_role("list", name="Session log")
    expect(log).to_contain_text("E-mail sent to e•••@example.com")
    expect(log).to_contain_text("Customer opened the link")
    tech.screenshot(path=str(shots / "invite-customer-connected.png"))

    for context in (phone_context, tech_context):
        context.close()


def test_link_tab_copies_the_link(app, runner, live_server, browser):
    password = first_admin_password(app, runner)
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-US")
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server)
    tech = context.new_page()
    technician_logs_in(tech, live_server, password)

    tech.get_by_role("button", name="New session").click()
    dialog = tech.get_by_role("dialog", name="New session")
    dialog.get_by_label("Name").fill("Lin Customer")
    dialog.get_by_role("tab", name="Link").click()
    dialog.get_by_role("button", name="Create link").click()

    link = dialog.get_by_role("textbox", name="Join link")
    expect(link).to_have_value(re.compile(r"/j/[A-Za-z0-9_-]{40,}$"))
    expect(dialog.get_by_role("img", name="QR code of the join link")).to_be_visible()
    dialog.get_by_role("button", name="Copy link").click()
    # 127.0.0.1 over http is a secure context, so the clipboard API is there
    expect(dialog.get_by_text("Link copied.")).to_be_visible()
    assert tech.evaluate("navigator.clipboard.readText()") == link.input_value()
    context.close()
