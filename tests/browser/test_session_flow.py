"""The whole foundation flow in Debian Chromium: technician and phone in separate contexts."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect
from sqlalchemy import select, text

from lens.extensions import db
from lens.sessions.models import LensSession
from tests.browser.conftest import PHONE, enrol_second_factor
from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser

NEW_PASSWORD = "a new long password"


def first_admin_password(app, runner) -> str:
    with app.app_context():  # start from an empty database, as a fresh install does
        db.drop_all()
        # and forget the migrations too (on a shared PostgreSQL database an earlier test's
        # `lens init` left its version, and init would then create no tables)
        db.session.execute(text("DROP TABLE IF EXISTS alembic_version"))
        db.session.commit()
    result = runner.invoke(args=["lens", "init"])
    assert result.exit_code == 0, result.output
    return re.search(r"One-time password: (\S+)", result.output).group(1)


def technician_logs_in(page, base: str, password: str) -> None:
    page.goto(base + "/console/")
    page.get_by_label("E-mail").fill("admin@lens.example")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    # the printed password is one-time: choose a new one, then land on the console
    page.get_by_label("Current password").fill(password)
    page.get_by_label("New password").fill(NEW_PASSWORD)
    page.get_by_label("Confirm password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Save password").click()
    # an administrator sets up two-step verification before anything else
    enrol_second_factor(page)
    expect(page.get_by_role("button", name="New session")).to_be_visible()
    page.wait_for_load_state()  # htmx wires the buttons once the page has loaded


def console_of(browser, base: str, email: str = "tess@example.com"):
    """A technician's console in its own browser context, logged in and loaded."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    page = context.new_page()
    page.goto(base + "/login")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("button", name="New session")).to_be_visible()
    page.wait_for_load_state()  # htmx wires the buttons once the page has loaded
    return context, page


def create_pin(page, name: str) -> str:
    page.wait_for_load_state()  # htmx wires the buttons once the page has loaded
    page.get_by_role("button", name="New session").click()
    dialog = page.get_by_role("dialog", name="New session")
    dialog.get_by_label("Name").fill(name)
    dialog.get_by_role("button", name="Create PIN").click()
    pin = dialog.locator("[data-pin]")
    expect(pin).to_be_visible()
    value = pin.get_attribute("data-pin")
    dialog.get_by_role("button", name="Close").click()
    return value


def customer_joins(browser, base: str, pin: str, shots=None):
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True, locale="en-US")
    phone = context.new_page()
    phone.goto(base + "/")
    snap = (lambda name: phone.screenshot(path=str(shots / name))) if shots else (lambda n: None)
    snap("1-start-pin.png")
    phone.get_by_label("PIN").fill(pin)
    phone.get_by_role("button", name="Connect").click()
    expect(phone.get_by_role("button", name="Skip")).to_be_visible()
    phone.wait_for_load_state()  # a click before htmx has wired the buttons is lost
    snap("2-tutorial.png")
    phone.get_by_role("button", name="OK").click()
    expect(phone.get_by_role("heading", name="Camera and microphone")).to_be_visible()
    snap("3-permission.png")
    phone.get_by_role("button", name="OK").click()
    preview = phone.get_by_label("Your camera")
    expect(preview).to_be_visible()
    phone.wait_for_function("document.getElementById('preview').videoWidth > 0")
    expect(phone.get_by_role("button", name="Accept")).to_be_visible()
    snap("4-eula-with-preview.png")
    phone.get_by_role("button", name="Accept").click()
    expect(phone.get_by_role("heading", name="Waiting for your technician")).to_be_visible()
    snap("5-waiting.png")
    return context, phone


def customer_seen_at(app, name: str):
    with app.app_context():
        query = select(LensSession.customer_seen_at).where(LensSession.customer_name == name)
        return db.session.scalar(query)


def test_pin_to_start_to_end(app, runner, live_server, browser, shots):
    password = first_admin_password(app, runner)
    tech_context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-US")
    tech = tech_context.new_page()
    technician_logs_in(tech, live_server, password)

    first_pin = create_pin(tech, "Ann Customer")
    second_pin = create_pin(tech, "Bob Customer")
    assert first_pin != second_pin
    rows = tech.locator("#session-rows")
    ann = rows.get_by_role("row").filter(has_text="Ann Customer")
    expect(ann).to_contain_text("Waiting for customer")
    tech.get_by_role("row").filter(has_text="Ann Customer").click()
    expect(tech.get_by_role("list", name="Session log")).to_contain_text(f"PIN {first_pin} created")

    ann_context, ann_phone = customer_joins(browser, live_server, first_pin, shots)
    # pushed over the WebSocket: the technician's page was never reloaded
    expect(ann).to_contain_text("Customer connected")
    bob_context, bob_phone = customer_joins(browser, live_server, second_pin)
    bob = rows.get_by_role("row").filter(has_text="Bob Customer")
    expect(bob).to_contain_text("Customer connected")
    # the phone's open page tells the server it is there (a waiting session whose
    # customer's page stays closed is swept)
    deadline = time.monotonic() + 10
    while customer_seen_at(app, "Bob Customer") is None:
        assert time.monotonic() < deadline, "the waiting phone's page was never seen"
        time.sleep(0.1)  # polling the database: it has no event to wait for

    ann.get_by_role("button", name="Start").click()
    expect(ann).to_contain_text("Active")
    expect(ann_phone.get_by_role("heading", name="Session active")).to_be_visible()
    ann_phone.screenshot(path=str(shots / "6-active.png"))

    bob.get_by_role("button", name="Start").click()
    expect(tech.get_by_role("alert")).to_contain_text("You already have an active session")
    expect(bob).to_contain_text("Customer connected")

    # Bob's row took the panel when its Start was clicked: select Ann's again first
    tech.get_by_role("row").filter(has_text="Ann Customer").click()
    expect(tech.locator("#session-panel h2")).to_contain_text("Ann Customer")
    tech.once("dialog", lambda d: d.accept())
    tech.get_by_role("button", name="End session").click()
    expect(ann).to_contain_text("Closed")
    expect(ann_phone.get_by_role("heading", name="The session has ended")).to_be_visible()
    ann_phone.screenshot(path=str(shots / "7-ended.png"))
    tech.screenshot(path=str(shots / "console.png"))

    for context in (ann_context, bob_context, tech_context):
        context.close()
