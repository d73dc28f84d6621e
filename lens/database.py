"""The database under load: pool settings, SQLite tuned for many readers, writes that retry.

A socket never waits with a connection checked out: work happens in short units that end
with a commit or a rollback (either returns the connection to the pool). A write that meets
a busy database (SQLite's single writer held by someone else) is retried for a bounded
time, instead of failing the user's action at once.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

# The largest id any table's primary key holds on every database Lens runs on (PostgreSQL's
# INTEGER; SQLite's is larger): ids from outside (URLs, socket messages) are checked
# against it before they reach a query, which would fail on a larger one.
MAX_ID = 2**31 - 1

log = logging.getLogger(__name__)

T = TypeVar("T")

# SQLite's own busy wait sleeps inside C: under gevent that stalls every greenlet of the
# process, so it is kept short and the waiting is done here, where sleep yields.
SQLITE_BUSY_TIMEOUT = 0.05


class _Counters:
    """What operators see of busy-database waits (the web process's /metrics)."""

    busy_retries = 0
    busy_failures = 0


COUNTERS = _Counters()


class DatabaseBusy(Exception):
    """The database stayed busy for the whole retry budget; nothing was written."""


def engine_options(uri: str, pool_size: int, max_overflow: int, pool_timeout: float) -> dict:
    """SQLAlchemy engine options for the configured database."""
    options: dict[str, Any] = {"pool_pre_ping": True}
    sqlite = uri.startswith("sqlite")
    in_memory = sqlite and (":memory:" in uri or uri.rstrip("/") == "sqlite:")
    if in_memory:  # one connection that lives as long as the engine: no pool to size
        return options
    if sqlite:
        options["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT}
    options.update(pool_size=pool_size, max_overflow=max_overflow, pool_timeout=pool_timeout)
    return options


def _lower(text: object) -> object:
    return text.lower() if isinstance(text, str) else text


def tune_sqlite(engine: Engine) -> None:
    """WAL journal: readers never wait for the writer, and the writer never waits for them.

    And lower() as PostgreSQL's: SQLite's own lowers ASCII letters only, so an e-mail address
    with a capital "É" matched no log-in there (e-mail addresses are compared lowercased).
    """
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, connection_record):  # noqa: ARG001
        dbapi_connection.create_function("lower", 1, _lower, deterministic=True)
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        except Exception:  # a locked file at connect time: the default journal still works
            log.warning("could not switch SQLite to WAL", exc_info=True)
        finally:
            cursor.close()


def is_busy(exc: BaseException) -> bool:
    """Whether an error means "someone else holds the database; try again"."""
    if not isinstance(exc, OperationalError):
        return False
    text = str(exc.orig).lower() if exc.orig is not None else str(exc).lower()
    return (
        "database is locked" in text
        or "database is busy" in text
        or "could not obtain lock" in text
        or "deadlock detected" in text
        or "could not serialize access" in text
    )


def retrying(
    session, unit: Callable[[], T], budget: float, sleep: Callable[[float], None] = time.sleep
) -> T:
    """Run unit (which ends with a commit) until it succeeds or `budget` seconds pass.

    A busy attempt is rolled back before the next one, so a retried unit starts afresh;
    after the budget DatabaseBusy is raised and nothing of the unit is kept.
    """
    deadline = time.monotonic() + budget
    pause = 0.02
    while True:
        try:
            return unit()
        except OperationalError as exc:
            session.rollback()
            if not is_busy(exc):
                raise
            if time.monotonic() + pause > deadline:
                COUNTERS.busy_failures += 1
                log.warning("database busy for %.1f s; giving up", budget)
                raise DatabaseBusy() from exc
            COUNTERS.busy_retries += 1
            sleep(pause * (0.5 + random.random()))
            pause = min(pause * 2, 0.5)


def retry_when_busy(view: Callable[..., T]) -> Callable[..., T]:
    """A view whose only side effects are database writes, retried while the database is busy.

    After LENS_DB_BUSY_SECONDS it raises DatabaseBusy (a 503 with a clear message).
    """
    from flask import current_app

    from lens.extensions import db

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        budget = current_app.config["LENS_DB_BUSY_SECONDS"]
        return retrying(db.session, lambda: view(*args, **kwargs), budget)

    return wrapper
