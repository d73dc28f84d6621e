"""A busy database: writes wait for it within a bound, and nothing acknowledged is lost."""

from __future__ import annotations

import json
import sqlite3
import threading
import time

from simple_websocket import Client

from tests.conftest import PageClient
from tests.webtier.conftest import Visitor


def hold_the_write_lock(database, seconds: float) -> threading.Thread:
    """Another writer holds SQLite's one write lock for `seconds` (started when this returns)."""
    locked = threading.Event()

    def hold() -> None:
        connection = sqlite3.connect(database, timeout=30, isolation_level=None)
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("UPDATE technician SET name = name")
        locked.set()
        time.sleep(seconds)  # the other writer's long transaction
        connection.execute("COMMIT")
        connection.close()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert locked.wait(10)
    return thread


def open_console(server, tech: Visitor, session_id: int) -> PageClient:
    ws = Client.connect(f"ws://{server.host}/console/ws", headers={"Cookie": tech.cookie})
    client = PageClient(ws, session_id)
    client.ws.send(json.dumps({"type": "open", "session": session_id}))
    assert client.receive_push(f'id="session-head-{session_id}"', timeout=10)
    # then what the phone last reported of its camera (issue 15: sent on every "open")
    reported = client.receive(timeout=10)
    assert reported and '"capabilities"' in reported, reported
    return client


def stored_chat(server) -> list[str]:
    connection = sqlite3.connect(server.instance / "lens.db")
    try:
        return [row[0] for row in connection.execute("SELECT text FROM chat_message ORDER BY id")]
    finally:
        connection.close()


def test_an_accept_and_a_chat_during_a_10_s_lock_both_succeed_after_it(make_site):
    server = make_site()  # LENS_DB_BUSY_SECONDS defaults to 15
    tech = Visitor(server).log_in()
    first = Visitor(server).join(tech.create_session("Jane Chat"))
    assert first.post("/c/accept").status_code == 200
    session_id = int(tech.get("/console/").text.split('data-session="')[1].split('"')[0])
    assert tech.post(f"/console/sessions/{session_id}/start").status_code == 200
    console = open_console(server, tech, session_id)
    second = Visitor(server).join(tech.create_session("Jane Accept"))

    began = time.monotonic()
    holder = hold_the_write_lock(server.instance / "lens.db", 10)
    answers = {}
    accepting = threading.Thread(target=lambda: answers.update(accept=second.post("/c/accept")))
    accepting.start()
    console.send(json.dumps({"type": "chat", "text": "sent while the database is busy"}))
    echo = json.loads(console.receive(timeout=30))
    accepting.join(30)
    holder.join()

    assert echo["type"] == "chat", echo  # shown as sent only now, after the lock
    assert time.monotonic() - began >= 9  # it waited for the lock instead of failing
    assert answers["accept"].status_code == 200, answers["accept"].text
    assert "Waiting for your technician" in answers["accept"].text
    assert "sent while the database is busy" in stored_chat(server)
    assert healthz_ok(server)


def test_a_lock_longer_than_the_wait_gets_a_clear_message_and_nothing_half_done(make_site):
    server = make_site(LENS_DB_BUSY_SECONDS="2")
    tech = Visitor(server).log_in()
    first = Visitor(server).join(tech.create_session("Jane Chat"))
    assert first.post("/c/accept").status_code == 200
    session_id = int(tech.get("/console/").text.split('data-session="')[1].split('"')[0])
    assert tech.post(f"/console/sessions/{session_id}/start").status_code == 200
    console = open_console(server, tech, session_id)
    second = Visitor(server).join(tech.create_session("Jane Accept"))

    holder = hold_the_write_lock(server.instance / "lens.db", 6)
    refused = second.post("/c/accept")
    console.send(json.dumps({"type": "chat", "text": "not stored"}))
    error = json.loads(console.receive(timeout=30))
    holder.join()

    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "5"
    assert "The server is busy. Nothing was saved" in refused.text
    assert (error["type"], error["reason"]) == ("error", "busy")
    assert "not sent" in error["message"]
    assert "not stored" not in stored_chat(server)
    # after the lock both go through, once each
    assert second.post("/c/accept").status_code == 200
    console.send(json.dumps({"type": "chat", "text": "stored now"}))
    assert json.loads(console.receive(timeout=10))["type"] == "chat"
    assert stored_chat(server).count("stored now") == 1


def healthz_ok(server) -> bool:
    return Visitor(server).get("/healthz").status_code == 200
