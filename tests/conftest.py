"""Shared fixtures: an app on a temporary database, clients, technicians, log-in.

The suite runs on a SQLite file per test by default. With DATABASE_URL (PostgreSQL) and
REDIS_URL in the environment it runs every test on them instead (.ci/run does both): one
PostgreSQL database for the run, emptied before each test, and the Redis event bus and
rate-limit storage under a prefix of the run's own.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from flask import Flask
from flask.testing import FlaskClient

from lens.auth.models import Technician
from lens.events import InProcessBus, make_bus
from lens.extensions import db, limiter
from lens.factory import create_app
from tests.webserver import NO_SIDECAR

TOKEN = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|"X-CSRFToken": "([^"]+)"')
PASSWORD = "correct horse battery"

# Read once, before any test's monkeypatch: the servers the whole run uses (or SQLite).
DATABASE_URL = os.environ.get("DATABASE_URL", "")
REDIS_URL = os.environ.get("REDIS_URL", "")
RUN_PREFIX = f"lens-test-{secrets.token_hex(4)}:"  # this run's Redis channels and keys


@pytest.fixture(autouse=True)
def _servers_only_through_fixtures(monkeypatch) -> None:
    """The run's DATABASE_URL/REDIS_URL reach a test through the fixtures below, never
    through the environment of an app or a process the test starts itself."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)


def on_postgres() -> bool:
    return DATABASE_URL.startswith("postgresql")


class PostgresDatabases:
    """Databases of this run on the DATABASE_URL server: made here, dropped at the end."""

    def __init__(self, url: str) -> None:
        from sqlalchemy import create_engine
        from sqlalchemy.engine import make_url

        self._url = make_url(url)
        self._admin = create_engine(self._url, isolation_level="AUTOCOMMIT")
        self._made: list[str] = []

    def create(self) -> str:
        from sqlalchemy import text

        name = f"{os.environ.get('LENS_TEST_DB_PREFIX', 'lens_test')}_{secrets.token_hex(4)}"
        with self._admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        self._made.append(name)
        return self._url.set(database=name).render_as_string(hide_password=False)

    def drop(self, url: str) -> None:
        from sqlalchemy import text
        from sqlalchemy.engine import make_url

        name = make_url(url).database
        with self._admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self._made.remove(name)

    def drop_all(self) -> None:
        for name in list(self._made):
            self.drop(self._url.set(database=name).render_as_string(hide_password=False))
        self._admin.dispose()


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[PostgresDatabases | None]:
    if not on_postgres():
        yield None
        return
    databases = PostgresDatabases(DATABASE_URL)
    yield databases
    databases.drop_all()


@pytest.fixture(scope="session")
def shared_postgres(postgres_databases) -> Iterator[str]:
    """The run's PostgreSQL database with every table (made once)."""
    from sqlalchemy import create_engine

    import lens.auth.models  # noqa: F401 - every model registered on the metadata
    import lens.captures.models  # noqa: F401
    import lens.chat.models  # noqa: F401
    import lens.invitations.models  # noqa: F401
    import lens.sessions.models  # noqa: F401
    from lens.extensions import Base

    url = postgres_databases.create()
    engine = create_engine(url)
    Base.metadata.create_all(engine)
    engine.dispose()
    return url


def empty_postgres(url: str) -> None:
    """Cut off what earlier tests left connected (daemon threads) and empty every table."""
    from sqlalchemy import create_engine, text

    from lens.extensions import Base

    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.connect() as connection:
        connection.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture
def database_url(request, tmp_path) -> str:
    """This test's database: an emptied PostgreSQL one, or a new SQLite file."""
    if not on_postgres():
        return f"sqlite:///{tmp_path / 'lens.db'}"
    url = request.getfixturevalue("shared_postgres")
    empty_postgres(url)
    return url


def backend_config() -> dict:
    """The event bus and rate-limit storage of this run: Redis under the run's prefix, or memory."""
    if not REDIS_URL:
        return {"LENS_EVENT_BUS": InProcessBus(), "RATELIMIT_STORAGE_URI": "memory://"}
    return {
        "LENS_EVENT_BUS": make_bus(REDIS_URL, f"{RUN_PREFIX}{secrets.token_hex(3)}:"),
        "RATELIMIT_STORAGE_URI": REDIS_URL,
        "RATELIMIT_KEY_PREFIX": RUN_PREFIX,
        "REDIS_URL": REDIS_URL,
    }


def close_backends(app: Flask) -> None:
    bus = app.extensions["lens.events"]
    if hasattr(bus, "close"):
        bus.close()


@pytest.fixture
def app(tmp_path, monkeypatch, database_url) -> Iterator[Flask]:
    monkeypatch.setenv("LENS_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    app = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": database_url,
            "LENS_PASSWORD_METHOD": "pbkdf2:sha256:1",
            **backend_config(),
            "SERVER_NAME": None,
            "LENS_MEDIA_URL": NO_SIDECAR,
        }
    )
    with app.app_context():
        db.create_all()
        limiter.reset()
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    close_backends(app)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask):
    return app.test_cli_runner()


def csrf_from(html: str) -> str:
    """The CSRF token a page carries (form field or HTMX header)."""
    match = TOKEN.search(html)
    assert match, "page has no CSRF token"
    return match.group(1) or match.group(2)


def add_technician(app: Flask, name: str, email: str, **fields) -> int:
    with app.app_context():
        technician = Technician(name=name, email=email, **fields)
        technician.set_password(PASSWORD, "pbkdf2:sha256:1")
        db.session.add(technician)
        db.session.commit()
        return technician.id


# --- Administrators: two-step verification is required of them (lens.auth.views) ------------

# the authenticator secret of every test administrator made by add_admin
ADMIN_TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def add_admin(app: Flask, name: str = "Ada Admin", email: str = "ada@example.com") -> int:
    """An administrator with two-step verification on (secret ADMIN_TOTP_SECRET)."""
    from lens.auth.models import ROLE_ADMIN
    from lens.auth.totp import seal

    sealed = seal(ADMIN_TOTP_SECRET, app.config["SECRET_KEY"])
    return add_technician(app, name, email, role=ROLE_ADMIN, totp_secret=sealed)


def totp_code(app: Flask, technician_id: int, secret: str = ADMIN_TOTP_SECRET) -> str:
    """A code the server takes now: of the current time step, or the next unused one.

    (A code is good once, so a second log-in in the same 30 s uses the next step's code,
    which the server accepts for clock drift; a third waits for the clock.)"""
    import pyotp

    totp = pyotp.TOTP(secret)
    with app.app_context():
        used = db.session.get(Technician, technician_id).totp_last_step
    while True:
        now = totp.timecode(datetime.now(UTC))
        step = now if used is None else max(now, used + 1)
        if step <= now + 1:
            return totp.generate_otp(step)
        time.sleep(0.2)  # both steps the drift allows are used: wait for the clock


class Console:
    """A logged-in technician's browser, through the test client."""

    def __init__(self, client: FlaskClient, prefix: str = "/console") -> None:
        self.client = client
        self.prefix = prefix
        self.token = ""

    def login(self, email: str, password: str = PASSWORD, code: Callable[[], str] | None = None):
        """Log in; with `code` (e.g. totp_code), answer the second step's question too."""
        page = self.client.get("/login")
        response = self.client.post(
            "/login",
            data={"email": email, "password": password, "csrf_token": csrf_from(page.text)},
        )
        if code is not None and response.location == "/login/code":
            step = self.client.get("/login/code")
            response = self.client.post(
                "/login/code", data={"code": code(), "csrf_token": csrf_from(step.text)}
            )
        if response.status_code == 302 and response.location != "/login/code":
            self.token = csrf_from(self.client.get(self.prefix + "/").text)
        return response

    def post(self, path: str, data: dict | None = None, **kwargs):
        headers = {"HX-Request": "true", "X-CSRFToken": self.token}
        return self.client.post(self.prefix + path, data=data or {}, headers=headers, **kwargs)

    def create_session(self, name: str = "Jane Customer", **fields) -> dict:
        response = self.post("/sessions", {"name": name, **fields})
        assert response.status_code == 201, response.text
        pin = re.search(r'data-pin="(\d{6})"', response.text).group(1)
        return {"pin": pin, "response": response}


class Admin:
    """A logged-in administrator's browser."""

    def __init__(self, client: FlaskClient, app: Flask, admin_id: int) -> None:
        self.client = client
        self.app = app
        self.admin_id = admin_id
        self.token = ""

    def login(self, email: str = "ada@example.com") -> Admin:
        con = Console(self.client, prefix="/console")
        response = con.login(email, code=lambda: totp_code(self.app, self.admin_id))
        assert response.status_code == 302, response.text
        self.token = csrf_from(self.client.get("/admin/technicians").text)
        return self

    def get(self, path: str, **kwargs):
        return self.client.get("/admin" + path, **kwargs)

    def post(self, path: str, data: dict | None = None, **kwargs):
        return self.client.post(
            "/admin" + path, data={"csrf_token": self.token, **(data or {})}, **kwargs
        )


@pytest.fixture
def admin_id(app: Flask) -> int:
    return add_admin(app)


@pytest.fixture
def admin(app: Flask, admin_id: int) -> Admin:
    return Admin(app.test_client(), app, admin_id).login()


@pytest.fixture
def technician(app: Flask) -> int:
    return add_technician(app, "Tess Technician", "tess@example.com")


@pytest.fixture
def console(client: FlaskClient, technician: int) -> Console:
    con = Console(client)
    assert con.login("tess@example.com").status_code == 302
    return con


# --- Web tests: customers' phones, a second technician, a real server -----------------


class Customer:
    """A customer's phone, through its own test client (its own cookie jar and address)."""

    def __init__(self, client: FlaskClient, remote_addr: str = "198.51.100.7") -> None:
        self.client = client
        self.client.environ_base["REMOTE_ADDR"] = remote_addr
        self._token = ""

    @property
    def token(self) -> str:
        if not self._token:
            self._token = csrf_from(self.client.get("/").text)
        return self._token

    def join(self, pin: str):
        return self.client.post("/", data={"pin": pin, "csrf_token": self.token})

    def open_link(self, join_token: str):
        return self.client.get(f"/j/{join_token}")

    def accept(self):
        headers = {"HX-Request": "true", "X-CSRFToken": self.token}
        return self.client.post("/c/accept", headers=headers)


@pytest.fixture
def make_customer(app: Flask):
    """Build customers, each on a new phone (new cookie jar)."""

    def make(remote_addr: str = "198.51.100.7") -> Customer:
        return Customer(app.test_client(), remote_addr)

    return make


@pytest.fixture
def customer(make_customer) -> Customer:
    return make_customer()


@pytest.fixture
def other_console(app: Flask) -> Console:
    """A second technician, logged in on a browser of their own."""
    add_technician(app, "Otto Other", "otto@example.com")
    con = Console(app.test_client())
    assert con.login("otto@example.com").status_code == 302
    return con


class SubscriptionWatch:
    """Lets a test wait until a WebSocket handler has subscribed to a bus topic."""

    def __init__(self, bus) -> None:
        self._condition = threading.Condition()
        self._topics: list[str] = []
        subscribe = bus.subscribe

        def watched(topics):
            topics = list(topics)
            subscription = subscribe(topics)
            with self._condition:
                self._topics.extend(topics)
                self._condition.notify_all()
            return subscription

        bus.subscribe = watched

    def wait_for(self, topic: str, timeout: float = 5.0, count: int = 1) -> bool:
        """Whether `count` subscriptions to topic (e.g. both sides' sockets) came in time."""
        with self._condition:
            return self._condition.wait_for(lambda: self._topics.count(topic) >= count, timeout)


@pytest.fixture
def subscriptions(app: Flask) -> SubscriptionWatch:
    return SubscriptionWatch(app.extensions["lens.events"])


@pytest.fixture
def http_server(app: Flask) -> Iterator[str]:
    """The app on a free loopback port, threaded (each WebSocket holds a thread)."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=5)


@pytest.fixture
def blank_app(tmp_path, monkeypatch, postgres_databases) -> Iterator[Flask]:
    """An app on an empty database: no tables until `flask lens init` migrates it."""
    monkeypatch.setenv("LENS_INSTANCE_PATH", str(tmp_path / "blank-instance"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    if postgres_databases is not None:
        url = postgres_databases.create()
    else:
        database = tmp_path / "blank.db"
        database.touch()
        url = f"sqlite:///{database}"
    app = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": url,
            "LENS_PASSWORD_METHOD": "pbkdf2:sha256:1",
            **backend_config(),
            "LENS_MEDIA_URL": NO_SIDECAR,
        }
    )
    with app.app_context():
        limiter.reset()
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    close_backends(app)
    if postgres_databases is not None:
        postgres_databases.drop(url)


@pytest.fixture
def db_session(app: Flask):
    """The database session inside an app context, for tests that call the domain."""
    with app.app_context():
        yield db.session


@pytest.fixture
def ws_connect(http_server: str):
    """Open WebSockets to the live server as a browser with the given cookies; closed after."""
    from simple_websocket import Client

    opened = []

    def connect(path: str, cookies) -> Client:
        cookie = "; ".join(f"{c.name}={c.value}" for c in cookies)
        ws = Client.connect(f"ws://{http_server}{path}", headers={"Cookie": cookie})
        opened.append(ws)
        return ws

    yield connect
    for ws in opened:
        if ws.connected:
            ws.close()


# Real browsers and real WebRTC peers measure frame rates and waits on a 2-core machine that
# may be busy: such a test that fails is run again, up to twice (pytest-rerunfailures). A
# feature that is missing fails all three times.
TIMING_MARKERS = ("browser", "media")


def pytest_collection_modifyitems(items) -> None:
    """Run the Playwright tests last: its sync API keeps an event loop running in this thread
    for the rest of the session, which breaks asyncio.run() in the aiortc tests after it."""
    items.sort(key=lambda item: "browser" in getattr(item, "fixturenames", ()))
    for item in items:
        if any(item.get_closest_marker(name) for name in TIMING_MARKERS):
            item.add_marker(pytest.mark.flaky(reruns=2, reruns_delay=2))


# what made a test run again, shown at the end of the run (the plugin prints only the name)
RERUN_FAILURES: list[tuple[str, str]] = []
RERUN_LINES = 25  # the last lines of each rerun's failure


def pytest_runtest_logreport(report) -> None:
    if report.outcome == "rerun":
        RERUN_FAILURES.append((f"{report.nodeid} ({report.when})", report.longreprtext))


def pytest_terminal_summary(terminalreporter) -> None:
    if not RERUN_FAILURES:
        return
    terminalreporter.section("why tests were run again")
    for nodeid, text in RERUN_FAILURES:
        terminalreporter.write_line(nodeid)
        for line in text.splitlines()[-RERUN_LINES:]:
            terminalreporter.write_line("    " + line)


class PageClient:
    """A page's one socket as the control tests use it: JSON in and out, pushes set aside.

    A console's client opens the session's panel first and adds the session to every JSON
    object it sends, as console-tools.js does; raw junk is sent as it is.
    """

    def __init__(self, ws, session_id: int | None) -> None:
        self.ws = ws
        self.session_id = session_id
        self.pushes: list[str] = []  # the HTML that came in between JSON messages

    @property
    def connected(self) -> bool:
        return self.ws.connected

    def send(self, raw) -> None:
        if self.session_id is not None and isinstance(raw, str):
            try:
                message = json.loads(raw)
            except ValueError:
                message = None
            if isinstance(message, dict) and "session" not in message:
                raw = json.dumps({**message, "session": self.session_id})
        self.ws.send(raw)

    def receive(self, timeout: float | None = None):
        """The next JSON message (as its text), or None when `timeout` passes first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            message = self.ws.receive(timeout=left)
            if message is None or not message.startswith("<"):
                return message
            self.pushes.append(message)

    def receive_push(self, needle: str, timeout: float = 5.0) -> str | None:
        """The first HTML push (set aside or new) that contains needle."""
        deadline = time.monotonic() + timeout
        while True:
            for push in self.pushes:
                if needle in push:
                    return push
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            message = self.ws.receive(timeout=left)
            if message is None:
                return None
            if message.startswith("<"):
                self.pushes.append(message)

    def close(self) -> None:
        self.ws.close()


@pytest.fixture
def controls_connect(ws_connect):
    """Open a page's socket: the phone's (/c/ws), or a console's with a session's panel open."""

    def connect(path: str, cookies, session: int | None = None) -> PageClient:
        client = PageClient(ws_connect(path, cookies), session)
        if session is not None:
            client.ws.send(json.dumps({"type": "open", "session": session}))
            # the panel's head comes back once the session's channel is subscribed
            assert client.receive_push(f'id="session-head-{session}"'), "panel never opened"
            # then what the phone last reported of its camera (the Flashlight/Switch buttons)
            reported = client.receive(timeout=5)
            assert reported and '"capabilities"' in reported, reported
        return client

    return connect
