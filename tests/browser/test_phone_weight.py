"""The phone on a slow link (issue 15): what its pages weigh, and a first tap before scripts.

The customer's pages from the join link to the waiting screen must transfer at most 60 KB
(compressed bodies and headers, as Chromium counts them), and the tutorial's OK must work
while the page's scripts are still on their way.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect
from sqlalchemy import select

from lens.auth.models import Technician
from lens.extensions import db
from lens.sessions import lifecycle
from lens.sessions.models import LensSession
from lens.timeutil import now_utc
from tests.browser.conftest import PHONE

pytestmark = pytest.mark.browser

BUDGET = 60 * 1024


def join_link(app, technician: int, name: str) -> tuple[int, str]:
    """A new session of the technician: its id and its join link's path."""
    with app.app_context():
        lens_session = lifecycle.create_session(
            db.session,
            technician=db.session.get(Technician, technician),
            console="technician",
            customer_name=name,
            pin_validity=timedelta(minutes=10),
            now=now_utc(),
        )
        db.session.commit()
        return lens_session.id, f"/j/{lens_session.join_token}"


def phone_context(browser):
    return browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True, locale="en-US")


def state_of(app, session_id: int) -> str:
    with app.app_context():
        return db.session.scalar(select(LensSession.state).where(LensSession.id == session_id))


def test_link_to_waiting_transfers_at_most_60_kb(app, technician, live_server, browser):
    session_id, link = join_link(app, technician, "Light Customer")
    context = phone_context(browser)
    phone = context.new_page()
    finished = []
    phone.on("requestfinished", lambda request: finished.append(request))

    phone.goto(live_server + link)
    expect(phone.get_by_role("heading", name="How it works")).to_be_visible()
    phone.get_by_role("button", name="OK").click()
    expect(phone.get_by_role("heading", name="Camera and microphone")).to_be_visible()
    phone.get_by_role("button", name="OK").click()
    expect(phone.get_by_role("button", name="Accept")).to_be_visible()
    phone.get_by_role("button", name="Accept").click()
    expect(phone.get_by_role("heading", name="Waiting for your technician")).to_be_visible()
    phone.wait_for_load_state("networkidle")
    assert state_of(app, session_id) == "waiting"

    rows = []
    for request in finished:
        sizes = request.sizes()
        response = request.response()
        encoding = response.headers.get("content-encoding", "") if response else ""
        total = sizes["responseBodySize"] + sizes["responseHeadersSize"]
        rows.append((total, sizes["responseBodySize"], encoding, request.url.split("/", 3)[-1]))
    weight = sum(row[0] for row in rows)
    print(f"\nlink to waiting: {len(rows)} responses, {weight} bytes ({weight / 1024:.1f} KB)")
    for total, body, encoding, path in sorted(rows, reverse=True):
        print(f"  {total:6d} (body {body:6d} {encoding or 'identity':8s}) /{path[:70]}")
    assert weight <= BUDGET, f"{weight} bytes from the link to the waiting screen"
    scripts = [row for row in rows if row[3].endswith((".js", ".css"))]
    assert scripts and all(row[2] in ("br", "gzip") for row in scripts), scripts
    context.close()


def test_a_tap_on_the_first_step_works_before_the_scripts_load(
    app, technician, live_server, browser
):
    session_id, link = join_link(app, technician, "Slow Customer")
    context = phone_context(browser)
    held = []  # the page's scripts: answered only at the end, as on a very slow link
    context.route("**/*.js", lambda route: held.append(route))
    phone = context.new_page()

    phone.goto(live_server + link, wait_until="commit")
    expect(phone.get_by_role("heading", name="How it works")).to_be_visible()
    assert phone.evaluate("typeof window.htmx") == "undefined"
    phone.get_by_role("button", name="OK").click()
    expect(phone.get_by_role("heading", name="Camera and microphone")).to_be_visible()

    # the rest of the steps work the same way; the camera is asked for once scripts run
    assert phone.evaluate("typeof window.htmx") == "undefined"
    phone.get_by_role("button", name="OK").click()
    expect(phone.get_by_role("heading", name="Licence agreement")).to_be_visible()
    phone.get_by_role("button", name="Accept").click()
    expect(phone.get_by_role("heading", name="Waiting for your technician")).to_be_visible()
    assert held, "no script was held back"
    assert state_of(app, session_id) == "waiting"

    context.unroute("**/*.js")
    for route in held:  # those of pages already left fail; this page's go through
        with contextlib.suppress(PlaywrightError):
            route.continue_()
    phone.wait_for_function("typeof window.htmx === 'object'")
    expect(phone.get_by_label("Your camera")).to_be_visible()  # customer.js opened it
    context.close()
