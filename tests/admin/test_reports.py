"""Reports: the filters and the CSV/JSON export match the database; Web Console sessions never
appear."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from lens.auth.models import Technician, TechnicianGroup
from lens.chat.models import ChatMessage
from lens.extensions import db
from lens.features import TECHNICIAN_CONSOLE, WEB_CONSOLE
from lens.sessions import lifecycle
from lens.sessions.models import LensSession
from tests.conftest import add_technician

DAY = datetime(2026, 3, 2, 9, 0)


@pytest.fixture
def history(app) -> dict:
    """Sessions over four days: two technicians (one in a group), channels, states, one
    transfer, chat, and Web Console sessions that must never be reported."""
    tess = add_technician(app, "Tess Technician", "tess@example.com")
    otto = add_technician(app, "Otto Other", "otto@example.com")
    with app.app_context():
        group = TechnicianGroup(name="Field")
        db.session.add(group)
        db.session.get(Technician, otto).group = group
        db.session.flush()
        ids = {"group": group.id, "tess": tess, "otto": otto}
        plan = [
            # day, technician, console, channel, (accept→start, start→end) or None
            (0, tess, TECHNICIAN_CONSOLE, "pin", (60, 600)),
            (0, tess, WEB_CONSOLE, "pin", (30, 300)),
            (1, otto, TECHNICIAN_CONSOLE, "sms", (120, 900)),
            (1, tess, TECHNICIAN_CONSOLE, "link", None),
            (2, otto, WEB_CONSOLE, "email", (10, 100)),
            (3, tess, TECHNICIAN_CONSOLE, "email", (90, 1200)),
        ]
        for index, (day, who, console, channel, times) in enumerate(plan):
            created = DAY + timedelta(days=day, minutes=index)
            technician = db.session.get(Technician, who)
            s = lifecycle.create_session(
                db.session,
                technician=technician,
                console=console,
                customer_name=f"Customer {index}",
                channel=channel,
                custom_fields={"Custom field": f"=cmd{index}"},
                pin_validity=timedelta(minutes=20),
                now=created,
            )
            if times:
                waited, lasted = times
                s.state, s.pin = "closed", None
                s.accepted_at = created + timedelta(seconds=30)
                s.started_at = s.accepted_at + timedelta(seconds=waited)
                s.ended_at = s.started_at + timedelta(seconds=lasted)
                s.end_reason = "technician"
                db.session.add(ChatMessage(lens_session=s, author="customer", text="hi"))
        # Tess handed session 0 to Otto before it ended
        first = db.session.scalar(
            select(LensSession).where(LensSession.customer_name == "Customer 0")
        )
        lifecycle.record_event(
            db.session, first, "transfer", actor=f"technician:{tess}", now=DAY,
            detail="Tess Technician\nOtto Other",
        )  # fmt: skip
        first.technician_id = otto
        db.session.commit()
    return ids


def export(admin, query: str) -> list[dict]:
    response = admin.get(f"/reports.csv?{query}")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    return list(csv.DictReader(io.StringIO(response.text)))


def in_database(app, **where) -> set[str]:
    with app.app_context():
        query = select(LensSession.public_id).where(LensSession.console != WEB_CONSOLE)
        for column, value in where.items():
            query = query.where(getattr(LensSession, column) == value)
        return set(db.session.scalars(query))


PERIOD = "start=2026-03-01&end=2026-03-10"


def test_the_csv_matches_the_database_and_leaves_out_the_web_console(app, admin, history):
    rows = export(admin, PERIOD)
    assert {r["session_id"] for r in rows} == in_database(app)
    assert len(rows) == 4
    with app.app_context():
        web = set(
            db.session.scalars(
                select(LensSession.public_id).where(LensSession.console == WEB_CONSOLE)
            )
        )
    assert len(web) == 2 and not web & {r["session_id"] for r in rows}
    first = next(r for r in rows if r["customer_name"] == "Customer 0")
    assert first["technicians"] == "Tess Technician > Otto Other"
    assert (first["waited_seconds"], first["duration_seconds"]) == ("60", "600")
    assert first["chat_messages"] == "1" and first["console"] == "technician"
    assert json.loads(first["custom_fields"].lstrip("'")) == {"Custom field": "=cmd0"}
    assert first["custom_fields"].startswith("{")  # JSON, not a formula
    page = admin.get(f"/reports?{PERIOD}").text
    assert "Sessions started in the Web Console are not included in reports." in page
    assert "Customer 1" not in page and "Customer 4" not in page


@pytest.mark.parametrize(
    ("query", "where"),
    [
        ("channel=email", {"channel": "email"}),
        ("channel=sms", {"channel": "sms"}),
        ("state=created", {"state": "created"}),
        ("state=closed", {"state": "closed"}),
        ("console=technician", {"console": "technician"}),
    ],
)
def test_each_filter_matches_the_database(app, admin, history, query, where):
    rows = export(admin, f"{PERIOD}&{query}")
    assert {r["session_id"] for r in rows} == in_database(app, **where)
    assert rows  # each filter selects something, so a filter that ignores it fails


def test_the_technician_and_group_filters(app, admin, history):
    tess = {r["customer_name"] for r in export(admin, f"{PERIOD}&technician={history['tess']}")}
    assert tess == {"Customer 0", "Customer 3", "Customer 5"}  # 0 was hers before the transfer
    otto = {r["customer_name"] for r in export(admin, f"{PERIOD}&technician={history['otto']}")}
    assert otto == {"Customer 0", "Customer 2"}
    field = {r["customer_name"] for r in export(admin, f"{PERIOD}&group={history['group']}")}
    assert field == {"Customer 0", "Customer 2"}


def test_the_period_and_the_json_export(app, admin, history):
    rows = export(admin, "start=2026-03-03&end=2026-03-03")
    assert [r["customer_name"] for r in rows] == ["Customer 2", "Customer 3"]
    response = admin.get("/reports.json?start=2026-03-05&end=2026-03-05")
    assert [r["customer_name"] for r in response.json] == ["Customer 5"]
    bad = admin.get("/reports?start=2026-03-10&end=2026-03-01")
    assert bad.status_code == 422 and "at most a year" in bad.text


def test_the_summary_is_drawn(app, admin, history):
    page = admin.get(f"/reports?{PERIOD}").text
    assert page.count("<svg") == 4
    assert "2026-03-02: 1" in page  # the day's column, with its count as its title
    assert "Median waiting time: 1.5 min" in page  # 60, 90, 120 s of the reported three


def test_a_sessions_detail_page_and_never_a_web_console_one(app, admin, history):
    with app.app_context():
        reported = db.session.scalar(
            select(LensSession.id).where(LensSession.customer_name == "Customer 0")
        )
        web = db.session.scalar(select(LensSession.id).where(LensSession.console == WEB_CONSOLE))
    page = admin.get(f"/reports/sessions/{reported}").text
    assert "Chat transcript" in page and "hi" in page and "Session log" in page
    assert admin.get(f"/reports/sessions/{web}").status_code == 404
