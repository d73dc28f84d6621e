"""The customer's phone: PIN and link joins, the join steps, rate limits, whose session."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import select

from lens.extensions import db
from lens.sessions import lifecycle
from lens.sessions.models import LensSession
from lens.timeutil import now_utc

WRONG_PIN = "That PIN is not valid"
USED_PIN = "This PIN was already used"
EXPIRED_PIN = "This PIN has expired. Ask your technician for a new one."
UNKNOWN_LINK = "This link is incomplete or wrong. Open the whole link from your message"


def session_by_pin(app, pin: str) -> LensSession:
    with app.app_context():
        lens_session = db.session.scalar(select(LensSession).where(LensSession.pin == pin))
        assert lens_session is not None
        db.session.expunge(lens_session)
        return lens_session


def state_of(app, session_id: int) -> str:
    with app.app_context():
        return db.session.get(LensSession, session_id).state


def invite(app, console) -> tuple[str, LensSession]:
    """A new session from the console: its PIN and the session."""
    pin = console.create_session("Jane Customer")["pin"]
    return pin, session_by_pin(app, pin)


# --- PIN join and the join steps ---------------------------------------------------------


def test_pin_join_redirects_to_the_session_page(app, console, customer):
    pin, lens_session = invite(app, console)
    page = customer.client.get("/")
    assert page.status_code == 200
    assert 'name="pin"' in page.text

    response = customer.join(pin)

    assert response.status_code == 303
    assert response.headers["Location"] == "/c"
    assert state_of(app, lens_session.id) == "connecting"
    session_page = customer.client.get("/c")
    assert session_page.status_code == 200
    assert 'data-step="tutorial"' in session_page.text


def test_join_steps_render_with_their_buttons(app, console, customer):
    pin, _ = invite(app, console)
    customer.join(pin)
    headers = {"HX-Request": "true"}
    for step, buttons in [
        ("tutorial", ["Skip", "OK"]),
        ("permission", ["OK"]),
        ("eula", ["Accept"]),
    ]:
        response = customer.client.get(f"/c/step/{step}", headers=headers)
        assert response.status_code == 200, step
        assert f'data-step="{step}"' in response.text
        assert "<html" not in response.text  # a partial for HTMX
        for label in buttons:
            assert f">{label}</button>" in response.text, (step, label)
    assert customer.client.get("/c/step/other", headers=headers).status_code == 404


def test_accept_makes_the_session_wait_and_the_console_shows_it(app, console, customer):
    pin, lens_session = invite(app, console)
    customer.join(pin)
    assert "Customer connected" not in console.client.get("/console/").text

    response = customer.accept()

    assert response.status_code == 200
    assert 'data-screen="waiting"' in response.text
    assert "Waiting for your technician" in response.text
    assert state_of(app, lens_session.id) == "waiting"
    rows = console.client.get("/console/").text
    assert f'id="session-row-{lens_session.id}"' in rows
    assert "Customer connected" in rows
    # after accepting, the steps show the status screen rather than the licence again
    step = customer.client.get("/c/step/eula", headers={"HX-Request": "true"})
    assert 'data-screen="waiting"' in step.text


def test_accept_twice_is_refused_with_409(app, console, customer):
    pin, lens_session = invite(app, console)
    customer.join(pin)
    assert customer.accept().status_code == 200
    again = customer.accept()
    assert again.status_code == 409
    assert "not possible in the session" in again.text
    assert state_of(app, lens_session.id) == "waiting"


def test_accept_without_csrf_token_is_refused(app, console, customer):
    pin, lens_session = invite(app, console)
    customer.join(pin)
    response = customer.client.post("/c/accept", headers={"HX-Request": "true"})
    assert response.status_code == 400
    assert state_of(app, lens_session.id) == "connecting"


def test_refusal_without_htmx_is_a_full_error_page(app, console, customer):
    pin, _ = invite(app, console)
    customer.join(pin)
    customer.accept()
    response = customer.client.post("/c/accept", headers={"X-CSRFToken": customer.token})
    assert response.status_code == 409
    assert "<html" in response.text
    assert "not possible in the session" in response.text
    assert "HX-Retarget" not in response.headers
    assert "HX-Request" in response.headers["Vary"]


def test_pin_typed_as_shown_with_a_space_joins(app, console, customer):
    created = console.create_session("Jane Customer")
    pin = created["pin"]
    lens_session = session_by_pin(app, pin)
    shown = f"{pin[:3]} {pin[3:]}"
    assert f">{shown}</p>" in created["response"].text  # what the technician reads out
    response = customer.join(shown)
    assert response.status_code == 303
    assert state_of(app, lens_session.id) == "connecting"


def test_pin_typed_in_full_width_digits_joins(app, console, customer):
    """A Japanese or Chinese keyboard types full-width digits: the same PIN (it was looked
    up as typed, found nothing and spent a guess of the site's budget)."""
    pin, lens_session = invite(app, console)
    assert customer.join("".join(chr(ord(digit) + 0xFEE0) for digit in pin)).status_code == 303
    assert state_of(app, lens_session.id) == "connecting"


def test_wrong_pin_is_422_with_a_clear_message(app, console, customer):
    pin, lens_session = invite(app, console)
    wrong = "000000" if pin != "000000" else "111111"
    response = customer.join(wrong)
    assert response.status_code == 422
    assert WRONG_PIN in response.text
    assert state_of(app, lens_session.id) == "created"


def test_pin_join_without_csrf_token_is_refused(app, console, customer):
    pin, lens_session = invite(app, console)
    response = customer.client.post("/", data={"pin": pin})
    assert response.status_code == 400
    assert state_of(app, lens_session.id) == "created"


def test_used_pin_is_refused_on_another_phone_and_says_so(app, console, customer, make_customer):
    pin, _ = invite(app, console)
    assert customer.join(pin).status_code == 303
    response = make_customer("198.51.100.99").join(pin)
    assert response.status_code == 422
    assert USED_PIN in response.text
    assert WRONG_PIN not in response.text


def test_a_used_pin_counts_towards_the_limit_like_a_wrong_one(app, console, make_customer):
    """Saying "already used" gives a guesser nothing: it is limited as a wrong PIN is."""
    app.config["LENS_PIN_RATE_LIMIT"] = "2 per minute"
    pin, _ = invite(app, console)
    assert make_customer().join(pin).status_code == 303
    guesser = make_customer("203.0.113.5")
    assert USED_PIN in guesser.join(pin).text
    assert guesser.join(pin).status_code == 422
    assert guesser.join(pin).status_code == 429


def test_a_pin_whose_session_ended_unused_is_not_called_used(app, console, customer):
    pin, lens_session = invite(app, console)
    console.post(f"/sessions/{lens_session.id}/end")
    response = customer.join(pin)
    assert response.status_code == 422
    assert WRONG_PIN in response.text


def test_expired_pin_is_refused_and_the_expiry_is_kept(app, console, customer):
    pin, lens_session = invite(app, console)
    with app.app_context():
        stored = db.session.get(LensSession, lens_session.id)
        stored.pin_expires_at = now_utc() - timedelta(seconds=1)
        db.session.commit()
    response = customer.join(pin)
    assert response.status_code == 422
    assert EXPIRED_PIN in response.text and WRONG_PIN not in response.text
    assert state_of(app, lens_session.id) == "expired"
    # typed again (the expiry cleared the PIN), it is still called expired
    assert EXPIRED_PIN in customer.join(pin).text


def test_a_pin_the_sweep_expired_is_called_expired_in_the_customers_language(
    app, console, make_customer
):
    pin, lens_session = invite(app, console)
    with app.app_context():
        later = now_utc() + timedelta(minutes=21)
        assert lifecycle.expire_due_sessions(db.session, later, timedelta(minutes=20)) == 1
        db.session.commit()
    response = make_customer().join(pin)
    assert response.status_code == 422
    assert EXPIRED_PIN in response.text
    dutch = make_customer("198.51.100.8")
    dutch.client.set_cookie("lens_lang", "nl")
    assert "Deze pincode is verlopen." in dutch.join(pin).text


# --- Rate limits -------------------------------------------------------------------------


# Past the address limit a wrong PIN is 429 and a right one joins; the ceiling and the
# site budget: tests/security/test_pin_guessing.py.


def test_right_pins_join_whatever_the_address_limit(app, console, customer):
    app.config["LENS_PIN_RATE_LIMIT"] = "1 per minute"
    for _ in range(2):
        pin, _ = invite(app, console)
        assert customer.join(pin).status_code == 303


# --- Join links --------------------------------------------------------------------------


def test_join_link_opens_the_session(app, console, customer):
    _, lens_session = invite(app, console)
    response = customer.open_link(lens_session.join_token)
    assert response.status_code == 303
    assert response.headers["Location"] == "/c"
    assert state_of(app, lens_session.id) == "connecting"
    assert 'data-step="tutorial"' in customer.client.get("/c").text


def test_join_link_works_on_one_device_only(app, console, customer, make_customer):
    _, lens_session = invite(app, console)
    assert customer.open_link(lens_session.join_token).status_code == 303

    other = make_customer("198.51.100.8").open_link(lens_session.join_token)
    assert other.status_code == 410
    assert "already been opened on another device" in other.text

    again = customer.open_link(lens_session.join_token)
    assert again.status_code == 303
    assert customer.client.get("/c").status_code == 200
    assert state_of(app, lens_session.id) == "connecting"


def test_unknown_link_is_410_and_says_to_open_the_whole_link(app, console, make_customer):
    response = make_customer().open_link("no-such-token")
    assert response.status_code == 410
    assert UNKNOWN_LINK in response.text and "no longer valid" not in response.text
    # a real link cut short (a mail client wrapped it): the same
    _, lens_session = invite(app, console)
    cut = make_customer("198.51.100.8").open_link(lens_session.join_token[:-10])
    assert cut.status_code == 410 and UNKNOWN_LINK in cut.text
    dutch = make_customer("198.51.100.9")
    dutch.client.set_cookie("lens_lang", "nl")
    assert "Deze link is onvolledig of onjuist." in dutch.open_link("no-such-token").text
    assert state_of(app, lens_session.id) == "created"


def test_link_of_an_ended_session_is_410(app, console, customer):
    _, lens_session = invite(app, console)
    customer.open_link(lens_session.join_token)
    assert console.post(f"/sessions/{lens_session.id}/end").status_code == 200
    response = customer.open_link(lens_session.join_token)
    assert response.status_code == 410
    assert "no longer valid" in response.text


# --- A device opens its own session only ------------------------------------------------


def test_no_session_page_without_a_join(customer):
    response = customer.client.get("/c")
    assert response.status_code == 410
    assert "No session found" in response.text
    assert customer.client.get("/c/step/eula").status_code == 410
    assert customer.accept().status_code == 410


def test_a_customer_cookie_opens_only_its_own_session(app, console, make_customer):
    pin_a, session_a = invite(app, console)
    pin_b, session_b = invite(app, console)
    phone_a = make_customer("198.51.100.1")
    phone_b = make_customer("198.51.100.2")
    assert phone_a.join(pin_a).status_code == 303
    assert phone_b.join(pin_b).status_code == 303

    # Phone A points its signed cookie at B's session; its device key does not match B's.
    with phone_a.client.session_transaction() as cookie:
        cookie["lens_joined"] = session_b.id
    page = phone_a.client.get("/c")
    assert page.status_code == 410
    assert "No session found" in page.text
    assert phone_a.client.get("/c/step/tutorial").status_code == 410
    assert phone_a.accept().status_code == 410
    assert state_of(app, session_b.id) == "connecting"

    assert phone_b.accept().status_code == 200
    assert state_of(app, session_b.id) == "waiting"
    assert state_of(app, session_a.id) == "connecting"


def test_ended_session_shows_the_ended_screen(app, console, customer):
    pin, lens_session = invite(app, console)
    customer.join(pin)
    console.post(f"/sessions/{lens_session.id}/end")
    page = customer.client.get("/c")
    assert page.status_code == 410
    assert "The session has ended" in page.text
    assert customer.accept().status_code == 410
    assert state_of(app, lens_session.id) == "closed"


def test_expired_link_shows_why_it_cannot_be_opened(app, console, customer):
    _, lens_session = invite(app, console)
    with app.app_context():
        later = now_utc() + timedelta(hours=1)
        assert lifecycle.expire_due_sessions(db.session, later, timedelta(minutes=20)) == 1
        db.session.commit()
    page = customer.open_link(lens_session.join_token)
    assert page.status_code == 410
    assert "This session cannot be opened" in page.text
    assert "no longer valid" in page.text
    assert state_of(app, lens_session.id) == "expired"


def test_stalled_join_swept_shows_the_ended_screen(app, console, customer):
    pin, lens_session = invite(app, console)
    customer.join(pin)
    with app.app_context():
        later = now_utc() + timedelta(hours=1)
        assert lifecycle.expire_due_sessions(db.session, later, timedelta(minutes=20)) == 1
        db.session.commit()
    page = customer.client.get("/c")
    assert page.status_code == 410
    assert "The session has ended" in page.text


# --- the join steps without scripts (issue 15: a tap before htmx has loaded) ---------------


def test_the_join_steps_are_plain_forms_that_work_without_scripts(app, console, customer):
    pin, lens_session = invite(app, console)
    customer.join(pin)

    tutorial = customer.client.get("/c").text
    form = re.search(r'<form class="buttons" method="get" action="/c"[^>]*>', tutorial)
    assert form and 'hx-get="/c/step/permission"' in form.group(0)
    assert 'name="step" value="permission"' in tutorial

    permission = customer.client.get("/c?step=permission")  # the form's plain submit
    assert permission.status_code == 200
    assert 'data-step="permission"' in permission.text
    assert "<html" in permission.text
    assert 'name="step" value="eula"' in permission.text

    licence = customer.client.get("/c?step=eula")
    assert 'data-step="eula"' in licence.text
    assert 'method="post" action="/c/accept"' in licence.text
    assert 'data-step="tutorial"' in customer.client.get("/c?step=nonsense").text

    accepted = customer.client.post("/c/accept", data={"csrf_token": customer.token})
    assert accepted.status_code == 303
    assert accepted.headers["Location"] == "/c"
    assert "HX-Request" in accepted.headers["Vary"]
    assert state_of(app, lens_session.id) == "waiting"
    waiting = customer.client.get("/c?step=eula").text  # past the steps: the status screen
    assert "Waiting for your technician" in waiting


def test_the_htmx_accept_still_answers_with_the_status_screen(app, console, customer):
    pin, _ = invite(app, console)
    customer.join(pin)
    response = customer.accept()
    assert response.status_code == 200
    assert "Waiting for your technician" in response.text
    assert "<html" not in response.text
    assert "HX-Request" in response.headers["Vary"]
