"""Ending every log-in of an account at once, on the server: cookies and open sockets.

Every log-in cookie carries the account's session version next to its id
(`Technician.get_id`). The user loader accepts a cookie only while that version is the
account's current one, on every request; the console's socket checks it on every message
the page sends and every few seconds while idle (lens.console.live). Raising the version
(one atomic UPDATE, seen at once by every process and host sharing the database) so ends
every log-in of the account, copied cookies included; the `signed_out` message on the
account's bus topic closes its open sockets within a moment.

Log-out, a password change (or reset, or a password set from an e-mailed link), turning
the second factor on or off, deactivation and the Admin Center's "Log out everywhere" all
call `sign_out_everywhere`.
"""

from __future__ import annotations

import logging

from flask import current_app
from flask_login import login_user
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from lens.auth.models import Technician
from lens.database import retrying
from lens.events import BusUnavailable
from lens.events.publishing import technician_topic
from lens.extensions import db

log = logging.getLogger(__name__)
SIGNED_OUT = "signed_out"

# why the log-ins ended (the open console says it: templates/auth/_signed_out.html)
LOGGED_OUT = "logged_out"
PASSWORD_CHANGED = "password_changed"
SECOND_FACTOR_CHANGED = "second_factor_changed"
DEACTIVATED = "deactivated"
BY_ADMIN = "by_admin"
REASONS = (LOGGED_OUT, PASSWORD_CHANGED, SECOND_FACTOR_CHANGED, DEACTIVATED, BY_ADMIN)


def end_logins(session: Session, technician_id: int) -> None:
    """Raise the account's session version: every log-in cookie issued so far is void."""
    session.execute(
        update(Technician)
        .where(Technician.id == technician_id)
        .values(session_version=Technician.session_version + 1)
        .execution_options(synchronize_session=False)
    )


def login_is_current(session: Session, technician_id: int, version: int) -> bool:
    """Whether a log-in made at this session version still holds (account active too)."""
    row = session.execute(
        select(Technician.session_version, Technician.active).where(Technician.id == technician_id)
    ).one_or_none()
    return row is not None and row.active and row.session_version == version


def sign_out_everywhere(technician_id: int, reason: str = BY_ADMIN) -> None:
    """End every log-in of the account now (commits) and close its open sockets."""

    def unit() -> None:
        end_logins(db.session, technician_id)
        db.session.commit()

    retrying(db.session, unit, current_app.config["LENS_DB_BUSY_SECONDS"])
    bus = current_app.extensions["lens.events"]
    try:
        bus.publish(technician_topic(technician_id), {"type": SIGNED_OUT, "reason": reason})
    except BusUnavailable:
        # The log-ins have ended (committed): the request that ended them must not fail now.
        # Open sockets see it at their next message or idle re-check (LENS_LOGIN_RECHECK_SECONDS).
        log.warning(
            "event bus unavailable: technician %s's sockets close at their re-check", technician_id
        )


def keep_this_login(technician: Technician) -> None:
    """After ending every log-in of the account, keep this browser's (with a new cookie)."""
    db.session.refresh(technician)
    login_user(technician)
