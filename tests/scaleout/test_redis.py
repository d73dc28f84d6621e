"""Two web processes on one PostgreSQL database and Redis pub/sub: a change made through one
reaches a console connected to the other."""

from __future__ import annotations

import threading
import time

import pytest
import requests
from simple_websocket import Client
from werkzeug.serving import make_server

from lens.events import RedisBus
from tests.conftest import PASSWORD, csrf_from
from tests.scaleout.conftest import dispose, make_app

pytestmark = pytest.mark.scaleout


def serve(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, f"127.0.0.1:{server.server_port}"


def wait_for_subscriber(url: str, prefix: str) -> None:
    """Until the console's socket has subscribed on Redis (its handler runs in a thread)."""
    import redis

    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 5
    while not client.pubsub_channels(prefix + "*"):
        assert time.monotonic() < deadline, "the console never subscribed"
        time.sleep(0.02)


def test_redis_bus_carries_a_message_between_two_buses(redis_url):
    sender, receiver = RedisBus(redis_url), RedisBus(redis_url)
    subscription = receiver.subscribe(["technician:42"])
    try:
        deadline = time.monotonic() + 5
        got = None
        while got is None and time.monotonic() < deadline:
            sender.publish("technician:42", {"type": "session", "session_id": 7})
            got = subscription.get(timeout=0.2)
        assert got == {"type": "session", "session_id": 7}
    finally:
        subscription.close()


def test_a_join_through_one_process_updates_a_console_on_the_other(
    tmp_path, monkeypatch, postgres_url, redis_url
):
    first = make_app(tmp_path / "a", monkeypatch, postgres_url, redis_url)
    second = make_app(tmp_path / "b", monkeypatch, postgres_url, redis_url)
    assert isinstance(first.extensions["lens.events"], RedisBus)
    result = first.test_cli_runner().invoke(
        args=["lens", "init"]
    )  # migrations and the first admin, once for both processes
    assert result.exit_code == 0, result.output
    first.test_cli_runner().invoke(
        args=["lens", "create-technician", "--name", "Tess", "--email", "tess@example.com",
              "--password", PASSWORD]
    )  # fmt: skip
    server_a, host_a = serve(first)
    server_b, host_b = serve(second)
    try:
        technician = requests.Session()
        page = technician.get(f"http://{host_a}/login")
        technician.post(
            f"http://{host_a}/login",
            data={"email": "tess@example.com", "password": PASSWORD,
                  "csrf_token": csrf_from(page.text)},
        )  # fmt: skip
        token = csrf_from(technician.get(f"http://{host_a}/console/").text)
        created = technician.post(
            f"http://{host_a}/console/sessions",
            data={"name": "Rita Redis", "channel": "pin"},
            headers={"HX-Request": "true", "X-CSRFToken": token},
        )
        assert created.status_code == 201, created.text
        pin = created.text.split('data-pin="')[1][:6]
        cookie = "; ".join(f"{c.name}={c.value}" for c in technician.cookies)
        ws = Client.connect(f"ws://{host_a}/console/ws", headers={"Cookie": cookie})
        try:
            wait_for_subscriber(redis_url, "lens:technician:")
            phone = requests.Session()  # the phone reaches the other web process
            start = phone.get(f"http://{host_b}/")
            joined = phone.post(
                f"http://{host_b}/", data={"pin": pin, "csrf_token": csrf_from(start.text)}
            )
            assert joined.url.endswith("/c")
            accepted = phone.post(
                f"http://{host_b}/c/accept",
                headers={"HX-Request": "true", "X-CSRFToken": csrf_from(start.text)},
            )
            assert accepted.status_code == 200
            deadline = time.monotonic() + 5
            seen = ""
            while "Customer connected" not in seen and time.monotonic() < deadline:
                seen = ws.receive(timeout=max(0.1, deadline - time.monotonic())) or ""
            assert "Customer connected" in seen and "Rita Redis" in seen
        finally:
            ws.close()
    finally:
        server_a.shutdown()
        server_b.shutdown()
        dispose(first)
        dispose(second)
