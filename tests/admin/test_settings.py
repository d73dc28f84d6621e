"""Settings: stored in the database over the environment, audited, in force for new sessions."""

from __future__ import annotations

import json
import re
import time
from datetime import timedelta

from sqlalchemy import select

from lens.admin.models import AuditEntry, Setting
from lens.extensions import db
from lens.sessions import lifecycle
from lens.sessions.models import LensSession
from lens.timeutil import now_utc
from tests.captures.conftest import session_id_of
from tests.web.test_live import BOUND, Browser, joined_phone, receive_until


def sessions_form(**changes) -> dict:
    values = {
        "section": "sessions",
        "LENS_PIN_VALIDITY_MINUTES": "20",
        "LENS_CONNECTING_TIMEOUT_MINUTES": "20",
        "LENS_WAITING_TIMEOUT_MINUTES": "0",
        "LENS_IDLE_TIMEOUT_MINUTES": "0",
        "LENS_RETENTION_DAYS": "0",
        "LENS_CUSTOM_FIELDS": "Custom field",
        "LENS_ICE_SERVERS": "[]",
    }
    values.update(changes)
    return values


def audit_rows(app, key: str) -> list[tuple[str, str | None, str | None]]:
    with app.app_context():
        rows = db.session.scalars(select(AuditEntry).where(AuditEntry.target == key))
        return [(r.actor_name, r.before, r.after) for r in rows]


def test_the_environment_is_the_default(app, admin):
    page = admin.get("/settings").text
    assert re.search(r'name="LENS_PIN_VALIDITY_MINUTES"[^>]*value="20"', page)
    with app.app_context():
        assert db.session.scalar(select(Setting)) is None


def test_a_settings_change_is_audited_and_applies_to_new_sessions(app, admin, console):
    old_pin = console.create_session("Before")["pin"]
    response = admin.post("/settings", sessions_form(LENS_PIN_VALIDITY_MINUTES="45"))
    assert response.status_code == 302
    assert audit_rows(app, "LENS_PIN_VALIDITY_MINUTES") == [("Ada Admin", "20", "45")]

    created = console.create_session("After")
    assert "45 minutes" in created["response"].text
    with app.app_context():
        for pin, minutes in ((old_pin, 20), (created["pin"], 45)):
            lens_session = db.session.get(LensSession, session_id_of(app, pin))
            validity = lens_session.pin_expires_at - lens_session.created_at
            assert validity == timedelta(minutes=minutes)

    # unchanged values write nothing; Reset brings the environment's value back, audited
    admin.post("/settings", sessions_form(LENS_PIN_VALIDITY_MINUTES="45"))
    assert len(audit_rows(app, "LENS_PIN_VALIDITY_MINUTES")) == 1
    assert admin.post("/settings/LENS_PIN_VALIDITY_MINUTES/reset").status_code == 302
    assert audit_rows(app, "LENS_PIN_VALIDITY_MINUTES")[-1] == ("Ada Admin", "45", "20")
    assert "20 minutes" in console.create_session("Reset")["response"].text


def test_bad_values_are_refused_with_a_reason_and_nothing_is_saved(app, admin):
    cases = {
        "LENS_PIN_VALIDITY_MINUTES": ("0", "from 1 to 1440"),
        "LENS_CONNECTING_TIMEOUT_MINUTES": ("ten", "whole number"),
        "LENS_CUSTOM_FIELDS": ("a\nb\nc\nd\ne\nf", "five"),
        "LENS_ICE_SERVERS": ('[{"urls": "http://x"}]', "stun:"),
    }
    for key, (value, reason) in cases.items():
        response = admin.post("/settings", sessions_form(**{key: value}))
        assert response.status_code == 422, key
        assert reason in response.text, key
    with app.app_context():
        assert db.session.scalar(select(Setting)) is None
        assert db.session.scalar(select(AuditEntry)) is None


def test_templates_are_checked_and_previewed(app, admin):
    form = {
        "section": "invitations",
        "LENS_SMS_TEMPLATE.en": "{company}: open {link}",
        "LENS_SMS_TEMPLATE.nl": "{company}: open {bogus}",
    }
    response = admin.post("/settings", form)
    assert response.status_code == 422 and "{bogus}" in response.text
    preview = admin.post(
        "/settings/preview",
        {"field": "LENS_SMS_TEMPLATE.en", "LENS_SMS_TEMPLATE.en": "{company}: open {link}"},
        headers={"HX-Request": "true"},
    )
    assert "Example Ltd: open https://lens.example/j/AbC123" in preview.text


def test_the_sms_goes_out_in_the_customers_language(app, admin, console):
    form = {
        "section": "invitations",
        "LENS_SMS_TEMPLATE.en": "Hi {name}, {company} here: {link}",
        "LENS_SMS_TEMPLATE.nl": "Hallo {name}, {company} hier: {link}",
        "LENS_EMAIL_SUBJECT.en": "",
        "LENS_EMAIL_SUBJECT.nl": "",
        "LENS_EMAIL_INTRO.en": "",
        "LENS_EMAIL_INTRO.nl": "",
    }
    assert admin.post("/settings", form).status_code == 302
    company = {"section": "customer", "LENS_COMPANY_NAME": "Acme", "LENS_COMPANY_LOGO_URL": ""}
    company.update({"LENS_EULA_TEXT.en": "", "LENS_EULA_TEXT.nl": "Onze voorwaarden."})
    assert admin.post("/settings", company).status_code == 302
    sent: list[str] = []

    class KeptSms:
        def send(self, to: str, body: str, session_public_id: str) -> None:
            sent.append(body)

    app.extensions["lens.sms"] = KeptSms()
    for phone, greeting in (
        ("+31612345678", "Hallo Jane, Acme hier:"),
        ("+14155552671", "Hi Jane, Acme here:"),
    ):
        console.create_session("Jane", channel="sms", phone=phone)
        assert sent[-1].startswith(greeting), sent[-1]


def test_the_eula_and_company_name_reach_the_customer(app, admin, console, customer):
    form = {
        "section": "customer",
        "LENS_COMPANY_NAME": "Acme Support",
        "LENS_COMPANY_LOGO_URL": "https://acme.example/logo.png",
        "LENS_EULA_TEXT.en": "Acme's terms.",
        "LENS_EULA_TEXT.nl": "De voorwaarden van Acme.",
    }
    assert admin.post("/settings", form).status_code == 302
    pin = console.create_session("Jane")["pin"]
    customer.join(pin)
    for language, text in (("en", "Acme&#39;s terms."), ("nl", "De voorwaarden van Acme.")):
        page = customer.client.get("/c/step/eula", headers={"Accept-Language": language}).text
        assert text in page, language
    start = customer.client.get("/").text
    assert "Acme Support" in start and 'src="https://acme.example/logo.png"' in start


def test_time_outs_from_the_settings_end_waiting_and_idle_sessions(app, admin, console, runner):
    admin.post(
        "/settings",
        sessions_form(LENS_WAITING_TIMEOUT_MINUTES="5", LENS_IDLE_TIMEOUT_MINUTES="10"),
    )
    waiting = session_id_of(app, console.create_session("Waiting")["pin"])
    with app.app_context():
        lens_session = db.session.get(LensSession, waiting)
        lifecycle.join_by_pin(db.session, lens_session.pin, "device", now_utc())
        lifecycle.accept_eula(db.session, lens_session, now_utc() - timedelta(minutes=6))
        lens_session.customer_seen_at = now_utc()
        db.session.commit()
    result = runner.invoke(args=["lens", "sweep"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        lens_session = db.session.get(LensSession, waiting)
        assert (lens_session.state, lens_session.end_reason) == ("closed", "waiting_timeout")


def test_stun_turn_servers_from_the_settings_reach_the_pages(app, admin, console, customer):
    servers = '[{"urls": "stun:stun.example.org:3478"}]'
    assert admin.post("/settings", sessions_form(LENS_ICE_SERVERS=servers)).status_code == 302
    customer.join(console.create_session("Jane")["pin"])
    page = customer.client.get("/c").text
    assert "stun:stun.example.org:3478" in page


# the shape of an offer (lens.sockets.messages checks it before the sidecar is asked)
OFFER = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"


class OfferRecorder:
    """Stands in for the sidecar's client: answers offers, keeping the ICE servers sent."""

    def __init__(self) -> None:
        self.ice_servers: dict[str, object] = {}

    def publisher_offer(self, session_id, offer, features, ice_servers=None):
        self.ice_servers["phone"] = ice_servers
        return {"type": "answer", "sdp": "v=0\r\n"}

    def subscriber_offer(self, session_id, offer, ice_servers=None):
        self.ice_servers["technician"] = ice_servers
        return {"type": "answer", "sdp": "v=0\r\n"}


def test_stun_turn_servers_from_the_settings_reach_the_sidecar_with_each_leg(
    app, admin, technician, http_server, controls_connect, subscriptions
):
    servers = [{"urls": "stun:stun.example.org:3478"}]
    assert (
        admin.post("/settings", sessions_form(LENS_ICE_SERVERS=json.dumps(servers))).status_code
        == 302
    )
    recorder = OfferRecorder()
    app.extensions["lens.media"] = recorder
    tech = Browser(http_server).log_in("tess@example.com")
    phone, session_id = joined_phone(app, http_server, tech, "/console", "Jane Stun")
    phone_ws = controls_connect("/c/ws", phone.http.cookies)
    phone_ws.send(json.dumps({"type": "offer", "sdp": OFFER, "ref": 1}))
    assert '"answer"' in receive_until(phone_ws, '"ref": 1', time.monotonic() + BOUND)
    assert tech.post(f"/console/sessions/{session_id}/start").status_code == 200
    tech_ws = controls_connect("/console/ws", tech.http.cookies, session=session_id)
    tech_ws.send(json.dumps({"type": "offer", "sdp": OFFER, "ref": 2, "session": session_id}))
    assert '"answer"' in receive_until(tech_ws, '"ref": 2', time.monotonic() + BOUND)
    assert recorder.ice_servers == {"phone": servers, "technician": servers}


def test_a_turn_server_in_the_settings_needs_the_turn_secret_and_no_password(app, admin):
    turn = '[{"urls": "turn:turn.example.org:3478"}]'
    response = admin.post("/settings", sessions_form(LENS_ICE_SERVERS=turn))
    assert response.status_code == 422 and "LENS_TURN_SECRET" in response.text
    app.config["LENS_TURN_SECRET"] = "shared-secret"
    with_password = '[{"urls": "turn:turn.example.org", "username": "u", "credential": "p"}]'
    response = admin.post("/settings", sessions_form(LENS_ICE_SERVERS=with_password))
    assert response.status_code == 422 and "short-lived" in response.text
    assert admin.post("/settings", sessions_form(LENS_ICE_SERVERS=turn)).status_code == 302
    with app.app_context():
        assert db.session.scalar(select(Setting.key)) == "LENS_ICE_SERVERS"
