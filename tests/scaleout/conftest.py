"""Real PostgreSQL and Redis for the scale-out path (the local servers of this machine kind)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from lens.extensions import db, limiter
from lens.factory import create_app

POSTGRES = os.environ.get(
    "LENS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS = os.environ.get("LENS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _reachable_postgres() -> bool:
    try:
        with create_engine(POSTGRES).connect() as connection:
            connection.execute(text("SELECT 1"))
        return True
    except Exception:
        return False


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database, dropped afterwards."""
    if not _reachable_postgres():
        pytest.fail(f"PostgreSQL is not reachable at {POSTGRES} (set LENS_TEST_POSTGRES_URL)")
    name = f"{os.environ.get('LENS_TEST_DB_PREFIX', 'lens_test')}_{secrets.token_hex(4)}"
    admin = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(POSTGRES).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def redis_url() -> str:
    import redis

    try:
        redis.Redis.from_url(REDIS).ping()
    except redis.RedisError:
        pytest.fail(f"Redis is not reachable at {REDIS} (set LENS_TEST_REDIS_URL)")
    return REDIS


def make_app(tmp_path, monkeypatch, database_url: str, redis_url: str = ""):
    """An app as a scaled-out web process would run it: settings from the environment."""
    monkeypatch.setenv("LENS_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv("DATABASE_URL", database_url)
    # the settings every host of a multi-host site shares (lens.config.check_shared_settings)
    monkeypatch.setenv("SECRET_KEY", os.environ.get("SECRET_KEY") or "test-shared-secret-key")
    monkeypatch.setenv("LENS_MEDIA_SECRET", os.environ.get("LENS_MEDIA_SECRET") or "test-media")
    if redis_url:
        monkeypatch.setenv("REDIS_URL", redis_url)
    else:
        monkeypatch.delenv("REDIS_URL", raising=False)
    app = create_app({"TESTING": True, "LENS_PASSWORD_METHOD": "pbkdf2:sha256:1"})
    with app.app_context():
        limiter.reset()
    return app


def dispose(app) -> None:
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


class OwnRedis:
    """A redis-server of the test's own on a free loopback port: stopped and started again
    (the shared server must not be killed or have its clients cut)."""

    def __init__(self, tmp_path) -> None:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.dir = tmp_path
        self.process = None

    def start(self) -> None:
        import shutil
        import subprocess
        import time

        import redis

        server = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.process = subprocess.Popen(
            [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(self.url).ping()
                return
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not come up"
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def client(self):
        import redis

        return redis.Redis.from_url(self.url)


@pytest.fixture
def own_redis(tmp_path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    server.stop()
