"""Who may do what: every rule of the URL map and every socket message type, for everyone.

The roles: anonymous, the customer of session A, the customer of session B, the technician
(session A's), another technician (session B's), a Web Console user (a group without the
Technician Console) and an administrator. Every URL names session A where it names a
session. The expected outcome of each (route, role) and (message type, role) is written in
the tables below; a route or a message type without a row fails the test, and so does a row
whose route or type is gone.

The Admin Center's routes are one row ("admin.*"): tests/admin/test_access.py already
checks every one of them for a technician (403) and someone logged out (the log-in), and
the administrator's pages; here the other roles are checked with its list of requests.
"""

from __future__ import annotations

import io
import json
import secrets
import time
from pathlib import Path

import pytest
from flask import Flask, url_for
from PIL import Image
from simple_websocket import Client
from simple_websocket import ConnectionError as HandshakeRefused

from lens.auth.models import Technician
from lens.captures import records
from lens.extensions import db
from lens.features import TECHNICIAN_CONSOLE, WEB_CONSOLE
from lens.sessions.models import LensSession
from lens.signaling.control import MediaControl
from lens.sockets.messages import CONSOLE, PHONE
from lens.timeutil import now_utc
from tests.admin.test_access import admin_requests
from tests.security.conftest import (
    ADMIN,
    ANONYMOUS,
    CUSTOMER_A,
    CUSTOMER_B,
    OTHER_TECHNICIAN,
    ROLES,
    TECHNICIAN,
    WEB_CONSOLE_USER,
    World,
)
from tests.security.junk import sample
from tests.security.pages import console_page, phone_page

# --- outcomes ----------------------------------------------------------------------------
OK = "ok"  # served: 2xx, a redirect elsewhere than the log-in, or the action's own refusal
#            (409 a state, 422 a form, 429 a rate limit — the PIN form's, which every role
#            here fills in —, 503 the media sidecar, which these tests do not run)
LOGIN = "login"  # sent to log in (302 to /login) or 401 before a socket's upgrade
DENY = "deny"  # 403
GONE = "gone"  # 410: the customer's pages without a live session joined on this device
MISSING = "missing"  # 404
OPEN = "open"  # a socket: upgraded

# fmt: off
# route (endpoint + method), then the outcome for each role, in ROLES' order
HTTP = {
    #    anon     custA    custB    tech     other    web      admin
    "static GET":
        (OK,      OK,      OK,      OK,      OK,      OK,      OK),
    "auth.login GET":
        (OK,      OK,      OK,      OK,      OK,      OK,      OK),
    "auth.login POST":
        (OK,      OK,      OK,      OK,      OK,      OK,      OK),
    # logged in or not, the answer is the log-in page (the logged-in are logged out: run last)
    "auth.logout POST":
        (LOGIN,   LOGIN,   LOGIN,   LOGIN,   LOGIN,   LOGIN,   LOGIN),
    # the log-in's second step, only after a first step: everyone else is sent to log in
    "auth.login_code GET":
        (LOGIN,   LOGIN,   LOGIN,   LOGIN,   LOGIN,   LOGIN,   LOGIN),
    "auth.login_code POST":
        (LOGIN,   LOGIN,   LOGIN,   LOGIN,   LOGIN,   LOGIN,   LOGIN),
    "auth.two_factor GET":
        (LOGIN,   LOGIN,   LOGIN,   OK,      OK,      OK,      OK),
    "auth.two_factor POST":
        (LOGIN,   LOGIN,   LOGIN,   OK,      OK,      OK,      OK),
    # an administrator may not turn two-step verification off
    "auth.two_factor_off POST":
        (LOGIN,   LOGIN,   LOGIN,   OK,      OK,      OK,      DENY),
    "auth.change_password GET":
        (LOGIN,   LOGIN,   LOGIN,   OK,      OK,      OK,      OK),
    "auth.change_password POST":
        (LOGIN,   LOGIN,   LOGIN,   OK,      OK,      OK,      OK),
    "welcome.set_password GET":
        (MISSING, MISSING, MISSING, MISSING, MISSING, MISSING, MISSING),
    "welcome.set_password POST":
        (MISSING, MISSING, MISSING, MISSING, MISSING, MISSING, MISSING),
    "i18n.switch_language GET":
        (OK,      OK,      OK,      OK,      OK,      OK,      OK),
    "ops.healthz GET":
        (OK,      OK,      OK,      OK,      OK,      OK,      OK),
    "ops.favicon GET":
        (OK,      OK,      OK,      OK,      OK,      OK,      OK),
    "ops.metrics GET":
        (MISSING, MISSING, MISSING, MISSING, MISSING, MISSING, MISSING),
    "customer.start GET":
        (OK,      OK,      OK,      OK,      OK,      OK,      OK),
    "customer.start POST":
        (OK,      OK,      OK,      OK,      OK,      OK,      OK),
    "customer.join_link GET":
        (GONE,    GONE,    GONE,    GONE,    GONE,    GONE,    GONE),
    # the phone's pages are its own session's (B's customer sees B): no session in the URL
    "customer.session_page GET":
        (GONE,    OK,      OK,      GONE,    GONE,    GONE,    GONE),
    "customer.step GET":
        (GONE,    OK,      OK,      GONE,    GONE,    GONE,    GONE),
    # the phone's photo for its own session's request (a form is no picture: refused, 4xx)
    "customer.upload_photo POST":
        (GONE,    OK,      OK,      GONE,    GONE,    GONE,    GONE),
    # the phone ends its own session (run last: it ends session A)
    "customer.end POST":
        (GONE,    OK,      OK,      GONE,    GONE,    GONE,    GONE),
    "customer.accept POST":
        (GONE,    OK,      OK,      GONE,    GONE,    GONE,    GONE),
    "customer.live GET":
        (DENY,    OPEN,    OPEN,    DENY,    DENY,    DENY,    DENY),
    "technician_console.index GET":
        (LOGIN,   LOGIN,   LOGIN,   OK,      OK,      DENY,    OK),
    "technician_console.new_session GET":
        (LOGIN,   LOGIN,   LOGIN,   OK,      OK,      DENY,    OK),
    "technician_console.create_session POST":
        (LOGIN,   LOGIN,   LOGIN,   OK,      OK,      DENY,    OK),
    "technician_console.session_detail GET":
        (LOGIN,   LOGIN,   LOGIN,   OK,      DENY,    DENY,    DENY),
    "technician_console.start POST":
        (LOGIN,   LOGIN,   LOGIN,   OK,      DENY,    DENY,    DENY),
    "technician_console.end POST":
        (LOGIN,   LOGIN,   LOGIN,   OK,      DENY,    DENY,    DENY),
    "technician_console.hold POST":
        (LOGIN,   LOGIN,   LOGIN,   OK,      DENY,    DENY,    DENY),
    "technician_console.resume POST":
        (LOGIN,   LOGIN,   LOGIN,   OK,      DENY,    DENY,    DENY),
    "technician_console.transfer_targets GET":
        (LOGIN,   LOGIN,   LOGIN,   OK,      DENY,    DENY,    DENY),
    "technician_console.transfer POST":
        (LOGIN,   LOGIN,   LOGIN,   OK,      DENY,    DENY,    DENY),
    "technician_console.live GET":
        (LOGIN,   LOGIN,   LOGIN,   OPEN,    OPEN,    DENY,    OPEN),
    "web_console.index GET":
        (LOGIN,   LOGIN,   LOGIN,   OK,      OK,      OK,      OK),
    "web_console.new_session GET":
        (LOGIN,   LOGIN,   LOGIN,   OK,      OK,      OK,      OK),
    "web_console.create_session POST":
        (LOGIN,   LOGIN,   LOGIN,   OK,      OK,      OK,      OK),
    "web_console.session_detail GET":
        (LOGIN,   LOGIN,   LOGIN,   OK,      DENY,    DENY,    DENY),
    "web_console.start POST":
        (LOGIN,   LOGIN,   LOGIN,   OK,      DENY,    DENY,    DENY),
    "web_console.end POST":
        (LOGIN,   LOGIN,   LOGIN,   OK,      DENY,    DENY,    DENY),
    # the Web Console has no hold and no transfer, even for the session's own technician
    "web_console.hold POST":
        (LOGIN,   LOGIN,   LOGIN,   DENY,    DENY,    DENY,    DENY),
    "web_console.resume POST":
        (LOGIN,   LOGIN,   LOGIN,   DENY,    DENY,    DENY,    DENY),
    "web_console.transfer_targets GET":
        (LOGIN,   LOGIN,   LOGIN,   DENY,    DENY,    DENY,    DENY),
    "web_console.transfer POST":
        (LOGIN,   LOGIN,   LOGIN,   DENY,    DENY,    DENY,    DENY),
    "web_console.live GET":
        (LOGIN,   LOGIN,   LOGIN,   OPEN,    OPEN,    OPEN,    OPEN),
    "technician_captures.take_snapshot POST":
        (LOGIN,   LOGIN,   LOGIN,   OK,      DENY,    DENY,    DENY),
    "technician_captures.captures GET":
        (LOGIN,   LOGIN,   LOGIN,   OK,      DENY,    DENY,    DENY),
    "technician_captures.snapshot_image GET":
        (LOGIN,   LOGIN,   LOGIN,   OK,      DENY,    DENY,    DENY),
    "technician_captures.download_snapshot GET":
        (LOGIN,   LOGIN,   LOGIN,   OK,      DENY,    DENY,    DENY),
    "technician_captures.start_recording POST":
        (LOGIN,   LOGIN,   LOGIN,   OK,      DENY,    DENY,    DENY),
    "technician_captures.stop_recording POST":
        (LOGIN,   LOGIN,   LOGIN,   OK,      DENY,    DENY,    DENY),
    "technician_captures.recording_file GET":
        (LOGIN,   LOGIN,   LOGIN,   OK,      DENY,    DENY,    DENY),
    # the Web Console takes no snapshot and records nothing; the session's captures are its
    # technician's to see from either console
    "web_captures.take_snapshot POST":
        (LOGIN,   LOGIN,   LOGIN,   DENY,    DENY,    DENY,    DENY),
    "web_captures.captures GET":
        (LOGIN,   LOGIN,   LOGIN,   OK,      DENY,    DENY,    DENY),
    "web_captures.snapshot_image GET":
        (LOGIN,   LOGIN,   LOGIN,   OK,      DENY,    DENY,    DENY),
    "web_captures.download_snapshot GET":
        (LOGIN,   LOGIN,   LOGIN,   OK,      DENY,    DENY,    DENY),
    "web_captures.start_recording POST":
        (LOGIN,   LOGIN,   LOGIN,   DENY,    DENY,    DENY,    DENY),
    "web_captures.stop_recording POST":
        (LOGIN,   LOGIN,   LOGIN,   DENY,    DENY,    DENY,    DENY),
    "web_captures.recording_file GET":
        (LOGIN,   LOGIN,   LOGIN,   OK,      DENY,    DENY,    DENY),
    # every Admin Center route (tests/admin/test_access.py: technician and logged-out GETs)
    "admin.*":
        (LOGIN,   LOGIN,   LOGIN,   DENY,    DENY,    DENY,    OK),
}
# fmt: on

# --- socket messages ---------------------------------------------------------------------
NONE = "no socket"  # refused before the upgrade (the routes above)
BAD = "bad_message"  # not a message this page sends: its schema refuses it
NOT_FOUND = "not_found"  # a panel or dialog for a session that is not the technician's
NOT_ALLOWED = "not_allowed"  # a control for a session that is not the technician's
REFUSED = "refused"  # an offer for a session that is not the technician's
MEDIA = "media"  # an offer handed to the media sidecar (for the page's own session)
OWN = "own session"  # done on the sender's own session B; session A sees nothing

# Each role speaks from its page: customers from /c/ws, technicians and the administrator from
# /console/ws, the Web Console user from /web/ws (the others' pages are refused above). Every
# message names session A where it names a session; session A is active, B waiting.
# fmt: off
# message type, then the outcome for each role, in ROLES' order
SOCKET = {
    #                  anon  custA  custB  tech   other        web          admin
    "open":           (NONE, BAD,   BAD,   OK,    NOT_FOUND,   NOT_FOUND,   NOT_FOUND),
    "close":          (NONE, BAD,   BAD,   OK,    OK,          OK,          OK),
    "dialog":         (NONE, BAD,   BAD,   OK,    NOT_FOUND,   NOT_FOUND,   NOT_FOUND),
    "offer":          (NONE, MEDIA, MEDIA, MEDIA, REFUSED,     REFUSED,     REFUSED),
    "freeze":         (NONE, BAD,   BAD,   OK,    NOT_ALLOWED, NOT_ALLOWED, NOT_ALLOWED),
    "quality":        (NONE, BAD,   BAD,   OK,    NOT_ALLOWED, NOT_ALLOWED, NOT_ALLOWED),
    "torch":          (NONE, BAD,   BAD,   OK,    NOT_ALLOWED, NOT_ALLOWED, NOT_ALLOWED),
    "camera":         (NONE, BAD,   BAD,   OK,    NOT_ALLOWED, NOT_ALLOWED, NOT_ALLOWED),
    "draw":           (NONE, BAD,   BAD,   OK,    NOT_ALLOWED, NOT_ALLOWED, NOT_ALLOWED),
    "erase":          (NONE, BAD,   BAD,   OK,    NOT_ALLOWED, NOT_ALLOWED, NOT_ALLOWED),
    "chat":           (NONE, OK,    OWN,   OK,    NOT_ALLOWED, NOT_ALLOWED, NOT_ALLOWED),
    "camera_paused":  (NONE, OK,    OWN,   BAD,   BAD,         BAD,         BAD),
    "capabilities":   (NONE, OK,    OWN,   BAD,   BAD,         BAD,         BAD),
    "device_result":  (NONE, OK,    OWN,   BAD,   BAD,         BAD,         BAD),
    "photo":          (NONE, BAD,   BAD,   OK,    NOT_ALLOWED, NOT_ALLOWED, NOT_ALLOWED),
    "photo_failed":   (NONE, OK,    OWN,   BAD,   BAD,         BAD,         BAD),
}
# fmt: on

# run after every other request: they end sessions A and B, log everyone out
LAST = ("customer.end", "technician_console.end", "web_console.end", "auth.logout")


def route_key(endpoint: str, method: str) -> str:
    return "admin.*" if endpoint.startswith("admin.") else f"{endpoint} {method}"


def url_map_keys(app: Flask) -> set[str]:
    return {
        route_key(rule.endpoint, method)
        for rule in app.url_map.iter_rules()
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }


def test_every_route_and_message_type_has_a_row(app):
    routes = url_map_keys(app)
    assert routes - HTTP.keys() == set(), "a route without a row in HTTP"
    assert HTTP.keys() - routes == set(), "a row in HTTP for a route that is gone"
    types = CONSOLE.types | PHONE.types
    assert types - SOCKET.keys() == set(), "a socket message type without a row in SOCKET"
    assert SOCKET.keys() - types == set(), "a row in SOCKET for a type that is gone"
    for table in (HTTP, SOCKET):
        assert all(len(row) == len(ROLES) and None not in row for row in table.values())


# --- the routes --------------------------------------------------------------------------


def _captures(app: Flask, world: World) -> dict[str, int]:
    """A snapshot and a finished recording of session A (files in the storage)."""
    picture = io.BytesIO()
    Image.new("RGB", (4, 4)).save(picture, "PNG")
    with app.test_request_context():
        lens_session = db.session.get(LensSession, world.session_a)
        technician = db.session.get(Technician, world.ids[TECHNICIAN])
        snapshot = records.store_snapshot(
            db.session,
            lens_session,
            technician,
            picture.getvalue(),
            (4, 4),
            app.extensions["lens.storage"],
            now_utc(),
        )
        relative = records.new_recording_path(lens_session)
        root = app.config["LENS_RECORDINGS_PATH"]
        file = records.inside(Path(root), relative)
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(b"\x1a\x45\xdf\xa3")
        recording = records.start_recording(
            db.session, lens_session, technician, relative, now_utc()
        )
        db.session.flush()
        records.finish_recording(db.session, recording, None, actor="test", now=now_utc())
        db.session.commit()
        ids = {"snapshot_id": snapshot.id, "recording_id": recording.id}
        db.session.remove()
    return ids


def _requests(app: Flask, world: World, values: dict) -> list[tuple[str, str, str]]:
    """(row, method, URL) for every rule; admin routes from tests/admin's own list."""
    found = []
    with app.test_request_context():
        for rule in app.url_map.iter_rules():
            if rule.endpoint.startswith("admin."):
                continue
            if rule.websocket:
                found.append((route_key(rule.endpoint, "GET"), "SOCKET", rule.rule))
                continue
            url = url_for(rule.endpoint, **{arg: values[arg] for arg in rule.arguments})
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                found.append((route_key(rule.endpoint, method), method, url))
    found += [("admin.*", method, url) for method, url in admin_requests(app)]
    return sorted(found, key=_last_if_destructive)


def _last_if_destructive(request: tuple[str, str, str]) -> int:
    endpoint = request[0].split()[0]
    return LAST.index(endpoint) + 1 if endpoint in LAST else 0


def _outcome(response) -> str:
    status = response.status_code
    location = response.headers.get("Location", "")
    if status == 401 or (300 <= status < 400 and "/login" in location):
        return LOGIN
    named = {403: DENY, 404: MISSING, 410: GONE}
    if status in named:
        return named[status]
    if 200 <= status < 400 or status in (409, 422, 429, 503):
        return OK
    return f"HTTP {status}"


def _socket_outcome(http_server: str, path: str, cookie: str) -> str:
    try:
        ws = Client.connect(f"ws://{http_server}{path}", headers={"Cookie": cookie})
    except HandshakeRefused as refused:
        return {401: LOGIN, 403: DENY}.get(refused.status_code, f"HTTP {refused.status_code}")
    ws.close()
    return OPEN


def test_every_route_for_every_role(app, world, http_server, tracebacks):
    values = {
        "session_id": world.session_a,
        "token": "not-a-token",
        "step": "tutorial",
        "code": "nl",
        "filename": "css/lens.css",
        "file_format": "png",
        "ext": "webm",
        "request_id": "p1-abcdefgh",
        **_captures(app, world),
    }
    found: dict[tuple[str, str], str] = {}
    for row, method, url in _requests(app, world, values):
        for role in ROLES:
            if row == "admin.*" and (
                role in (TECHNICIAN, OTHER_TECHNICIAN) or (role == ADMIN and method != "GET")
            ):
                continue  # tests/admin: a technician's 403s; the administrator's changes
            if row == "admin.*" and role == ANONYMOUS and method == "GET":
                continue  # tests/admin: someone logged out is sent to log in
            if method == "SOCKET":
                got = _socket_outcome(http_server, url, world.cookie(role))
            else:
                token = world.tokens[role]
                response = world.clients[role].open(
                    url,
                    method=method,
                    data={"csrf_token": token} if method == "POST" else None,
                    headers={"X-CSRFToken": token},
                )
                got = _outcome(response)
            expected = HTTP[row][ROLES.index(role)]
            if got != expected:
                found[(f"{method} {url} ({row})", role)] = f"{got}, expected {expected}"
    assert found == {}, "\n".join(
        f"{where} as {role}: {what}" for (where, role), what in found.items()
    )
    assert tracebacks.records == [], tracebacks.lines()


# --- the socket messages -------------------------------------------------------------------


def _reply(page, raw: str, kind: str) -> list[dict]:
    replies = page.say(raw)
    if kind == "offer":  # answered beside the reader, once the sidecar was asked
        deadline = time.monotonic() + 15
        while not any(r.get("ref") == 1 for r in replies) and time.monotonic() < deadline:
            time.sleep(0.05)
            replies = [json.loads(t) for t in page.ws.sent if not t.startswith("<")]
        replies = [r for r in replies if r.get("ref") == 1]
    return replies


def _message_outcome(replies: list[dict], published: dict[str, list[str]], kind: str) -> str:
    errors = [r for r in replies if r.get("type") == "error"]
    if errors:
        reason = errors[-1]["reason"]
        return MEDIA if reason == "unavailable" else reason
    if kind in published["A"]:
        return OK
    if kind in published["B"]:
        return OWN
    if kind in ("open", "close", "dialog"):
        return OK
    return f"nothing ({replies})"


@pytest.mark.parametrize("kind", sorted(SOCKET))
def test_every_socket_message_for_every_role(app, world, tracebacks, kind):
    # no sidecar here: an offer that gets as far as the media is "unavailable" at once
    app.extensions["lens.media"] = MediaControl("http://127.0.0.1:9", "not-the-secret", timeout=2)
    start = world.clients[TECHNICIAN].post(
        f"/console/sessions/{world.session_a}/start",
        headers={"X-CSRFToken": world.tokens[TECHNICIAN], "HX-Request": "true"},
    )
    assert start.status_code == 200, start.text
    bus = app.extensions["lens.events"]
    watched = Watched(bus, world.session_a, world.session_b)
    found = {}
    try:
        for role in ROLES:
            expected = SOCKET[kind][ROLES.index(role)]
            # anonymous: refused before the upgrade (test_every_route_for_every_role)
            got = NONE if role == ANONYMOUS else _speak(app, world, role, kind, watched)
            if got != expected:
                found[role] = f"{got}, expected {expected}"
    finally:
        for subscription in watched.values():
            subscription.close()
    assert found == {}, found
    assert tracebacks.records == [], tracebacks.lines()


def _published(bus, watched: dict) -> dict[str, list[str]]:
    """The types each session's control channel carried since the last call (read up to a
    marker published now: the page's own publication came before it, in the same thread)."""
    mark = f"mark-{secrets.token_hex(4)}"
    for topic in watched:
        bus.publish(topic, {"type": mark})
    seen = {}
    for topic, subscription in watched.items():
        types = []
        deadline = time.monotonic() + 10
        while True:
            assert time.monotonic() < deadline, "the marker never came"
            message = subscription.get(timeout=1)
            if message is None:
                continue
            if message.get("type") == mark:
                break
            types.append(message.get("type"))
        seen["A" if topic.endswith(f":{watched.session_a}") else "B"] = types
    return seen


class Watched(dict):
    """Subscriptions to sessions A's and B's control channels, by topic."""

    def __init__(self, bus, session_a: int, session_b: int) -> None:
        super().__init__(
            (topic, bus.subscribe([topic]))
            for topic in (f"controls:{session_a}", f"controls:{session_b}")
        )
        self.session_a = session_a


def _speak(app, world: World, role: str, kind: str, watched: Watched) -> str:
    if role in (CUSTOMER_A, CUSTOMER_B):
        session_id = world.session_a if role == CUSTOMER_A else world.session_b
        context, schema = phone_page(app, session_id), PHONE
    else:
        console = WEB_CONSOLE if role == WEB_CONSOLE_USER else TECHNICIAN_CONSOLE
        context, schema = console_page(app, world.ids[role], console), CONSOLE
    with context as page:
        if schema is CONSOLE and kind not in ("open", "close", "dialog"):
            page.say(json.dumps({"type": "open", "session": world.session_a}))
            page.ws.sent.clear()
        bus = app.extensions["lens.events"]
        _published(bus, watched)
        if kind in schema.types:
            message = sample(schema, kind, world.session_a)
        else:  # what the other side's page would send, with session A named
            other = PHONE if schema is CONSOLE else CONSOLE
            message = sample(other, kind, world.session_a)
        replies = _reply(page, json.dumps(message), kind)
        published = _published(bus, watched)
        assert page.open, "the socket was closed"
        return _message_outcome(replies, published, kind)
