"""Every message a page may send is checked by one schema before a handler sees it.

Property-based (hypothesis): every page-socket type and every control message type, spoiled
or replaced by any JSON at all, is answered `bad_message`, the socket stays open and no
traceback is logged. The schema alone, the page's dispatcher (what a socket feeds), and a
sample over real WebSockets.
"""

from __future__ import annotations

import json
import logging
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lens.controls.messages import REGISTRY
from lens.sockets.messages import CONSOLE, PHONE, BadMessage, PageSchema
from tests.security.conftest import TECHNICIAN
from tests.security.junk import SAMPLES, SDP, as_text, json_junk, sample, spoiled
from tests.security.pages import console_page, phone_page

SCHEMAS = {"console": CONSOLE, "phone": PHONE}
FIXTURES = settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    deadline=None,
)


def test_every_message_type_has_a_sample_that_passes():
    assert set(REGISTRY) <= CONSOLE.types | PHONE.types  # each control type has a sender
    assert CONSOLE.types | PHONE.types <= set(SAMPLES), "a new message type needs a sample"
    for schema in SCHEMAS.values():
        for kind in schema.types:
            assert schema.parse(as_text(sample(schema, kind))).type == kind


@pytest.mark.parametrize("page", sorted(SCHEMAS))
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_the_schema_refuses_every_spoiled_message(page, data):
    schema: PageSchema = SCHEMAS[page]
    message = data.draw(spoiled(schema))
    with pytest.raises(BadMessage) as refused:
        schema.parse(as_text(message))
    assert refused.value.reason == "bad_message"


@pytest.mark.parametrize("page", sorted(SCHEMAS))
@settings(max_examples=200, deadline=None)
@given(
    message=json_junk
    | st.dictionaries(st.just("type"), st.sampled_from(sorted(SAMPLES)) | json_junk)
    | st.builds(
        lambda kind, junk: {"type": kind, **junk},
        st.sampled_from(sorted(SAMPLES)),
        st.dictionaries(st.text(max_size=12), json_junk, max_size=6),
    ),
    raw=st.none() | st.binary(max_size=64) | st.text(max_size=200),
)
def test_the_schema_raises_nothing_but_bad_message(page, message, raw):
    schema = SCHEMAS[page]
    for text in (as_text(message), raw):
        try:
            checked = schema.parse(text)
        except BadMessage as refused:
            assert refused.reason in ("bad_message", "empty", "too_long")
        else:
            json.dumps(checked.model_dump(), allow_nan=False)  # clean: finite, JSON again


REGRESSIONS = [
    '{"type": {}}',
    '{"type": []}',
    '{"type": null}',
    '{"type": "capabilities", "torch": true, "cameras": 1e999}',  # int(inf): OverflowError
    '{"type": "capabilities", "torch": true, "cameras": "2"}',
    '{"type": "open", "session": {}}',
    '{"type": "open", "session": true}',
    '{"type": "open", "session": 2147483648}',  # more than a PostgreSQL INTEGER
    '{"type": "freeze", "on": true, "session": 9223372036854775808}',
    '{"type": "offer", "ref": {}, "sdp": "v=0"}',
    '{"type": "draw", "kind": "line", "color": "#e53935", "width": 4, "points": [[NaN, 0]]}',
    '{"type": "chat", "text": {"$gt": ""}}',
    '{"type": "chat"' + ', "a": [' * 2000,  # deeply nested, unfinished
    "[" * 100_000,
    "[" * 30_000 + "]" * 30_000,  # too deep for the JSON parser
    "null",
    "",
]


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _refused(replies) -> bool:
    return (
        len(replies) == 1
        and replies[0]["type"] == "error"
        and replies[0]["reason"] == "bad_message"
    )


def test_the_known_crashes_are_answered_and_the_pages_stay_open(app, world, tracebacks):
    for driven in (console_page(app, world.ids[TECHNICIAN]), phone_page(app, world.session_a)):
        with driven as page:
            page.say(json.dumps({"type": "open", "session": world.session_a}))  # the console's
            for raw in REGRESSIONS:
                assert _refused(page.say(raw)), raw
            assert page.open
    assert tracebacks.records == [], tracebacks.lines()


@settings(FIXTURES, max_examples=100)
@given(data=st.data())
def test_the_console_dispatcher_answers_junk_and_stays_open(app, world, tracebacks, caplog, data):
    caplog.set_level(logging.INFO, logger="lens.sockets.page")
    with console_page(app, world.ids[TECHNICIAN]) as page:
        page.say(json.dumps({"type": "open", "session": world.session_a}))
        message = data.draw(spoiled(CONSOLE, session=world.session_a))
        caplog.clear()
        replies = page.say(as_text(message))
        assert _refused(replies), (message, replies)
        refusal_lines = [r for r in caplog.records if "refused from technician" in r.getMessage()]
        assert len(refusal_lines) == 1 and refusal_lines[0].exc_info is None
        if _is_int(message.get("session")):
            assert replies[0].get("session") == message["session"]  # the page can match it
        anything = data.draw(json_junk)
        replies = page.say(as_text(anything))
        assert all(r.get("reason") != "server_error" for r in replies), replies
        assert page.open
    assert tracebacks.records == [], tracebacks.lines()


@settings(FIXTURES, max_examples=100)
@given(data=st.data())
def test_the_phone_dispatcher_answers_junk_and_stays_open(app, world, tracebacks, data):
    with phone_page(app, world.session_a) as page:
        message = data.draw(spoiled(PHONE))
        replies = page.say(as_text(message))
        assert _refused(replies), (message, replies)
        ref = message.get("ref")
        if message.get("type") == "offer" and (_is_int(ref) or isinstance(ref, str)):
            assert replies[0].get("ref") == message["ref"]
        anything = data.draw(json_junk)
        replies = page.say(as_text(anything))
        assert all(r.get("reason") != "server_error" for r in replies), replies
        assert page.open
    assert tracebacks.records == [], tracebacks.lines()


# --- over real WebSockets -------------------------------------------------------------


def _connect(http_server: str, path: str, cookie: str):
    from simple_websocket import Client

    return Client.connect(f"ws://{http_server}{path}", headers={"Cookie": cookie})


def _next_json(ws, timeout: float = 5.0) -> dict | None:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        text = ws.receive(timeout=left)
        if text is None:
            return None
        if not text.startswith("<"):
            return json.loads(text)
    return None


def _chat_goes_through(ws, session: int | None) -> bool:
    message = {"type": "chat", "text": "still here"}
    if session is not None:
        message["session"] = session
    ws.send(json.dumps(message))
    deadline = time.monotonic() + 5
    while (left := deadline - time.monotonic()) > 0:
        reply = _next_json(ws, left)
        if reply is not None and reply.get("type") == "chat" and reply.get("text") == "still here":
            return True
    return False


@pytest.mark.parametrize("page", ["console", "phone"])
def test_over_a_real_socket_junk_is_answered_and_the_socket_stays_open(
    app, world, http_server, tracebacks, page
):
    from tests.security.conftest import CUSTOMER_A

    if page == "console":
        ws = _connect(http_server, "/console/ws", world.cookie(TECHNICIAN))
        ws.send(json.dumps({"type": "open", "session": world.session_a}))
        schema, session = CONSOLE, world.session_a
        assert _next_json(ws)["type"] == "capabilities"  # the panel is open
    else:
        ws = _connect(http_server, "/c/ws", world.cookie(CUSTOMER_A))
        schema, session = PHONE, None
    sent = []

    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    @given(message=spoiled(schema, session=world.session_a))
    def spoil(message):
        ws.send(as_text(message))
        sent.append(message)
        reply = _next_json(ws)
        assert reply is not None and reply["reason"] == "bad_message", (message, reply)
        assert ws.connected

    try:
        for raw in REGRESSIONS[:10]:
            ws.send(raw)
            reply = _next_json(ws)
            assert reply is not None and reply["reason"] == "bad_message", (raw, reply)
        ws.send(b"\x00\xffbinary")
        assert _next_json(ws)["reason"] == "bad_message"
        spoil()
        assert ws.connected and _chat_goes_through(ws, session)
    finally:
        ws.close()
    assert tracebacks.records == [], tracebacks.lines()


# --- malformed offers, through to a real sidecar --------------------------------------------

BROKEN_OFFERS = [
    SDP,  # the shape of an offer, but no ICE credentials and no DTLS fingerprint
    SDP.replace("m=video 9", "m=video nine"),
    SDP.replace("a=rtpmap:96 VP8/90000", "a=rtpmap:x VP8/ninety"),
    SDP + "a=fingerprint:sha-256\r\na=ice-ufrag:\r\na=ice-pwd:\r\n",
    SDP + "a=candidate:1 1 udp nope 1.2.3.4 x typ host\r\n",
    SDP + "a=ssrc:notanumber cname:x\r\na=extmap:x/y urn:z\r\n",
]
sdp_lines = st.builds(
    "{}={}".format,
    st.sampled_from("vosctmab"),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
)
sdp_shaped = st.builds(
    lambda lines: "\r\n".join(["v=0", *lines, "m=video 9 UDP/TLS/RTP/SAVPF 96"]) + "\r\n",
    st.lists(sdp_lines, max_size=12),
)


@pytest.fixture
def sidecar(app, tmp_path):
    """A real media sidecar for the app, its log in a file."""
    from lens.signaling.control import MediaControl
    from tests.browser.conftest import Sidecar

    log_path = tmp_path / "sidecar.log"
    with log_path.open("w") as log:
        media = Sidecar()
        media.start(log)
        app.extensions["lens.media"] = MediaControl(media.url, media.secret, timeout=10)
        yield log_path
        media.stop()


def test_malformed_offers_are_bad_messages_with_no_traceback_on_either_side(
    app, world, http_server, sidecar, tracebacks
):
    from tests.security.conftest import CUSTOMER_A

    ws = _connect(http_server, "/c/ws", world.cookie(CUSTOMER_A))
    refs = iter(range(1, 1000))

    def offer(sdp: str) -> dict:
        ref = next(refs)
        ws.send(json.dumps({"type": "offer", "ref": ref, "sdp": sdp}))
        deadline = time.monotonic() + 15
        while (left := deadline - time.monotonic()) > 0:
            reply = _next_json(ws, left)
            if reply is not None and reply.get("ref") == ref:
                return reply
        raise AssertionError(f"no answer to offer {ref}")

    @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
    @given(sdp=sdp_shaped)
    def shaped_junk(sdp):
        reply = offer(sdp)
        assert (reply["type"], reply["reason"]) == ("error", "bad_message"), (sdp, reply)

    try:
        for sdp in BROKEN_OFFERS:
            reply = offer(sdp)
            assert (reply["type"], reply.get("reason")) == ("error", "bad_message"), (sdp, reply)
        shaped_junk()
        assert ws.connected and _chat_goes_through(ws, None)
    finally:
        ws.close()
    assert tracebacks.records == [], tracebacks.lines()
    assert "Traceback" not in sidecar.read_text()
