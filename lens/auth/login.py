"""Checking a log-in: the throttle first, then the password with the same work for everyone.

An unknown e-mail address (or a deactivated account) costs the same as a known one: its
password is checked against a dummy hash made with the site's hashing method, so the time
an answer takes does not tell whether the account exists. Failures count towards the
address's back-off (lens.auth.throttle); a complete log-in (with the second factor, where
one is enrolled) clears it. Each attempt is counted, and committed, before its password or
code is checked: concurrent attempts cannot all pass a lock check made before any of them
failed.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from functools import cache

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from lens.auth.models import Technician
from lens.auth.throttle import Backoff, claim_attempt, take_back
from lens.auth.totp import check_code


@cache
def _dummy_hash(method: str) -> str:
    return generate_password_hash(secrets.token_urlsafe(16), method=method)


def check_dummy_password(password: str, method: str) -> None:
    """Do the work of a password check, for an account that does not exist."""
    check_password_hash(_dummy_hash(method), password)


@dataclass(frozen=True)
class LoginCheck:
    """The outcome: the technician whose password it was, or a refusal (and until when)."""

    technician: Technician | None = None
    locked_until: datetime | None = None


def find_technician(db: Session, email: str) -> Technician | None:
    return db.scalar(select(Technician).where(func.lower(Technician.email) == email))


def check_password_login(
    db: Session,
    email: str,
    password: str,
    *,
    key: str,
    password_method: str,
    backoff: Backoff,
    now: datetime,
) -> LoginCheck:
    """Check e-mail and password under the address's back-off.

    Commits the attempt's count before the check; the caller commits what follows."""
    claim = claim_attempt(db, key, now, backoff)
    db.commit()
    if not claim.admitted:  # nothing is checked while locked: the right password waits too
        return LoginCheck(locked_until=claim.locked_until)
    technician = find_technician(db, email.strip().lower())
    if technician is None:
        check_dummy_password(password, password_method)
        correct = False
    else:
        correct = technician.check_password(password) and technician.active
    if not correct:
        return LoginCheck(locked_until=claim.locked_until)
    if technician.has_second_factor:  # the log-in goes on to the code: not a failure yet
        take_back(db, key, claim)
    return LoginCheck(technician=technician)


def check_second_factor(
    db: Session,
    technician: Technician,
    code: str,
    *,
    key: str,
    site_secret: str,
    backoff: Backoff,
    now: datetime,
) -> LoginCheck:
    """Check the authenticator code of a log-in whose password was right (the caller commits).

    Wrong codes count towards the same back-off as wrong passwords; a right one is cleared
    by the complete log-in. Commits the attempt's count before the check."""
    claim = claim_attempt(db, key, now, backoff)
    db.commit()
    if not claim.admitted:
        return LoginCheck(locked_until=claim.locked_until)
    if check_code(db, technician, code, site_secret, now):
        return LoginCheck(technician=technician)
    return LoginCheck(locked_until=claim.locked_until)
