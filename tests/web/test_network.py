"""The web process behind a proxy, the ICE servers a page gets, logging."""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import io
import json
import logging
import os
import re
import subprocess
import sys
import time

import pytest

from lens import ROOT, network
from lens.config import load_settings
from lens.logs import configure_logging
from lens.turn import turn_credentials
from tests.conftest import Customer
from tests.web.test_customer import invite, state_of

PROXY = "127.0.0.1"  # the TLS proxy, as gunicorn sees it


def behind_proxy(app, forwarded_for: str) -> Customer:
    """A customer whose requests come through the proxy, which appends its address."""
    customer = Customer(app.test_client(), PROXY)
    customer.client.environ_base["HTTP_X_FORWARDED_FOR"] = forwarded_for
    return customer


def wrong_pins(pin: str, count: int) -> list[str]:
    return [f"{n:06d}" for n in range(1, count + 2) if f"{n:06d}" != pin][:count]


def test_ten_wrong_pins_behind_a_trusted_proxy_do_not_stop_another_client(app, console):
    app.config["LENS_TRUSTED_PROXIES"] = 1
    network.init_app(app)
    pin, lens_session = invite(app, console)
    guesser = behind_proxy(app, "203.0.113.5")
    statuses = [guesser.join(wrong).status_code for wrong in wrong_pins(pin, 11)]
    assert statuses[:10] == [422] * 10
    assert statuses[10] == 429  # the guesser is limited...
    assert behind_proxy(app, "198.51.100.20").join(pin).status_code == 303  # ...no one else
    assert state_of(app, lens_session.id) == "connecting"


def test_without_trusted_proxies_every_client_shares_the_proxy_address(app, console):
    """The failure the setting fixes (and a forged header changes nothing)."""
    pin, _ = invite(app, console)
    guesser = behind_proxy(app, "203.0.113.5")
    *first, last = wrong_pins(pin, 11)
    for wrong in first:
        guesser.join(wrong)
    # another customer behind the proxy is counted as the guesser: "too many" (a right PIN
    # would still join: tests/security/test_pin_guessing.py)
    assert behind_proxy(app, "198.51.100.20").join(last).status_code == 429


def test_only_the_trusted_hops_of_x_forwarded_for_are_believed(app, console):
    app.config["LENS_TRUSTED_PROXIES"] = 1
    network.init_app(app)
    pin, _ = invite(app, console)
    # the guesser forges a first hop; the proxy appends the address it really saw
    *first, last = wrong_pins(pin, 11)
    for n, wrong in enumerate(first):
        behind_proxy(app, f"192.0.2.{n}, 203.0.113.5").join(wrong)
    assert behind_proxy(app, "192.0.2.99, 203.0.113.5").join(last).status_code == 429


def test_trusted_proxies_setting_is_read_and_checked(tmp_path):
    assert load_settings(str(tmp_path), {"LENS_TRUSTED_PROXIES": "2"})["LENS_TRUSTED_PROXIES"] == 2
    with pytest.raises(RuntimeError, match="LENS_TRUSTED_PROXIES"):
        load_settings(str(tmp_path), {"LENS_TRUSTED_PROXIES": "one"})


# --- ICE servers in pages ------------------------------------------------------------------

TURN_URLS = [
    "turn:turn.example.com:3478?transport=udp",
    "turns:turn.example.com:5349?transport=tcp",
]


def page_ice(page: str) -> list[dict]:
    match = re.search(r'data-ice="([^"]*)"', page)
    assert match, "the page carries no ICE servers"
    return json.loads(html.unescape(match.group(1)))


def test_pages_get_short_lived_turn_credentials_never_the_secret(app, console, customer):
    secret = "the-coturn-static-auth-secret"
    app.config.update(
        LENS_ICE_SERVERS=[{"urls": "stun:turn.example.com:3478"}, {"urls": TURN_URLS}],
        LENS_TURN_SECRET=secret,
        LENS_TURN_TTL=600,
    )
    pin, lens_session = invite(app, console)
    assert customer.join(pin).status_code == 303
    phone_page = customer.client.get("/c").text
    detail = console.client.get(f"/console/sessions/{lens_session.id}").text

    for page, who in ((phone_page, "-phone"), (detail, "-technician")):
        assert secret not in page
        stun, turn = page_ice(page)
        assert stun == {"urls": "stun:turn.example.com:3478"}
        assert turn["urls"] == TURN_URLS
        expiry, name = turn["username"].split(":", 1)
        assert 590 <= int(expiry) - time.time() <= 600
        assert name.startswith(f"s{lens_session.id}") and who in name
        # what coturn (use-auth-secret) computes for this username
        expected = hmac.new(secret.encode(), turn["username"].encode(), hashlib.sha1).digest()
        assert turn["credential"] == base64.b64encode(expected).decode()


def test_without_ice_servers_pages_get_an_empty_list(app, console, customer):
    pin, _ = invite(app, console)
    customer.join(pin)
    assert page_ice(customer.client.get("/c").text) == []


@pytest.mark.parametrize(
    ("servers", "secret", "message"),
    [
        ([{"urls": "turn:t.example:3478", "username": "u", "credential": "p"}], "s", "every"),
        ([{"urls": "turn:t.example:3478"}], "", "LENS_TURN_SECRET"),
        ({"urls": "stun:t.example"}, "", "JSON list"),
    ],
)
def test_ice_settings_that_would_leak_or_fail_are_refused(tmp_path, servers, secret, message):
    env = {"LENS_ICE_SERVERS": json.dumps(servers), "LENS_TURN_SECRET": secret}
    with pytest.raises(RuntimeError, match=message):
        load_settings(str(tmp_path), env)


def test_turn_credentials_expire_after_the_ttl():
    username, credential = turn_credentials("s", "who:with spaces", 60, now=1000)
    assert username == "1060:who-with-spaces"
    assert credential == turn_credentials("s", "who:with spaces", 60, now=1000)[1]
    assert credential != turn_credentials("other", "who:with spaces", 60, now=1000)[1]


# --- logging -------------------------------------------------------------------------------


def test_requests_carry_a_request_id(client):
    given = client.get("/healthz", headers={"X-Request-ID": "edge-42"})
    assert given.headers["X-Request-ID"] == "edge-42"
    made = client.get("/healthz", headers={"X-Request-ID": "bad id {with} <junk>"})
    assert re.fullmatch(r"[0-9a-f]{16}", made.headers["X-Request-ID"])


def test_json_log_lines_name_the_request_and_session(app):
    stream = io.StringIO()
    handler = configure_logging("web", {"LENS_LOG_FORMAT": "json"}, stream)
    try:
        with app.test_request_context("/console/sessions/7", headers={"X-Request-ID": "r-1"}):
            app.preprocess_request()
            logging.getLogger("lens.test").info("hello %s", "there")
    finally:
        logging.getLogger().removeHandler(handler)
    line = json.loads(stream.getvalue().splitlines()[-1])
    assert line["message"] == "hello there"
    assert (line["level"], line["logger"], line["lens_process"]) == ("INFO", "lens.test", "web")
    assert (line["request_id"], line["lens_session"]) == ("r-1", "7")


def test_bad_log_settings_are_refused():
    with pytest.raises(ValueError, match="LENS_LOG_LEVEL"):
        configure_logging("web", {"LENS_LOG_LEVEL": "LOUD"}, io.StringIO())
    with pytest.raises(ValueError, match="LENS_LOG_FORMAT"):
        configure_logging("web", {"LENS_LOG_FORMAT": "xml"}, io.StringIO())


def test_the_web_process_logs_info_and_the_sms_log_backend_texts(tmp_path):
    """As gunicorn loads it: create_app() with no test settings, then an SMS is "sent"."""
    script = (
        "from lens.factory import create_app\n"
        "app = create_app()\n"
        "with app.app_context():\n"
        "    app.extensions['lens.sms'].send('+31612345678', 'Your support session: PIN 123456',"
        " 'abc')\n"
    )
    env = {**os.environ, "LENS_INSTANCE_PATH": str(tmp_path), "PYTHONPATH": str(ROOT)}
    for name in ("DATABASE_URL", "REDIS_URL", "LENS_LOG_LEVEL", "LENS_LOG_FORMAT"):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "INFO web lens.invitations.sms" in done.stderr
    assert "SMS for session abc to +31612345678: Your support session: PIN 123456" in done.stderr


def test_a_customer_request_logs_its_session_id(app, console, customer):
    pin, lens_session = invite(app, console)
    customer.join(pin)
    stream = io.StringIO()
    handler = configure_logging("web", {}, stream)

    def log_it(response):
        logging.getLogger("lens.test").info("served %s", response.status_code)
        return response

    app.after_request_funcs.setdefault(None, []).append(log_it)  # the app has started
    try:
        customer.client.get("/c")
    finally:
        logging.getLogger().removeHandler(handler)
    line = stream.getvalue().splitlines()[-1]
    assert f"session={lens_session.id}]" in line and "served 200" in line
