"""Per-account log-in throttling: exponential back-off after repeated failures.

Failures are counted per e-mail address as typed (normalised), whether or not an account
has it, so an unknown address is throttled exactly like a known one and the answers do not
tell them apart. The count lives in the database, so every web process and host shares it;
each failure is one atomic upsert (INSERT … ON CONFLICT DO UPDATE … RETURNING), and the lock
only ever moves later, so concurrent failures cannot lose a count or shorten a back-off.

While an address is locked no password (or code) is checked at all: the right one is
refused too, until the back-off has passed.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, delete, or_, select, update
from sqlalchemy.orm import Session

from lens.auth.models import LoginThrottle


@dataclass(frozen=True)
class Backoff:
    """How failures turn into waits: `free` failures, then base·2ⁿ seconds, up to `cap`."""

    free: int = 5
    base_seconds: float = 30.0
    cap_seconds: float = 3600.0
    # a failure older than this starts the count again
    window: timedelta = timedelta(hours=24)

    def wait_after(self, failures: int) -> timedelta | None:
        """The back-off after the given number of failures in a row (None: no wait yet)."""
        over = failures - self.free
        if over <= 0:
            return None
        seconds = self.base_seconds * 2 ** min(over - 1, 32)
        return timedelta(seconds=min(seconds, self.cap_seconds))


def throttle_key(email: str, secret: str) -> str:
    """The row's key for an e-mail address: a keyed hash (no stranger's address is stored)."""
    normalised = email.strip().lower().encode()
    return hmac.new(secret.encode(), b"lens-login:" + normalised, hashlib.sha256).hexdigest()


def locked_until(db: Session, key: str, now: datetime) -> datetime | None:
    """When the address's back-off ends, if it has not yet."""
    until = db.scalar(select(LoginThrottle.locked_until).where(LoginThrottle.key == key))
    return until if until is not None and until > now else None


def _insert(db: Session):
    if db.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(LoginThrottle)


def record_failure(db: Session, key: str, now: datetime, backoff: Backoff) -> datetime | None:
    """Count a failed log-in; return when the back-off it causes ends (None: no back-off)."""
    stale = now - backoff.window
    upsert = (
        _insert(db)
        .values(key=key, failures=1, last_failure_at=now, locked_until=None)
        .on_conflict_do_update(
            index_elements=[LoginThrottle.key],
            set_={
                "failures": case(
                    (LoginThrottle.last_failure_at < stale, 1),
                    else_=LoginThrottle.failures + 1,
                ),
                "last_failure_at": now,
            },
        )
        .returning(LoginThrottle.failures)
    )
    failures = db.execute(upsert).scalar_one()
    wait = backoff.wait_after(failures)
    if wait is None:
        return None
    until = now + wait
    db.execute(
        update(LoginThrottle)
        .where(
            LoginThrottle.key == key,
            or_(LoginThrottle.locked_until.is_(None), LoginThrottle.locked_until < until),
        )
        .values(locked_until=until)
        .execution_options(synchronize_session=False)
    )
    return locked_until(db, key, now)


def clear_failures(db: Session, key: str) -> None:
    """A complete log-in: the address starts from zero again."""
    db.execute(
        delete(LoginThrottle)
        .where(LoginThrottle.key == key)
        .execution_options(synchronize_session=False)
    )


def forget_old_failures(db: Session, now: datetime, backoff: Backoff) -> int:
    """Delete rows whose last failure is older than the window and whose lock has passed."""
    result = db.execute(
        delete(LoginThrottle)
        .where(
            LoginThrottle.last_failure_at < now - backoff.window,
            or_(LoginThrottle.locked_until.is_(None), LoginThrottle.locked_until < now),
        )
        .execution_options(synchronize_session=False)
    )
    return result.rowcount or 0
