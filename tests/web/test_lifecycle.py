"""The session lifecycle: transitions, their log, refusals, the one-active rule and PINs."""

from __future__ import annotations

import contextlib
import re
import secrets
import threading
from datetime import datetime, timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from lens.auth.models import Technician
from lens.extensions import db
from lens.sessions import lifecycle
from lens.sessions.errors import (
    InvalidTransition,
    LinkNotValid,
    OneActiveSession,
    OtherDevice,
    PinExpired,
    PinNotValid,
    PinUsed,
)
from lens.sessions.models import LensSession, SessionEvent

NOW = datetime(2026, 3, 2, 9, 0, 0)
VALIDITY = timedelta(minutes=20)
PHONE = "device-key-of-janes-phone"
OTHER_PHONE = "device-key-of-someone-else"

# How each state is reached from `created`, one lifecycle call per step.
PATHS = {
    "created": [],
    "connecting": ["join_pin"],
    "waiting": ["join_pin", "accept"],
    "active": ["join_pin", "accept", "start"],
    "on_hold": ["join_pin", "accept", "start", "hold"],
    "expired": ["expire"],
    "closed": ["join_pin", "accept", "start", "end"],
}
ACTIONS = ("join_pin", "join_link", "accept", "start", "hold", "resume", "end", "expire")
LIVE = ("created", "connecting", "waiting", "active", "on_hold")
ALLOWED = {
    ("join_pin", "created"),
    ("join_link", "created"),
    ("accept", "connecting"),
    ("start", "waiting"),
    ("hold", "active"),
    ("resume", "on_hold"),
    ("expire", "created"),
    *(("end", state) for state in LIVE),
}
REFUSED = [
    (action, state) for action in ACTIONS for state in PATHS if (action, state) not in ALLOWED
]


def tech(technician_id: int) -> Technician:
    return db.session.get(Technician, technician_id)


def new_session(technician: Technician, now: datetime = NOW, name: str = "Jane") -> LensSession:
    return lifecycle.create_session(
        db.session,
        technician=technician,
        console="technician",
        customer_name=name,
        pin_validity=VALIDITY,
        now=now,
    )


def act(action: str, lens_session: LensSession, technician: Technician, pin: str, now=NOW):
    """Run one lifecycle action the way its caller would."""
    dbs = db.session
    if action == "join_pin":
        return lifecycle.join_by_pin(dbs, pin, PHONE, now)
    if action == "join_link":
        return lifecycle.join_by_token(dbs, lens_session.join_token, PHONE, now)
    if action == "accept":
        return lifecycle.accept_eula(dbs, lens_session, now)
    if action == "start":
        return lifecycle.start_session(dbs, lens_session, technician, now)
    if action == "hold":
        return lifecycle.hold_session(dbs, lens_session, technician, now)
    if action == "resume":
        return lifecycle.resume_session(dbs, lens_session, technician, now)
    if action == "end":
        actor = lifecycle.technician_actor(technician)
        return lifecycle.end_session(
            dbs, lens_session, actor=actor, reason="technician", now=now, technician=technician
        )
    if action == "expire":
        return lifecycle.expire_session(dbs, lens_session, now)
    raise AssertionError(action)


def session_in(state: str, technician: Technician) -> tuple[LensSession, str]:
    """A committed session brought to state through the lifecycle; also its first PIN."""
    lens_session = new_session(technician)
    pin = lens_session.pin
    for step in PATHS[state]:
        act(step, lens_session, technician, pin)
    db.session.commit()
    assert lens_session.state == state
    return lens_session, pin


def event_count(lens_session: LensSession) -> int:
    return db.session.scalar(
        select(func.count())
        .select_from(SessionEvent)
        .where(SessionEvent.session_id == lens_session.id)
    )


def kinds(lens_session: LensSession) -> list[str]:
    db.session.expire(lens_session, ["events"])
    return [event.kind for event in lens_session.events]


# --- Transitions and their log ------------------------------------------------------------


def test_create_logs_created_and_pin_issued(db_session, technician):
    lens_session = new_session(tech(technician))
    assert lens_session.state == "created"
    assert re.fullmatch(r"\d{6}", lens_session.pin)
    assert lens_session.pin_expires_at == NOW + VALIDITY
    assert kinds(lens_session) == ["created", "pin_issued"]
    assert lens_session.events[1].detail == lens_session.pin


def test_full_path_by_pin_logs_every_transition(db_session, technician):
    technician = tech(technician)
    lens_session = new_session(technician)
    pin = lens_session.pin
    expected = ["created", "pin_issued"]
    for step, state in [
        ("join_pin", "connecting"),
        ("accept", "waiting"),
        ("start", "active"),
        ("hold", "on_hold"),
        ("resume", "active"),
        ("end", "closed"),
    ]:
        act(step, lens_session, technician, pin)
        expected.append(step.removesuffix("_pin"))
        assert lens_session.state == state
        assert kinds(lens_session) == expected
    join, accept, start, hold, resume, end = lens_session.events[2:]
    assert (join.actor, join.detail) == ("customer", "pin")
    assert accept.actor == "customer"
    assert {start.actor, hold.actor, resume.actor, end.actor} == {f"technician:{technician.id}"}
    assert end.detail == "technician"
    assert lens_session.ended_at == NOW
    assert lens_session.pin is None


def test_join_by_link_logs_a_link_join(db_session, technician):
    lens_session = new_session(tech(technician))
    joined = lifecycle.join_by_token(db.session, lens_session.join_token, PHONE, NOW)
    assert joined is lens_session
    assert joined.state == "connecting"
    assert joined.pin is None  # the PIN is used up by the link too
    assert joined.customer_device == lifecycle.device_fingerprint(PHONE)
    last = joined.events[-1]
    assert (last.kind, last.actor, last.detail) == ("join", "customer", "link")


@pytest.mark.parametrize("state", LIVE)
def test_every_live_state_can_be_closed(db_session, technician, state):
    technician = tech(technician)
    lens_session, _ = session_in(state, technician)
    before = event_count(lens_session)
    later = NOW + timedelta(minutes=3)
    act("end", lens_session, technician, "", now=later)
    assert lens_session.state == "closed"
    assert lens_session.ended_at == later
    assert lens_session.end_reason == "technician"
    assert event_count(lens_session) == before + 1
    assert kinds(lens_session)[-1] == "end"


def test_created_expires_with_a_system_event(db_session, technician):
    lens_session = new_session(tech(technician))
    lifecycle.expire_session(db.session, lens_session, NOW + VALIDITY)
    assert lens_session.state == "expired"
    assert lens_session.pin is None
    assert lens_session.end_reason == "expired"
    last = lens_session.events[-1]
    assert (last.kind, last.actor) == ("expire", "system")


# --- Refused transitions ------------------------------------------------------------------


def expected_error(action: str, lens_session: LensSession):
    if action == "join_pin":
        return PinNotValid  # the PIN was used up or cleared when it left `created`
    if action == "join_link":
        # A link joined on one phone names that phone; anyone else is told so.
        return OtherDevice if lens_session.customer_device else LinkNotValid
    return InvalidTransition


@pytest.mark.parametrize(("action", "state"), REFUSED)
def test_refused_transition_changes_nothing(db_session, technician, action, state):
    technician = tech(technician)
    lens_session, pin = session_in(state, technician)
    before = event_count(lens_session)
    device = lens_session.customer_device
    error = expected_error(action, lens_session)
    with pytest.raises(error):
        if action == "join_pin":
            lifecycle.join_by_pin(db.session, pin, OTHER_PHONE, NOW)
        elif action == "join_link":
            lifecycle.join_by_token(db.session, lens_session.join_token, OTHER_PHONE, NOW)
        else:
            act(action, lens_session, technician, pin)
    assert lens_session.state == state
    assert lens_session.customer_device == device
    assert event_count(lens_session) == before


@pytest.mark.parametrize("state", ["expired", "closed"])
def test_link_of_a_session_over_before_anyone_joined_is_refused(db_session, technician, state):
    technician = tech(technician)
    lens_session = new_session(technician)
    act("expire" if state == "expired" else "end", lens_session, technician, "")
    db.session.commit()
    before = event_count(lens_session)
    with pytest.raises(LinkNotValid):
        lifecycle.join_by_token(db.session, lens_session.join_token, PHONE, NOW)
    assert lens_session.state == state
    assert lens_session.customer_device is None
    assert event_count(lens_session) == before


def test_refused_transition_names_action_and_state(db_session, technician):
    lens_session, _ = session_in("waiting", tech(technician))
    with pytest.raises(InvalidTransition) as refused:
        lifecycle.hold_session(db.session, lens_session, tech(technician), NOW)
    assert (refused.value.action, refused.value.state) == ("hold", "waiting")


# --- One active session per technician ----------------------------------------------------


def test_second_start_by_same_technician_is_refused(db_session, technician):
    technician = tech(technician)
    first, _ = session_in("waiting", technician)
    second, _ = session_in("waiting", technician)
    lifecycle.start_session(db.session, first, technician, NOW)
    before = event_count(second)
    with pytest.raises(OneActiveSession):
        lifecycle.start_session(db.session, second, technician, NOW)
    db.session.rollback()
    assert db.session.get(LensSession, second.id).state == "waiting"
    assert db.session.get(LensSession, first.id).state == "active"
    assert event_count(second) == before


def test_a_session_on_hold_still_counts_as_in_hand(db_session, technician):
    technician = tech(technician)
    session_in("on_hold", technician)
    waiting, _ = session_in("waiting", technician)
    with pytest.raises(OneActiveSession):
        lifecycle.start_session(db.session, waiting, technician, NOW)


def test_two_technicians_may_each_have_an_active_session(app, db_session, technician):
    other_id = _other_technician(app)
    session_in("active", tech(technician))
    other, _ = session_in("active", tech(other_id))
    assert other.state == "active"


def _other_technician(app) -> int:
    other = Technician(name="Otto", email="otto@example.com")
    other.set_password("irrelevant password", "pbkdf2:sha256:1")
    db.session.add(other)
    db.session.commit()
    return other.id


def test_console_start_of_a_second_session_is_409_and_changes_nothing(app, console, make_customer):
    ids = []
    for index, name in enumerate(["Ann", "Bob"]):
        pin = console.create_session(name)["pin"]
        with app.app_context():
            ids.append(db.session.scalar(select(LensSession.id).where(LensSession.pin == pin)))
        phone = make_customer(f"198.51.100.{index + 20}")
        assert phone.join(pin).status_code == 303
        assert phone.accept().status_code == 200
    first, second = ids
    assert console.post(f"/sessions/{first}/start").status_code == 200
    with app.app_context():
        events_before = db.session.scalar(
            select(func.count()).select_from(SessionEvent).where(SessionEvent.session_id == second)
        )

    response = console.post(f"/sessions/{second}/start")

    assert response.status_code == 409
    assert "You already have an active session" in response.text
    assert response.headers["HX-Retarget"] == "#messages"
    with app.app_context():
        assert db.session.get(LensSession, first).state == "active"
        assert db.session.get(LensSession, second).state == "waiting"
        assert db.session.get(LensSession, second).started_at is None
        assert (
            db.session.scalar(
                select(func.count())
                .select_from(SessionEvent)
                .where(SessionEvent.session_id == second)
            )
            == events_before
        )


def test_concurrent_starts_the_database_index_admits_only_one(app, technician, monkeypatch):
    with app.app_context():
        ids = [session_in("waiting", tech(technician))[0].id for _ in range(2)]
    barrier = threading.Barrier(2, timeout=10)

    def check_passed_together(dbs, who):
        barrier.wait()  # both Start requests are past the code's check at once
        return None

    monkeypatch.setattr(lifecycle, "active_session_of", check_passed_together)
    outcomes: dict[int, str] = {}

    def press_start(session_id: int) -> None:
        with app.app_context():
            lens_session = db.session.get(LensSession, session_id)
            try:
                lifecycle.start_session(db.session, lens_session, tech(technician), NOW)
                outcomes[session_id] = "active"
            except OneActiveSession:
                outcomes[session_id] = "refused"
            except Exception as exc:  # reported below, so the test shows what went wrong
                outcomes[session_id] = repr(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=press_start, args=(i,)) for i in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(outcomes.values()) == ["active", "refused"], outcomes
    with app.app_context():
        states = {i: db.session.get(LensSession, i).state for i in ids}
        for session_id, outcome in outcomes.items():
            assert states[session_id] == ("active" if outcome == "active" else "waiting")
            starts = db.session.scalar(
                select(func.count())
                .select_from(SessionEvent)
                .where(SessionEvent.session_id == session_id, SessionEvent.kind == "start")
            )
            assert starts == (1 if outcome == "active" else 0)


def test_database_refuses_two_active_rows_for_one_technician(db_session, technician):
    technician = tech(technician)
    first, _ = session_in("waiting", technician)
    second, _ = session_in("waiting", technician)
    first.state = "active"
    second.state = "active"
    with pytest.raises(IntegrityError):
        db.session.flush()
    db.session.rollback()
    first.state = "active"
    db.session.commit()
    with pytest.raises(IntegrityError):
        db.session.execute(
            update(LensSession).where(LensSession.id == second.id).values(state="on_hold")
        )
    db.session.rollback()
    assert db.session.get(LensSession, second.id).state == "waiting"


# --- PINs ---------------------------------------------------------------------------------


def test_pins_are_six_digits_and_unique_among_live_sessions(db_session, technician):
    technician = tech(technician)
    pins = [new_session(technician, name=f"Customer {i}").pin for i in range(300)]
    assert all(re.fullmatch(r"\d{6}", pin) for pin in pins)
    assert len(set(pins)) == len(pins)


def _forced_pins(monkeypatch, pins: list[int]) -> None:
    """Make the lifecycle's PIN draws return pins, in order; other draws stay random."""
    draws = iter(pins)

    def randbelow(upper: int) -> int:
        return next(draws) if upper == 10**6 else secrets.randbelow(upper)

    fake = SimpleNamespace(randbelow=randbelow, token_urlsafe=secrets.token_urlsafe)
    monkeypatch.setattr(lifecycle, "secrets", fake)


def test_a_pin_colliding_with_a_live_one_is_drawn_again(db_session, technician, monkeypatch):
    technician = tech(technician)
    _forced_pins(monkeypatch, [654321, 654321, 654321, 42])
    first = new_session(technician)
    second = new_session(technician)
    assert first.pin == "654321"
    assert second.pin == "000042"  # the two collisions were skipped; leading zeros kept


def test_a_used_pin_is_free_for_a_new_session(db_session, technician, monkeypatch):
    technician = tech(technician)
    _forced_pins(monkeypatch, [654321, 654321])
    first = new_session(technician)
    lifecycle.join_by_pin(db.session, "654321", PHONE, NOW)
    second = new_session(technician)
    assert first.pin is None
    assert second.pin == "654321"


def test_a_pin_works_once(db_session, technician):
    lens_session = new_session(tech(technician))
    pin = lens_session.pin
    assert lifecycle.join_by_pin(db.session, f" {pin} ", PHONE, NOW) is lens_session
    before = event_count(lens_session)
    with pytest.raises(PinUsed):
        lifecycle.join_by_pin(db.session, pin, OTHER_PHONE, NOW)
    assert lens_session.state == "connecting"
    assert lens_session.customer_device == lifecycle.device_fingerprint(PHONE)
    assert event_count(lens_session) == before


def test_a_used_pin_is_called_used_only_within_its_validity(db_session, technician):
    used = new_session(tech(technician))
    pin = used.pin
    lifecycle.join_by_pin(db.session, pin, PHONE, NOW)
    assert lifecycle.pin_was_used(db.session, pin, NOW + VALIDITY - timedelta(seconds=1))
    # past its validity the PIN may be given out again: it is just not valid
    assert not lifecycle.pin_was_used(db.session, pin, NOW + VALIDITY)
    with pytest.raises(PinNotValid) as refused:
        lifecycle.join_by_pin(db.session, pin, OTHER_PHONE, NOW + VALIDITY)
    assert not isinstance(refused.value, PinUsed)


def test_a_pin_never_used_is_not_called_used(db_session, technician):
    technician = tech(technician)
    ended = new_session(technician)
    pin = ended.pin
    lifecycle.end_session(db.session, ended, actor="technician:1", reason="technician", now=NOW)
    assert not lifecycle.pin_was_used(db.session, pin, NOW)
    with pytest.raises(PinNotValid) as refused:
        lifecycle.join_by_pin(db.session, pin, PHONE, NOW)
    assert refused.value.code == "pin_not_valid"


@pytest.mark.parametrize("typed", ["", "12345", "1234567", "12a456", "１２３４５６"])
def test_malformed_pins_are_refused(db_session, technician, typed):
    new_session(tech(technician))
    with pytest.raises(PinNotValid):
        lifecycle.join_by_pin(db.session, typed, PHONE, NOW)


def test_pin_works_until_its_validity_passes(db_session, technician):
    technician = tech(technician)
    in_time = new_session(technician)
    late = new_session(technician)
    just_in_time = NOW + VALIDITY - timedelta(seconds=1)
    joined = lifecycle.join_by_pin(db.session, in_time.pin, PHONE, just_in_time)
    assert joined.state == "connecting"

    with pytest.raises(PinNotValid):
        lifecycle.join_by_pin(db.session, late.pin, PHONE, NOW + VALIDITY)
    assert late.state == "expired"
    assert late.pin is None
    assert kinds(late)[-1] == "expire"


def test_a_late_pin_is_called_expired_for_a_day(db_session, technician):
    technician = tech(technician)
    late = new_session(technician)
    pin = late.pin
    with pytest.raises(PinExpired):
        lifecycle.join_by_pin(db.session, pin, PHONE, NOW + VALIDITY)
    # the expiry cleared the PIN; its log still names it
    with pytest.raises(PinExpired):
        lifecycle.join_by_pin(db.session, pin, PHONE, NOW + VALIDITY + timedelta(hours=23))
    with pytest.raises(PinNotValid) as refused:
        lifecycle.join_by_pin(db.session, pin, PHONE, NOW + VALIDITY + timedelta(hours=24))
    assert refused.value.code == "pin_not_valid"
    assert late.state == "expired"


def test_expired_link_is_refused_and_expires_the_session(db_session, technician):
    lens_session = new_session(tech(technician))
    with pytest.raises(LinkNotValid):
        lifecycle.join_by_token(db.session, lens_session.join_token, PHONE, NOW + VALIDITY)
    assert lens_session.state == "expired"
    assert lens_session.customer_device is None


def test_expire_due_sessions_expires_pins_and_closes_stalled_joins(db_session, technician):
    technician = tech(technician)
    timeout = timedelta(minutes=5)
    due = new_session(technician, now=NOW - VALIDITY - timedelta(minutes=1), name="Due")
    fresh = new_session(technician, now=NOW, name="Fresh")
    stalled = new_session(technician, now=NOW - timedelta(minutes=10), name="Stalled")
    lifecycle.join_by_pin(db.session, stalled.pin, PHONE, NOW - timedelta(minutes=6))
    joining = new_session(technician, now=NOW, name="Joining")
    lifecycle.join_by_pin(db.session, joining.pin, OTHER_PHONE, NOW - timedelta(minutes=1))
    waiting, _ = session_in("waiting", technician)
    db.session.commit()

    count = lifecycle.expire_due_sessions(db.session, NOW, connect_timeout=timeout)

    assert count == 2
    assert due.state == "expired"
    assert kinds(due)[-1] == "expire"
    assert stalled.state == "closed"
    assert (stalled.events[-1].kind, stalled.events[-1].detail) == ("end", "timeout")
    assert stalled.end_reason == "timeout"
    assert (fresh.state, joining.state, waiting.state) == ("created", "connecting", "waiting")
    assert lifecycle.expire_due_sessions(db.session, NOW, connect_timeout=timeout) == 0


def test_a_waiting_session_whose_customer_left_is_closed_by_the_sweep(db_session, technician):
    technician = tech(technician)
    gone_after = timedelta(minutes=5)
    left, _ = session_in("waiting", technician)
    here, _ = session_in("waiting", technician)
    never_seen, _ = session_in("waiting", technician)  # from before the heartbeat existed
    active, _ = session_in("active", technician)  # started: the technician decides
    lifecycle.customer_seen(db.session, left.id, NOW - timedelta(minutes=6))
    lifecycle.customer_seen(db.session, here.id, NOW - timedelta(minutes=1))
    lifecycle.customer_seen(db.session, active.id, NOW - timedelta(minutes=30))
    db.session.commit()
    db.session.expire_all()

    count = lifecycle.expire_due_sessions(
        db.session, NOW, connect_timeout=timedelta(minutes=20), gone_after=gone_after
    )

    assert count == 1
    assert (left.state, left.end_reason) == ("closed", "customer_left")
    assert (left.events[-1].kind, left.events[-1].detail, left.events[-1].actor) == (
        "end",
        "customer_left",
        "system",
    )
    assert (here.state, never_seen.state, active.state) == ("waiting", "waiting", "active")
    assert here.customer_seen_at == NOW - timedelta(minutes=1)


def test_concurrent_joins_with_one_pin_admit_only_one_device(app, technician, monkeypatch):
    with app.app_context():
        lens_session = new_session(tech(technician))
        db.session.commit()
        pin, session_id = lens_session.pin, lens_session.id
    barrier = threading.Barrier(2)
    join = lifecycle._join

    def join_after_both_read(*args, **kwargs):
        # Both phones have read the unused PIN. (A fix that serialises the reads makes one
        # phone wait for the other here; the barrier then breaks, which is fine.)
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=2)
        return join(*args, **kwargs)

    monkeypatch.setattr(lifecycle, "_join", join_after_both_read)
    outcomes: dict[str, str] = {}

    def type_pin(device: str) -> None:
        with app.app_context():
            try:
                lifecycle.join_by_pin(db.session, pin, device, NOW)
                db.session.commit()
                outcomes[device] = "joined"
            except PinNotValid:
                outcomes[device] = "refused"
            except Exception as exc:  # reported below
                outcomes[device] = repr(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=type_pin, args=(d,)) for d in (PHONE, OTHER_PHONE)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(outcomes.values()) == ["joined", "refused"], outcomes
    with app.app_context():
        stored = db.session.get(LensSession, session_id)
        (winner,) = [device for device, outcome in outcomes.items() if outcome == "joined"]
        assert stored.customer_device == lifecycle.device_fingerprint(winner)
        assert [event.kind for event in stored.events].count("join") == 1
