"""The Admin Center in Debian Chromium: an administrator changes the PIN validity and turns
chat off for a group; a technician of that group then creates a session and sees the new
validity and no chat. Screenshots of every Admin Center page, English and Dutch."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from lens.extensions import db
from lens.sessions.models import LensSession
from tests.browser.test_session_flow import console_of, customer_joins
from tests.conftest import add_admin, add_technician, totp_code

pytestmark = pytest.mark.browser


def admin_center(browser, base: str, code: str, language: str = "en-US"):
    """The Admin Center logged in (password, then the authenticator code)."""
    context = browser.new_context(viewport={"width": 1440, "height": 900}, locale=language)
    page = context.new_page()
    page.goto(base + "/login?next=/admin/")
    english = language.startswith("en")
    page.get_by_label("E-mail").fill("ada@example.com")
    page.get_by_label("Password" if english else "Wachtwoord").fill("correct horse battery")
    page.get_by_role("button", name=re.compile("Log in|Aanmelden")).click()
    page.get_by_label(
        "Code from your authenticator app" if english else "Code uit uw authenticator-app"
    ).fill(code)
    page.get_by_role("button", name=re.compile("Verify|Controleren")).click()
    expect(
        page.get_by_role("navigation", name=re.compile("Admin Center|Beheercentrum"))
    ).to_be_visible()
    return context, page


def test_admin_changes_validity_and_chat_and_the_technician_sees_it(
    app, live_server, browser, shots, sidecar
):
    ada = add_admin(app)
    add_technician(app, "Tess Technician", "tess@example.com")
    context, admin = admin_center(browser, live_server, totp_code(app, ada))

    # Settings: PIN and link validity 20 → 35 minutes
    admin.get_by_role("link", name="Settings").click()
    validity = admin.get_by_role("spinbutton", name="PIN and link validity (minutes)")
    expect(validity).to_have_value("20")
    validity.fill("35")
    admin.get_by_role("button", name="Save Sessions and time-outs").click()
    expect(admin.get_by_text("Settings saved.")).to_be_visible()
    expect(admin.get_by_role("spinbutton", name="PIN and link validity (minutes)")).to_have_value(
        "35"
    )

    # Groups: a group without chat
    admin.get_by_role("link", name="Groups and permissions").click()
    admin.get_by_role("link", name="New group").click()
    admin.get_by_label("Group name").fill("Support desk")
    chat = admin.get_by_role("switch", name="Chat")
    expect(chat).to_be_checked()
    chat.uncheck()
    admin.get_by_role("button", name="Save").click()
    expect(admin.get_by_role("link", name="Support desk")).to_be_visible()

    # Technicians: Tess into the group
    admin.get_by_role("link", name="Technicians").click()
    admin.get_by_role("link", name="Tess Technician").click()
    admin.get_by_label("Group").select_option(label="Support desk")
    admin.get_by_role("button", name="Save").click()
    expect(admin.get_by_text("Tess Technician saved.")).to_be_visible()

    # the audit log has all three
    admin.get_by_role("link", name="Audit log").click()
    log = admin.get_by_role("table")
    expect(log).to_contain_text("LENS_PIN_VALIDITY_MINUTES")
    expect(log).to_contain_text("Support desk")
    expect(log).to_contain_text("Tess Technician <tess@example.com>")

    # Tess creates a session: the new validity, and no chat once it is started
    tech_context, tech = console_of(browser, live_server)
    tech.get_by_role("button", name="New session").click()
    dialog = tech.get_by_role("dialog", name="New session")
    dialog.get_by_label("Name").fill("Jane Customer")
    dialog.get_by_role("button", name="Create PIN").click()
    expect(dialog.locator("[data-pin]")).to_be_visible()
    expect(dialog).to_contain_text("35 minutes")
    pin = dialog.locator("[data-pin]").get_attribute("data-pin")
    dialog.get_by_role("button", name="Close").click()
    phone_context, phone = customer_joins(browser, live_server, pin)
    row = tech.get_by_role("row", name=re.compile("Jane Customer"))
    row.get_by_role("button", name="Start").click()
    expect(tech.get_by_label("Live video")).to_be_visible()
    expect(tech.get_by_role("button", name="Hold")).to_be_visible()
    expect(tech.get_by_role("heading", name="Chat")).to_have_count(0)
    expect(tech.get_by_role("textbox", name="Message")).to_have_count(0)
    expect(phone.get_by_role("textbox", name="Message")).to_have_count(0)
    with app.app_context():
        lens_session = db.session.scalar(select(LensSession))
        assert "chat" not in lens_session.permissions
        validity = lens_session.pin_expires_at - lens_session.created_at
        assert validity.total_seconds() == 35 * 60

    # reports: the session is there (it was made in the Technician Console)
    admin.get_by_role("link", name="Reports").click()
    expect(admin.get_by_role("cell", name="Jane Customer")).to_be_visible()
    for ctx in (phone_context, tech_context, context):
        ctx.close()


PAGES = {
    "technicians": "/admin/technicians",
    "technician-new": "/admin/technicians/new",
    "technician-edit": "/admin/technicians/2",
    "technician-deactivate": "/admin/technicians/2/deactivate",
    "groups": "/admin/groups",
    "group-edit": "/admin/groups/1",
    "settings": "/admin/settings",
    "reports": "/admin/reports",
    "report-session": "/admin/reports/sessions/1",
    "audit": "/admin/audit",
}


def test_screenshots_of_every_admin_page_in_english_and_dutch(app, live_server, browser, shots):
    """Every page renders in both languages with no page error; the images go to docs/."""
    ada = add_admin(app)
    add_technician(app, "Tess Technician", "tess@example.com")
    seed(app)
    errors: list[str] = []
    for language, code in (("en-US", "en"), ("nl-NL", "nl")):
        context, page = admin_center(browser, live_server, totp_code(app, ada), language)
        page.on("pageerror", lambda error: errors.append(str(error)))
        for name, path in PAGES.items():
            response = page.goto(live_server + path)
            assert response.status == 200, (path, response.status)
            expect(page.locator("main h1")).to_be_visible()
            page.screenshot(path=str(shots / f"admin-{name}-{code}.png"), full_page=True)
        if code == "nl":
            expect(page.get_by_role("navigation", name="Beheercentrum")).to_contain_text(
                "Instellingen"
            )
        assert errors == []
        context.close()


def seed(app) -> None:
    """A group, two sessions with chat and an audit entry, so the pages show something."""
    from datetime import timedelta

    from lens.admin.audit import audit
    from lens.auth.models import Technician, TechnicianGroup
    from lens.chat.models import ChatMessage
    from lens.sessions import lifecycle
    from lens.timeutil import now_utc

    with app.app_context():
        group = TechnicianGroup(name="Support desk")
        db.session.add(group)
        tess = db.session.scalar(select(Technician).where(Technician.email == "tess@example.com"))
        ada = db.session.scalar(select(Technician).where(Technician.email == "ada@example.com"))
        tess.group = group
        now = now_utc()
        for index, (name, waited, lasted) in enumerate(
            (("Jane Customer", 45, 540), ("Piet Klant", 90, 1260))
        ):
            s = lifecycle.create_session(
                db.session,
                technician=tess,
                console="technician",
                customer_name=name,
                custom_fields={"Custom field": f"T-{1000 + index}"},
                pin_validity=timedelta(minutes=20),
                now=now - timedelta(days=index, hours=2),
            )
            s.state, s.pin, s.end_reason = "closed", None, "technician"
            s.accepted_at = s.created_at + timedelta(seconds=40)
            s.started_at = s.accepted_at + timedelta(seconds=waited)
            s.ended_at = s.started_at + timedelta(seconds=lasted)
            db.session.add(ChatMessage(lens_session=s, author="customer", text="Hello!"))
        audit(db.session, ada, "permission", "Support desk", "chat", "on", "off")
        db.session.commit()
