"""Guessing PINs: counters that cannot race, a right PIN that passes a limited address,
an address's ceiling and the site's budget that bound guessing (SECURITY.md's math)."""

from __future__ import annotations

import os
import secrets
import threading
from collections import Counter

import pytest
import redis

from lens.security.addresses import address_key
from tests.conftest import csrf_from
from tests.web.test_customer import WRONG_PIN, invite, state_of
from tests.webtier.conftest import Visitor

REDIS = os.environ.get("LENS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
TOO_MANY_WRONG = "many wrong PINs came from your network"
ADDRESS_SPENT = "Too many PINs were tried from your network"
SITE_SPENT = "Joining by PIN is paused"


def wrong_pins(right: str, count: int) -> list[str]:
    pins: list[str] = []
    while len(pins) < count:
        pin = f"{secrets.randbelow(10**6):06d}"
        if pin != right and pin not in pins:
            pins.append(pin)
    return pins


# --- through the Flask test client -----------------------------------------------------------


def test_past_the_address_limit_a_wrong_pin_is_429_and_a_right_one_joins(
    app, console, make_customer
):
    app.config["LENS_PIN_RATE_LIMIT"] = "3 per minute"
    pin, lens_session = invite(app, console)
    guesser = make_customer("203.0.113.5")
    answers = [guesser.join(wrong) for wrong in wrong_pins(pin, 5)]
    assert [a.status_code for a in answers] == [422, 422, 422, 429, 429]
    assert WRONG_PIN in answers[0].text
    assert TOO_MANY_WRONG in answers[3].text
    assert int(answers[3].headers["Retry-After"]) > 0
    # a customer behind the same address (a carrier-grade NAT) with the right PIN joins
    neighbour = make_customer("203.0.113.5")
    assert neighbour.join(pin).status_code == 303
    assert state_of(app, lens_session.id) == "connecting"


def test_an_address_past_its_ceiling_gets_nothing_looked_up(app, console, make_customer):
    app.config["LENS_PIN_ADDRESS_CEILING"] = 4
    pin, lens_session = invite(app, console)
    guesser = make_customer("203.0.113.5")
    for wrong in wrong_pins(pin, 4):
        assert guesser.join(wrong).status_code == 422
    refused = make_customer("203.0.113.5").join(pin)  # even the right PIN
    assert refused.status_code == 429
    assert ADDRESS_SPENT in refused.text
    retry = int(refused.headers["Retry-After"])
    assert 0 < retry <= 20 * 60 + 1  # the PIN validity's window
    assert state_of(app, lens_session.id) == "created"
    assert make_customer("203.0.113.6").join(pin).status_code == 303  # another address


def test_the_sites_budget_bounds_guessing_from_every_address(app, console, make_customer):
    app.config["LENS_PIN_GUESS_BUDGET"] = 5
    pin, lens_session = invite(app, console)
    for n, wrong in enumerate(wrong_pins(pin, 5)):
        assert make_customer(f"203.0.113.{n + 10}").join(wrong).status_code == 422
    refused = make_customer("198.51.100.200").join(pin)
    assert refused.status_code == 429
    assert SITE_SPENT in refused.text
    assert state_of(app, lens_session.id) == "created"
    # a join link is not a PIN: it still works while PIN entry is paused
    assert make_customer("198.51.100.201").open_link(lens_session.join_token).status_code == 303


def test_what_is_not_six_digits_is_not_counted(app, console, make_customer):
    app.config["LENS_PIN_ADDRESS_CEILING"] = 2
    pin, _ = invite(app, console)
    typist = make_customer("203.0.113.8")
    for typo in ("12345", "1234567", "12a456"):
        assert typist.join(typo).status_code == 422
    assert typist.join(pin[:3] + " " + pin[3:]).status_code == 303  # as the console shows it


def test_an_ipv6_subscriber_is_counted_by_its_64(app, console, make_customer):
    app.config["LENS_PIN_RATE_LIMIT"] = "2 per minute"
    pin, _ = invite(app, console)
    wrong = wrong_pins(pin, 4)
    assert make_customer("2001:db8:1:2::1").join(wrong[0]).status_code == 422
    assert make_customer("2001:db8:1:2::2").join(wrong[1]).status_code == 422
    assert make_customer("2001:db8:1:2:ffff::3").join(wrong[2]).status_code == 429
    assert make_customer("2001:db8:1:3::1").join(wrong[3]).status_code == 422  # next /64


def test_the_http_limits_key_an_ipv6_client_by_its_64(app, client):
    from lens.extensions import limiter

    with app.test_request_context(environ_base={"REMOTE_ADDR": "2001:db8:1:2::9"}):
        assert limiter._key_func() == address_key("2001:db8:1:2:abcd::1") == "2001:db8:1:2::/64"
    with app.test_request_context(environ_base={"REMOTE_ADDR": "203.0.113.9"}):
        assert limiter._key_func() == "203.0.113.9"


def test_join_links_past_the_ceiling_are_refused_and_under_it_a_right_one_joins(
    app, console, make_customer
):
    app.config["LENS_PIN_ADDRESS_CEILING"] = 3
    _, lens_session = invite(app, console)
    prober = make_customer("203.0.113.7")
    assert [prober.open_link(f"nope{n}").status_code for n in range(2)] == [410, 410]
    assert make_customer("203.0.113.7").open_link(lens_session.join_token).status_code == 303
    refused = make_customer("203.0.113.7").open_link("nope3")
    assert refused.status_code == 429
    assert "Too many links were tried from your network" in refused.text


# --- against the real server, concurrently ------------------------------------------------------


def _redis_or_fail() -> str:
    try:
        redis.Redis.from_url(REDIS).ping()
    except redis.RedisError:
        pytest.fail(f"Redis is not reachable at {REDIS} (set LENS_TEST_REDIS_URL)")
    return REDIS


@pytest.mark.parametrize("storage", ["memory", "redis"])
def test_200_concurrent_wrong_pins_from_one_address_pass_at_most_the_limit(make_site, storage):
    settings = {
        "LENS_PIN_RATE_LIMIT": "10 per minute",
        # the address limit is what is measured here: the ceiling and budget stay out of it
        "LENS_PIN_ADDRESS_CEILING": "1000",
        "LENS_PIN_GUESS_BUDGET": "1000",
    }
    if storage == "redis":
        prefix = f"lens-test-{secrets.token_hex(4)}:"
        settings |= {"REDIS_URL": _redis_or_fail(), "LENS_REDIS_PREFIX": prefix}
    site = make_site(**settings)
    tech = Visitor(site).log_in()
    pin = tech.create_session()
    guessers = [Visitor(site) for _ in range(200)]
    for guesser in guessers:
        guesser.token = csrf_from(guesser.get("/").text)
    start = threading.Barrier(len(guessers))
    statuses: Counter[int] = Counter()
    lock = threading.Lock()

    def guess(guesser: Visitor, wrong: str) -> None:
        start.wait()
        response = guesser.http.post(
            site.base + "/", data={"pin": wrong, "csrf_token": guesser.token},
            allow_redirects=False, timeout=60,
        )  # fmt: skip
        with lock:
            statuses[response.status_code] += 1

    threads = [
        threading.Thread(target=guess, args=(guesser, wrong))
        for guesser, wrong in zip(guessers, wrong_pins(pin, len(guessers)), strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    print(f"{storage}: 200 concurrent wrong PINs from one address: {dict(statuses)}")
    assert sum(statuses.values()) == 200
    assert set(statuses) <= {422, 429}
    assert 1 <= statuses[422] <= 10  # at most the limit were answered "wrong PIN"
    # and a customer with the right PIN, from that limited address, joins
    phone = Visitor(site).join(pin)
    assert phone.get("/c").status_code == 200


def test_concurrent_invitations_from_one_technician_pass_at_most_the_limit(make_site):
    """The invitation allowance is counted before sending, atomically (it was counted after
    the response, so sends made at once could all pass)."""
    site = make_site(LENS_INVITE_RATE_LIMIT="3 per minute")
    tech = Visitor(site).log_in()
    start = threading.Barrier(20)
    statuses: Counter[int] = Counter()
    lock = threading.Lock()

    def send(n: int) -> None:
        start.wait()
        response = tech.post(
            "/console/sessions",
            {"name": f"Jane {n}", "channel": "sms", "phone": "+31 6 12345678"},
        )
        with lock:
            statuses[response.status_code] += 1

    threads = [threading.Thread(target=send, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    print(f"20 concurrent SMS invitations, limit 3 a minute: {dict(statuses)}")
    assert statuses == Counter({201: 3, 429: 17})
