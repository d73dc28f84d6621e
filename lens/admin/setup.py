"""Wire the Admin Center into an app: its blueprints, "online now", template helpers."""

from __future__ import annotations

import importlib
import logging
from datetime import timedelta

from flask import Flask, request
from flask_login import current_user
from sqlalchemy import or_, update
from sqlalchemy.exc import SQLAlchemyError

from lens.auth.models import Technician
from lens.extensions import db
from lens.timeutil import now_utc

log = logging.getLogger(__name__)
SEEN_EVERY = timedelta(minutes=1)


def mark_seen() -> None:
    """Note a signed-in technician's request, at most once a minute (a plain UPDATE)."""
    # a static file reads no session: its answer must not vary by the cookie (a year-long
    # cached script would be fetched again whenever the session cookie changes)
    if request.endpoint == "static" or not current_user.is_authenticated:
        return
    seen = current_user.last_seen_at
    if seen is not None and now_utc() - seen < SEEN_EVERY:
        return
    technician_seen(current_user.id)


def technician_seen(technician_id: int) -> None:
    """The technician is here now (a request, or their open console's socket)."""
    now = now_utc()
    try:
        db.session.execute(
            update(Technician)
            .where(
                Technician.id == technician_id,
                or_(Technician.last_seen_at.is_(None), Technician.last_seen_at < now - SEEN_EVERY),
            )
            .values(last_seen_at=now)
            .execution_options(synchronize_session=False)
        )
        db.session.commit()
    except SQLAlchemyError:  # a busy database: the next beat tries again
        db.session.rollback()
        log.warning("could not mark technician %s as seen", technician_id)


def init_app(app: Flask) -> None:
    """Register the Admin Center and the helpers templates use for settings."""
    from lens.admin import settings
    from lens.admin.views import bp
    from lens.admin.welcome import bp as welcome_bp

    importlib.import_module("lens.admin.models")
    app.register_blueprint(bp)
    app.register_blueprint(welcome_bp)
    app.before_request(mark_seen)
    from lens.admin.forms import PERMISSION_LABELS, switch_fields

    app.jinja_env.globals.update(
        setting=settings.setting,
        localized_setting=settings.localized,
        switch_fields=switch_fields,
    )
    app.jinja_env.filters["permission_label"] = lambda name: str(PERMISSION_LABELS.get(name, name))
