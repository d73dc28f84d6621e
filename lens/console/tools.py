"""The Technician Console's session tools over HTTP: hold, resume and transfer.

Each view checks the session's feature set (lens.features.require_feature) before it
touches anything: the Web Console and groups without the permission get a 403 with a
clear message, whatever the page offered. Chat goes over the control channel, which
checks the same set per message.

Hold and the sidecar: the database is the truth. The state change is committed first,
then the sidecar is asked to gate the phone's media. If the sidecar is down or refuses,
the session stays on hold all the same: the phone's page follows the state and stops
sending (customer-media.js), and a restarted sidecar never forwards a phone that does
not send. The failure is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Blueprint, g, render_template, request
from flask_babel import gettext as _
from flask_login import current_user

from lens import features
from lens.auth.models import Technician
from lens.errors import render_error
from lens.extensions import db
from lens.features import features_of, require_feature
from lens.security.input import database_id
from lens.sessions import lifecycle
from lens.sessions.errors import TransferRefused
from lens.sessions.models import LensSession
from lens.signaling.control import MediaRefused, MediaUnavailable
from lens.signaling.relay import media_control, stop_media
from lens.timeutil import now_utc

log = logging.getLogger(__name__)


def session_features(lens_session: LensSession) -> frozenset[str]:
    """What the signed-in technician may do in this session, in the console in use."""
    return features_of(lens_session, g.console)


def render_head(lens_session: LensSession) -> str:
    """The session's head alone: its state and actions (the video below stays untouched)."""
    return render_template(
        "console/_session_head.html",
        s=lens_session,
        features=session_features(lens_session),
        oob=False,
    )


def tell_media(call: Callable[[int], None], session_id: int) -> None:
    """Ask the sidecar to gate the media; the committed state stands if it cannot."""
    try:
        call(session_id)
    except (MediaUnavailable, MediaRefused) as exc:
        log.warning("sidecar did not follow the state of session %s: %s", session_id, exc)


def register_tool_routes(bp: Blueprint, get_own_session: Callable[[int], LensSession]) -> None:
    """Add the tools' views to a console's blueprint."""

    @bp.post("/sessions/<int:session_id>/hold")
    def hold(session_id: int):
        """Hold: the sidecar stops forwarding, the phone shows On hold and stops sending."""
        lens_session = get_own_session(session_id)
        require_feature(features.HOLD, lens_session)
        lifecycle.hold_session(db.session, lens_session, current_user, now_utc())
        db.session.commit()
        tell_media(media_control().hold, lens_session.id)
        return render_head(lens_session)

    @bp.post("/sessions/<int:session_id>/resume")
    def resume(session_id: int):
        """Resume: media flows again."""
        lens_session = get_own_session(session_id)
        require_feature(features.HOLD, lens_session)
        lifecycle.resume_session(db.session, lens_session, current_user, now_utc())
        db.session.commit()
        tell_media(media_control().resume, lens_session.id)
        return render_head(lens_session)

    @bp.get("/sessions/<int:session_id>/transfer")
    def transfer_targets(session_id: int):
        """The technicians the session can go to, each free or in a session."""
        lens_session = get_own_session(session_id)
        require_feature(features.TRANSFER, lens_session)
        targets = lifecycle.transfer_targets(db.session, current_user)
        return render_template("console/_transfer.html", s=lens_session, targets=targets)

    @bp.post("/sessions/<int:session_id>/transfer")
    def transfer(session_id: int):
        """Transfer: the session waits in the other technician's list, with its log and chat."""
        lens_session = get_own_session(session_id)
        require_feature(features.TRANSFER, lens_session)
        receiver_id = database_id(request.form.get("technician"))
        receiver = db.session.get(Technician, receiver_id) if receiver_id else None
        if receiver is None:
            return render_error(422, _("Choose the technician to transfer the session to."))
        try:
            lifecycle.transfer_session(db.session, lens_session, current_user, receiver, now_utc())
        except TransferRefused:
            db.session.rollback()
            if receiver.id == current_user.id:
                return render_error(409, _("The session is already yours."))
            return render_error(409, _("%(name)s cannot receive sessions.", name=receiver.name))
        db.session.commit()
        stop_media(lens_session.id)  # the phone prepares a new connection for the receiver
        return render_template(
            "console/_transferred.html", s=lens_session, receiver=receiver, oob=False
        )
