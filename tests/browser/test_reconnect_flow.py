"""A killed and restarted web process: the open pages come back by themselves, up to date."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from lens.auth.models import Technician
from lens.extensions import db
from lens.factory import create_app
from lens.sessions import lifecycle
from lens.sessions.models import LensSession
from lens.timeutil import now_utc
from tests.browser.test_session_flow import console_of, create_pin, customer_joins
from tests.webserver import WebServer

pytestmark = pytest.mark.browser

# window.lensPanelSettled turns true once htmx has settled a response into #session-panel
PANEL_SETTLED_WATCH = """() => {
  window.lensPanelSettled = false;
  document.addEventListener("htmx:afterSettle", (event) => {
    if (event.target.id === "session-panel") window.lensPanelSettled = true;
  });
}"""


def start_while_the_server_is_down(server: WebServer, name: str) -> None:
    """Another process (a second web process, say) starts the session meanwhile."""
    import os

    os.environ["LENS_INSTANCE_PATH"] = str(server.instance)
    try:
        app = create_app({"TESTING": True})
    finally:
        del os.environ["LENS_INSTANCE_PATH"]
    with app.app_context():
        lens_session = db.session.scalar(
            select(LensSession).where(LensSession.customer_name == name)
        )
        technician = db.session.get(Technician, lens_session.technician_id)
        lifecycle.start_session(db.session, lens_session, technician, now_utc())
        db.session.commit()
        db.engine.dispose()


def test_pages_reconnect_after_the_web_process_is_killed_and_restarted(browser, tmp_path):
    server = WebServer(tmp_path / "site")
    server.prepare()
    server.add_technician("Tess Technician", "tess@example.com")
    server.start()
    try:
        tech_context, tech = console_of(browser, server.base)
        pin = create_pin(tech, "Jane Restart")
        phone_context, phone = customer_joins(browser, server.base, pin)
        row = tech.get_by_role("row", name="Jane Restart")
        expect(row).to_contain_text("Customer connected")
        row.get_by_role("cell", name="Jane Restart", exact=True).click()
        panel = tech.locator("#session-panel")
        expect(panel.get_by_role("button", name="Start")).to_be_visible()

        server.kill()
        tech.wait_for_function("document.documentElement.dataset.socket === 'closed'")
        phone.wait_for_function("document.documentElement.dataset.socket === 'closed'")
        start_while_the_server_is_down(server, "Jane Restart")
        server.start()

        # no reload: each page reconnects and is sent what is true now
        expect(row).to_contain_text("Active", timeout=40_000)
        expect(panel.locator(".session-head .badge")).to_have_text("Active")
        expect(phone.get_by_role("heading", name="Session active")).to_be_visible(timeout=40_000)
        assert tech.evaluate("performance.getEntriesByType('navigation').length") == 1

        # and the reconnected sockets carry the session's chat both ways; the click loads
        # the panel again, so the message is typed once it is in (typed into the panel it
        # replaces, the text would be lost and Enter would send an empty field: nothing)
        tech.evaluate(PANEL_SETTLED_WATCH)
        tech.get_by_role("cell", name="Jane Restart", exact=True).click()
        tech.wait_for_function("window.lensPanelSettled === true")
        tech.get_by_role("textbox", name="Message").fill("Back again")
        tech.get_by_role("textbox", name="Message").press("Enter")
        expect(phone.locator(".chat-log")).to_contain_text("Back again")
        tech_context.close()
        phone_context.close()
    finally:
        server.stop()
