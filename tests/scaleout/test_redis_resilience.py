"""Redis as a real dependency: a dropped pub/sub connection, and Redis down."""

from __future__ import annotations

import time

import pytest

from lens.events import RedisBus
from lens.extensions import db, limiter
from lens.factory import create_app
from tests.conftest import PASSWORD, add_technician, csrf_from
from tests.web.test_live import Browser, receive_until, session_id_of

pytestmark = pytest.mark.scaleout


def wait_until(condition, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} not met within {timeout} s"
        time.sleep(0.02)


def kill_pubsub_clients(own_redis) -> int:
    """`CLIENT KILL TYPE pubsub`: Redis drops every subscriber connection."""
    return own_redis.client().execute_command("CLIENT", "KILL", "TYPE", "pubsub")


def test_every_listener_survives_a_killed_pubsub_connection(own_redis):
    bus, sender = RedisBus(own_redis.url), RedisBus(own_redis.url)
    try:
        console = bus.subscribe(["technician:1"])
        phone = bus.subscribe(["session:9"])
        sender.publish("technician:1", {"type": "session", "session_id": 9})
        assert console.get(timeout=5) == {"type": "session", "session_id": 9}

        assert kill_pubsub_clients(own_redis) >= 1
        wait_until(lambda: bus.reconnects >= 1, what="the bus reconnected")
        # each listener is told it may have missed messages, then hears the new ones
        assert console.get(timeout=5) == {"type": "resync"}
        assert phone.get(timeout=5) == {"type": "resync"}
        sender.publish("technician:1", {"type": "session", "session_id": 10})
        sender.publish("session:9", {"type": "session", "session_id": 9})
        assert console.get(timeout=5) == {"type": "session", "session_id": 10}
        assert phone.get(timeout=5) == {"type": "session", "session_id": 9}
        channels = {c.decode() for c in own_redis.client().pubsub_channels("lens:*")}
        assert channels == {"lens:technician:1", "lens:session:9"}
    finally:
        bus.close()
        sender.close()


def test_the_console_socket_keeps_receiving_after_the_connection_is_killed(
    app, technician, http_server, ws_connect, own_redis
):
    bus = RedisBus(own_redis.url, prefix="lens-kill:")
    app.extensions["lens.events"] = bus
    try:
        tech = Browser(http_server).log_in("tess@example.com")
        pin = tech.create_session("Kim Killed")
        session_id = session_id_of(app, pin)
        ws = ws_connect("/console/ws", tech.http.cookies)
        wait_until(lambda: own_redis.client().pubsub_channels(f"lens-kill:technician:{technician}"))
        assert receive_until(ws, "session-rows", time.monotonic() + 5)

        assert kill_pubsub_clients(own_redis) >= 1
        wait_until(lambda: bus.reconnects >= 1, what="the bus reconnected")
        assert receive_until(ws, "session-rows", time.monotonic() + 5), "no resync push"

        phone = Browser(http_server)  # phone → console after the kill: still arrives
        phone.join(pin)
        assert phone.post("/c/accept").status_code == 200
        message = receive_until(ws, "Customer connected", time.monotonic() + 5)
        assert message is not None and f"session-row-{session_id}" in message
    finally:
        bus.close()


@pytest.fixture
def app_on_own_redis(tmp_path, monkeypatch, database_url, own_redis):
    monkeypatch.setenv("LENS_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    app = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": database_url,
            "LENS_PASSWORD_METHOD": "pbkdf2:sha256:1",
            "REDIS_URL": own_redis.url,
            "LENS_EVENT_BUS": RedisBus(own_redis.url),
            "RATELIMIT_STORAGE_URI": own_redis.url,
            "SERVER_NAME": None,
        }
    )
    with app.app_context():
        db.create_all()
        limiter.reset()
    add_technician(app, "Tess Technician", "tess@example.com")
    yield app
    app.extensions["lens.events"].close()
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def log_in(client):
    token = csrf_from(client.get("/login").text)
    return client.post(
        "/login", data={"email": "tess@example.com", "password": PASSWORD, "csrf_token": token}
    )


def test_redis_down_answers_503_with_a_message_and_healthz_names_it(app_on_own_redis, own_redis):
    client = app_on_own_redis.test_client()
    assert log_in(client).status_code == 302
    phone = app_on_own_redis.test_client()
    token = csrf_from(phone.get("/").text)

    own_redis.stop()
    refused = log_in(app_on_own_redis.test_client())
    assert refused.status_code == 503
    assert "cannot reach its message service (Redis)" in refused.text
    assert refused.headers["Retry-After"]
    pin = phone.post("/", data={"pin": "123456", "csrf_token": token})
    assert pin.status_code == 503 and "Redis" in pin.text
    health = client.get("/healthz")
    assert health.status_code == 503
    assert health.json["redis"].startswith("down")
    assert health.json["database"] == "ok"
    assert "redis" in health.json["down"]

    own_redis.start()  # back: the same requests work again
    wait_until(lambda: app_on_own_redis.extensions["lens.events"].connected, what="reconnect")
    assert log_in(app_on_own_redis.test_client()).status_code == 302
    assert client.get("/healthz").json["redis"] == "ok"


def test_healthz_names_the_database_when_it_is_down(app):
    from sqlalchemy import create_engine

    with app.app_context():  # the app's engine now points at a server that is not there
        db.engine.dispose()
        app.extensions["sqlalchemy"]._app_engines[app][None] = create_engine(
            "postgresql+psycopg://nobody@127.0.0.1:1/none", connect_args={"connect_timeout": 2}
        )
    health = app.test_client().get("/healthz")
    assert health.status_code == 503
    assert health.json["database"].startswith("down")
    assert "database" in health.json["down"]


def test_healthz_says_when_no_media_sidecar_answers(app):
    import socket

    from lens.sidecars import MediaRouter, StaticRegistry

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        nobody = f"http://127.0.0.1:{probe.getsockname()[1]}"
    app.extensions["lens.media"] = MediaRouter(StaticRegistry(nobody), "secret")
    health = app.test_client().get("/healthz")
    assert health.status_code == 200  # the pages still work; video does not
    assert health.json["status"] == "degraded"
    assert health.json["down"] == ["sidecars"]
    assert health.json["sidecars"].startswith("down")
    assert health.json["database"] == "ok"
