"""The domain side: invitations on the session's record, and one session per form key."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from lens.auth.models import Technician
from lens.extensions import db
from lens.invitations import (
    InvitationOutcome,
    create_session_once,
    deliver_invitation,
    record_invitation,
)
from lens.invitations.errors import InvitationSendError
from lens.invitations.records import event_detail
from lens.sessions.models import LensSession
from lens.timeutil import now_utc


def new_session(technician: Technician, key: str | None = "k" * 24):
    return create_session_once(
        db.session,
        request_key=key,
        technician=technician,
        console="technician",
        customer_name="Jane",
        channel="sms",
        pin_validity=timedelta(minutes=20),
        now=now_utc(),
    )


def test_record_invitation_keeps_it_and_logs_the_masked_destination(app, technician):
    with app.app_context():
        lens_session, _ = new_session(db.session.get(Technician, technician))
        invitation = record_invitation(
            db.session,
            lens_session,
            channel="sms",
            destination="+31612345678",
            outcome=InvitationOutcome.FAILED,
            error="Twilio refused the SMS: bad number",
            actor="technician:1",
            now=now_utc(),
        )
        db.session.commit()
        assert lens_session.invitations == [invitation]
        assert invitation.masked_destination == "+31 6 •••• 5678"
        event = lens_session.events[-1]
        assert event.kind == "invite_failed"
        assert event.detail == "sms +31 6 •••• 5678\nTwilio refused the SMS: bad number"
        assert "12345678" not in event.detail


def test_deliver_records_success_and_failure(app, technician):
    def refuse() -> None:
        raise InvitationSendError("The SMS webhook answered HTTP 500")

    with app.app_context():
        lens_session, _ = new_session(db.session.get(Technician, technician))
        ok = deliver_invitation(
            db.session,
            lens_session,
            channel="email",
            destination="jane@example.com",
            send=lambda: None,
            timeout=2,
            actor="technician:1",
        )
        failed = deliver_invitation(
            db.session,
            lens_session,
            channel="sms",
            destination="+31612345678",
            send=refuse,
            timeout=2,
            actor="technician:1",
        )
        assert (ok.outcome, ok.error, ok.masked_destination) == ("sent", None, "j•••@example.com")
        assert (failed.outcome, failed.error) == ("failed", "The SMS webhook answered HTTP 500")
        assert [e.kind for e in lens_session.events][-2:] == ["invite_sent", "invite_failed"]


def test_one_session_per_request_key(app, technician):
    with app.app_context():
        tess = db.session.get(Technician, technician)
        first, created = new_session(tess)
        again, created_again = new_session(tess)
        assert created and not created_again
        assert again.id == first.id
        other, created_other = new_session(tess, key=None)
        assert created_other and other.id != first.id
        assert db.session.scalar(select(func.count(LensSession.id))) == 2


def test_event_detail_without_destination_or_error():
    assert event_detail("link", "", None) == "link"
    assert event_detail("email", "j•••@example.com", None) == "email j•••@example.com"
