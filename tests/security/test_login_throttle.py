"""Per-account log-in throttling: exponential back-off, shared state, and no account
enumeration (neither by the answers nor by their timing)."""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter
from datetime import datetime, timedelta

from sqlalchemy import select

from lens.auth.models import LoginThrottle, Technician
from lens.auth.throttle import Backoff, claim_attempt, locked_until, throttle_key
from lens.database import retrying
from lens.extensions import db
from lens.timeutil import now_utc
from tests.conftest import PASSWORD, Console, add_technician, csrf_from, totp_code

LOCKED = "Too many failed log-ins for this account"


class Clock:
    """now_utc for the log-in views, moved on by the test instead of waited for."""

    def __init__(self) -> None:
        self.now = now_utc()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def log_in(client, email: str, password: str, token: str | None = None):
    token = token or csrf_from(client.get("/login").text)
    return client.post("/login", data={"email": email, "password": password, "csrf_token": token})


def from_address(app, address: str):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def test_a_thousand_guesses_from_a_hundred_addresses_lock_the_account(app, technician, monkeypatch):
    clock = Clock()
    monkeypatch.setattr("lens.auth.views.now_utc", clock)
    answers: Counter[int] = Counter()
    for n in range(100):
        client = from_address(app, f"203.0.113.{n + 1}")
        token = csrf_from(client.get("/login").text)
        for guess in range(10):  # the per-address limit (10 a minute) lets each one through
            response = log_in(client, "tess@example.com", f"guess {n}-{guess}", token)
            answers[response.status_code] += 1
    # five failures are free; the sixth starts the back-off and everything after waits
    assert answers == {200: 5, 429: 995}
    with app.app_context():
        (row,) = db.session.scalars(select(LoginThrottle))
        assert row.failures == 6  # refused attempts were not even checked
        assert row.locked_until == clock.now + timedelta(seconds=30)

    # the right password, from an address never seen, is refused until the back-off passes
    newcomer = from_address(app, "198.51.100.200")
    refused = log_in(newcomer, "tess@example.com", PASSWORD)
    assert refused.status_code == 429
    assert LOCKED in refused.text and "try again in 30 seconds" in refused.text
    assert newcomer.get("/console/").status_code == 302
    clock.advance(29)
    assert log_in(newcomer, "tess@example.com", PASSWORD).status_code == 429
    clock.advance(2)
    welcome = log_in(newcomer, "tess@example.com", PASSWORD)
    assert welcome.status_code == 302 and welcome.location == "/console/"
    assert newcomer.get("/console/").status_code == 200
    with app.app_context():  # a complete log-in starts the count again
        assert db.session.scalars(select(LoginThrottle)).all() == []


def test_the_per_address_limit_still_applies(app, technician):
    client = from_address(app, "203.0.113.9")
    token = csrf_from(client.get("/login").text)
    codes = [log_in(client, f"nobody{n}@example.com", "x", token).status_code for n in range(11)]
    assert codes == [200] * 10 + [429]


def test_the_back_off_doubles_up_to_its_cap(db_session):
    backoff = Backoff(free=2, base_seconds=30, cap_seconds=120)
    now, waits = now_utc(), []
    for _ in range(6):
        until = claim_attempt(db_session, "key", now, backoff).locked_until
        waits.append(None if until is None else (until - now).total_seconds())
        assert locked_until(db_session, "key", now) == until
        now = (until or now) + timedelta(seconds=1)  # the next guess waits for the back-off
    assert waits == [None, None, 30, 60, 120, 120]


def test_an_old_failure_starts_the_count_again(db_session):
    backoff = Backoff(free=1, base_seconds=30, window=timedelta(hours=1))
    now = now_utc()
    assert claim_attempt(db_session, "key", now, backoff).locked_until is None
    later = now + timedelta(hours=2)
    # one failure, not two
    assert claim_attempt(db_session, "key", later, backoff).locked_until is None
    locking = claim_attempt(db_session, "key", later, backoff)
    assert locking.admitted and locking.locked_until == later + timedelta(seconds=30)
    refused = claim_attempt(db_session, "key", later, backoff)  # locked: not counted
    assert not refused.admitted and refused.locked_until == later + timedelta(seconds=30)
    assert db_session.get(LoginThrottle, "key").failures == 2


def test_failures_from_many_processes_are_all_counted(app):
    """Each failure is one atomic upsert: concurrent ones lose no count."""
    backoff = Backoff(free=1000)
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def guess() -> None:
        try:
            with app.app_context():
                start.wait()
                for _ in range(10):  # as the log-in view does it: retried while busy

                    def unit() -> None:
                        claim_attempt(db.session, "shared", now_utc(), backoff)
                        db.session.commit()

                    retrying(db.session, unit, 30)
                db.session.remove()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=guess) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    with app.app_context():
        assert db.session.get(LoginThrottle, "shared").failures == 40


def test_concurrent_guesses_get_one_check_per_back_off(app, technician, monkeypatch):
    """Guesses made while a password is being checked wait for its outcome.

    The lock was looked at before the (slow) check and the failure written after it: every
    guess that came during the first one's check passed the same lock check, so each end
    of a back-off let any number of concurrent guesses through (with as many addresses).
    """
    app.config["LENS_LOGIN_FREE_FAILURES"] = 0  # the first failure starts the back-off
    guesses = 6
    progress = threading.Condition()
    checked: list[str] = []
    answered_unchecked = [0]

    def slow_check(self, password: str) -> bool:  # as scrypt, long enough for the others
        with progress:
            checked.append(password)
            progress.notify_all()
            progress.wait_for(lambda: len(checked) + answered_unchecked[0] >= guesses, 10)
        return False

    monkeypatch.setattr(Technician, "check_password", slow_check)
    clients = [from_address(app, f"203.0.113.{n + 1}") for n in range(guesses)]
    tokens = [csrf_from(client.get("/login").text) for client in clients]
    start = threading.Barrier(guesses)
    statuses: list[int] = []

    def guess(n: int) -> None:
        start.wait()
        response = log_in(clients[n], "tess@example.com", f"guess {n}", tokens[n])
        statuses.append(response.status_code)
        if f"guess {n}" not in checked:
            with progress:
                answered_unchecked[0] += 1
                progress.notify_all()

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(guesses)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(checked) == 1, checked  # one guess checked, the others refused unchecked
    assert statuses == [429] * guesses
    with app.app_context():
        key = throttle_key("tess@example.com", app.config["SECRET_KEY"])
        assert db.session.get(LoginThrottle, key).failures == 1


def test_a_right_password_after_free_failures_goes_on_to_the_code(app, admin_id):
    """The attempt counted before the check is taken back when the password is right and
    the code comes next: it does not start a back-off that refuses the code."""
    client = from_address(app, "203.0.113.6")
    token = csrf_from(client.get("/login").text)
    for n in range(5):  # every free failure spent: one more would start the back-off
        assert log_in(client, "ada@example.com", f"guess {n}", token).status_code == 200
    response = Console(client).login("ada@example.com", code=lambda: totp_code(app, admin_id))
    assert response.status_code == 302 and response.location == "/console/"
    with app.app_context():
        assert db.session.scalars(select(LoginThrottle)).all() == []


def test_an_unknown_address_is_throttled_like_a_known_one(app, technician):
    """The answers do not tell an account that exists from one that does not."""
    known, unknown = [], []
    for email, answers in (("tess@example.com", known), ("nobody@example.com", unknown)):
        client = from_address(app, f"203.0.113.{len(email)}")
        token = csrf_from(client.get("/login").text)
        for n in range(7):
            response = log_in(client, email, f"guess {n}", token)
            answers.append((response.status_code, LOCKED in response.text))
    assert known == unknown == [(200, False)] * 5 + [(429, True)] * 2


def test_the_throttle_stores_no_e_mail_address(app, technician):
    log_in(app.test_client(), "stranger@example.com", "guess")
    with app.app_context():
        (row,) = db.session.scalars(select(LoginThrottle))
        assert "stranger" not in row.key
        assert row.key == throttle_key("Stranger@Example.com ", app.config["SECRET_KEY"])


def test_unknown_and_known_addresses_take_the_same_time(app):
    """A failed log-in costs the same whether the account exists: median of 50 each."""
    app.config.update(
        LENS_PASSWORD_METHOD="scrypt",  # the real method, as a site runs it
        LENS_LOGIN_RATE_LIMIT="1000 per minute",
        LENS_LOGIN_FREE_FAILURES=1000,
    )
    with app.app_context():
        tess = Technician(name="Tess Technician", email="tess@example.com")
        tess.set_password(PASSWORD, "scrypt")
        db.session.add(tess)
        db.session.commit()
    client = app.test_client()
    token = csrf_from(client.get("/login").text)
    log_in(client, "warm@example.com", "warm up", token)  # the dummy hash is made once
    times: dict[str, list[float]] = {"known": [], "unknown": []}
    for n in range(50):  # interleaved, so a busy moment of the machine hits both
        for kind, email in (("known", "tess@example.com"), ("unknown", f"x{n}@example.com")):
            started = time.perf_counter()
            response = log_in(client, email, f"wrong {n}", token)
            times[kind].append(time.perf_counter() - started)
            assert response.status_code == 200
    known, unknown = statistics.median(times["known"]), statistics.median(times["unknown"])
    print(f"failed log-in, median of 50: known {known:.4f} s, unknown {unknown:.4f} s")
    assert max(known, unknown) <= 1.2 * min(known, unknown), (known, unknown)


def test_a_failed_log_in_says_so_in_dutch_too(app, technician):
    client = from_address(app, "203.0.113.77")
    client.set_cookie("lens_lang", "nl")
    token = csrf_from(client.get("/login").text)
    for n in range(6):
        response = log_in(client, "tess@example.com", f"guess {n}", token)
    assert response.status_code == 429
    assert "Te veel mislukte aanmeldingen" in response.text


def test_a_right_password_clears_earlier_failures(app, technician):
    client = from_address(app, "203.0.113.5")
    token = csrf_from(client.get("/login").text)
    for n in range(4):
        log_in(client, "tess@example.com", f"guess {n}", token)
    assert Console(client).login("tess@example.com").status_code == 302
    with app.app_context():
        assert db.session.scalars(select(LoginThrottle)).all() == []


def test_old_rows_are_swept(app, technician):
    from lens.cli import sweep_once

    add_technician(app, "Otto Other", "otto@example.com")
    with app.app_context():
        old = now_utc() - timedelta(days=2)
        claim_attempt(db.session, "old", old, Backoff())
        claim_attempt(db.session, "recent", now_utc(), Backoff())
        db.session.commit()
        sweep_once()
        assert [row.key for row in db.session.scalars(select(LoginThrottle))] == ["recent"]
