"""Chat over real control sockets: both ways, stored, escaped, limited, junk survived."""

from __future__ import annotations

import json
import re
import time

import pytest

from lens.chat.text import chat_presets, linkify
from lens.controls.messages import MAX_CHAT
from tests.conftest import add_technician
from tests.tools.conftest import chat_texts, new_session, snapshot
from tests.web.test_live import BOUND, Browser, receive_until


@pytest.fixture
def chat(app, technician, http_server, controls_connect, subscriptions):
    """A session with both control sockets open: (session id, technician's, phone's, tech)."""
    tech = Browser(http_server).log_in("tess@example.com")
    session_id = new_session(app, tech)
    phone_ws = controls_connect("/c/ws", tech.phone.http.cookies)
    assert subscriptions.wait_for(f"controls:{session_id}")
    tech_ws = controls_connect("/console/ws", tech.http.cookies, session=session_id)
    assert subscriptions.wait_for(f"controls:{session_id}", count=2)
    return session_id, tech_ws, phone_ws, tech


def next_of(ws, kind: str) -> dict:
    raw = receive_until(ws, f'"type": "{kind}"', time.monotonic() + BOUND)
    assert raw is not None, f"no {kind} message arrived"
    return json.loads(raw)


def say(ws, text) -> None:
    ws.send(json.dumps({"type": "chat", "text": text}))


def test_chat_both_ways_reaches_both_sides_and_is_stored(app, chat):
    session_id, tech_ws, phone_ws, _ = chat
    say(tech_ws, "  Hello, can you show me the router?  ")
    at_phone, echoed = next_of(phone_ws, "chat"), next_of(tech_ws, "chat")
    # each side gets the line rendered for its page; the rest is the same message
    assert {k: v for k, v in at_phone.items() if k != "html"} == {
        k: v for k, v in echoed.items() if k not in ("html", "session")
    }
    assert echoed["session"] == session_id
    assert at_phone["text"] == "Hello, can you show me the router?"  # stripped
    assert (at_phone["from"], at_phone["author"], at_phone["name"]) == (
        "technician",
        "technician",
        "Tess Technician",
    )

    say(phone_ws, "Sure,\nhere it is")
    at_tech = next_of(tech_ws, "chat")
    assert (at_tech["from"], at_tech["text"]) == ("customer", "Sure,\nhere it is")
    assert next_of(phone_ws, "chat")["id"] == at_tech["id"]  # the sender's own echo

    assert chat_texts(app, session_id) == [
        ("technician", "Hello, can you show me the router?"),
        ("customer", "Sure,\nhere it is"),
    ]


def test_script_is_stored_as_text_and_shown_escaped(app, chat):
    session_id, tech_ws, phone_ws, tech = chat
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    say(phone_ws, evil)
    assert next_of(tech_ws, "chat")["text"] == evil  # JSON text; the page sets textContent
    assert chat_texts(app, session_id) == [("customer", evil)]

    panel = tech.get(f"/console/sessions/{session_id}").text
    phone_page = tech.phone.get("/c").text
    for page in (panel, phone_page):
        assert "<script>alert" not in page
        assert "<img src=x" not in page
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page


@pytest.mark.parametrize("length", [MAX_CHAT + 1, 5000])
def test_too_long_text_is_refused_with_a_message_and_the_chat_goes_on(app, chat, length):
    session_id, tech_ws, phone_ws, _ = chat
    before = snapshot(app, session_id)
    say(phone_ws, "x" * length)
    error = json.loads(phone_ws.receive(timeout=BOUND))
    assert (error["type"], error["reason"]) == ("error", "too_long")
    assert error["message"] == "The message is too long: at most 1000 characters."
    assert snapshot(app, session_id) == before

    say(phone_ws, "x" * MAX_CHAT)  # exactly the limit passes
    assert len(next_of(tech_ws, "chat")["text"]) == MAX_CHAT


@pytest.mark.parametrize(
    "junk",
    [
        b"\x00\xff\xfe binary junk",
        "not json at all",
        json.dumps({"type": "chat"}),
        json.dumps({"type": "chat", "text": 42}),
        json.dumps({"type": "chat", "text": ["a"]}),
        json.dumps({"type": "chat", "text": "bell \x07 and escape \x1b[31m"}),
        json.dumps({"type": "chat", "text": "   \n  "}),
        "y" * 20000,
    ],
)
def test_junk_is_answered_with_an_error_and_the_session_goes_on(app, chat, junk):
    session_id, tech_ws, phone_ws, _ = chat
    before = snapshot(app, session_id)
    phone_ws.send(junk)
    error = json.loads(phone_ws.receive(timeout=BOUND))
    assert error["type"] == "error" and error["reason"] in ("bad_message", "empty")
    assert error["message"]
    assert snapshot(app, session_id) == before

    say(phone_ws, "still here")
    assert next_of(tech_ws, "chat")["text"] == "still here"


def test_the_panel_and_the_phone_show_the_history(app, chat):
    session_id, tech_ws, phone_ws, tech = chat
    say(tech_ws, "See https://example.com/help?a=1&b=2.")
    next_of(phone_ws, "chat")
    say(phone_ws, "Thanks")
    # the console gets its own echo first, then the phone's line: wait for the latter
    assert receive_until(tech_ws, '"Thanks"', time.monotonic() + BOUND) is not None

    panel = tech.get(f"/console/sessions/{session_id}").text
    assert panel.index("See ") < panel.index("Thanks")
    link = (
        '<a href="https://example.com/help?a=1&amp;b=2" target="_blank" '
        'rel="noopener noreferrer">https://example.com/help?a=1&amp;b=2</a>.'
    )
    assert link in panel
    assert link in tech.phone.get("/c").text
    log = tech.get(f"/console/sessions/{session_id}").text
    # the chat is kept in its history; it writes no session-log lines (each would be pushed)
    assert "Chat message from" not in log


def test_an_empty_chat_log_is_empty_markup_so_that_it_is_not_shown(app, chat):
    session_id, _, _, tech = chat
    empty_log = re.compile(
        r'<ol id="[\w-]*chat-log[\w-]*" class="chat-log"[^>]*></ol>'
    )  # .chat-log:empty hides it
    assert empty_log.search(tech.get(f"/console/sessions/{session_id}").text)
    assert empty_log.search(tech.phone.get("/c").text)


def test_presets_are_offered_for_one_click(app, chat):
    session_id, _, _, tech = chat
    panel = tech.get(f"/console/sessions/{session_id}").text
    assert 'data-chat-preset="Please point your camera at the problem."' in panel
    app.config["LENS_CHAT_PRESETS"] = ["Restart the router", "https://example.com/manual"]
    panel = tech.get(f"/console/sessions/{session_id}").text
    assert 'data-chat-preset="Restart the router"' in panel
    assert 'data-chat-preset="https://example.com/manual"' in panel
    assert "Please point your camera" not in panel


def test_presets_come_from_a_pipe_separated_setting(app, tmp_path):
    from lens.config import load_settings

    settings = load_settings(
        str(tmp_path), {"LENS_CHAT_PRESETS": " One | Two|  |https://x.example "}
    )
    assert settings["LENS_CHAT_PRESETS"] == ["One", "Two", "https://x.example"]
    assert chat_presets(settings) == ["One", "Two", "https://x.example"]
    with app.test_request_context():
        assert len(chat_presets({"LENS_CHAT_PRESETS": []})) == 5


@pytest.mark.parametrize(
    ("text", "html"),
    [
        ("plain <b>", "plain &lt;b&gt;"),
        ("javascript:alert(1) http://", "javascript:alert(1) http://"),
        (
            "go to http://a.example/x?q=<i>",
            'go to <a href="http://a.example/x?q=" target="_blank" rel="noopener noreferrer">'
            "http://a.example/x?q=</a>&lt;i&gt;",
        ),
        (
            'https://a.example/"onmouseover=x',
            '<a href="https://a.example/" target="_blank" rel="noopener noreferrer">'
            "https://a.example/</a>&#34;onmouseover=x",
        ),
    ],
)
def test_links_are_only_http_and_never_break_out(text, html):
    assert str(linkify(text)) == html


def test_a_transferred_sessions_old_technician_can_no_longer_chat(app, chat, media, ws_connect):
    session_id, tech_ws, phone_ws, tech = chat
    otto = add_technician(app, "Otto Other", "otto@example.com")
    response = tech.post(f"/console/sessions/{session_id}/transfer", {"technician": otto})
    assert response.status_code == 200, response.text
    before = snapshot(app, session_id)
    say(tech_ws, "I still have the socket")
    assert json.loads(tech_ws.receive(timeout=BOUND))["reason"] == "not_allowed"
    assert snapshot(app, session_id) == before
    say(phone_ws, "hello new technician")  # the phone's chat goes on, now with Otto
    assert next_of(phone_ws, "chat")["text"] == "hello new technician"
