"""The console's side of an invitation: build the link and texts, hand them to a channel."""

from __future__ import annotations

from dataclasses import dataclass

import phonenumbers
from flask import current_app, url_for
from flask_babel import force_locale, get_locale
from flask_babel import gettext as _
from flask_login import current_user

from lens.admin.settings import localized, setting
from lens.console.forms import EMAIL_VIA_SERVER, NewSessionForm
from lens.extensions import db, mail
from lens.invitations import (
    Invitation,
    InvitationMessage,
    InvitationOutcome,
    InvitationWording,
    compose_invitation,
    deliver_invitation,
    mailto_url,
    qr_svg,
    record_invitation,
    render_sms,
    send_email,
)
from lens.sessions.lifecycle import technician_actor
from lens.sessions.models import Channel, LensSession
from lens.timeutil import now_utc


@dataclass(frozen=True)
class InviteResult:
    """What the dialog shows after a submit: the invitation, and a mailto: link if any."""

    invitation: Invitation | None
    mailto: str | None = None


def join_url(lens_session: LensSession) -> str:
    """The session's join link, on LENS_BASE_URL when it is set."""
    base = current_app.config.get("LENS_BASE_URL")
    if base:
        return base + url_for("customer.join_link", token=lens_session.join_token)
    return url_for("customer.join_link", token=lens_session.join_token, _external=True)


def join_qr(lens_session: LensSession) -> str:
    """The join link as an inline SVG QR code."""
    return qr_svg(join_url(lens_session), label=_("QR code of the join link"))


def _minutes(lens_session: LensSession) -> int:
    """The session's own PIN and link validity, as it was when the session was created."""
    return max(
        1, round((lens_session.pin_expires_at - lens_session.created_at).total_seconds() / 60)
    )


# Countries whose people read Dutch: an SMS to their numbers goes out in Dutch.
DUTCH_REGIONS = frozenset({"NL", "BE", "SR", "AW", "CW", "SX", "BQ"})


def customer_language(phone: str | None) -> str:
    """The language to write to the customer in: by their phone number's country, else
    the technician's own."""
    if phone:
        try:
            number = phonenumbers.parse(phone, None)
        except phonenumbers.NumberParseException:
            number = None
        if number is not None:
            region = phonenumbers.region_code_for_number(number)
            return "nl" if region in DUTCH_REGIONS else "en"
    return str(get_locale() or "en")


def sms_text(lens_session: LensSession, pin: str) -> str:
    """The SMS in the customer's language: the Admin Center's template, else Lens's own."""
    language = customer_language(lens_session.phone)
    template = localized("LENS_SMS_TEMPLATE", language)
    if not template:
        with force_locale(language):
            template = _("Your support session: {link} (PIN {pin})")
    return render_sms(
        template,
        link=join_url(lens_session),
        pin=pin,
        name=lens_session.customer_name,
        technician=current_user.name,
        company=setting("LENS_COMPANY_NAME") or "",
    )


def _wording() -> InvitationWording:
    """The e-mail's sentences in the technician's language ({placeholders} stay); the
    Admin Center's subject and text where it has them."""
    language = str(get_locale() or "en")
    return InvitationWording(
        subject=localized("LENS_EMAIL_SUBJECT", language)
        or _("{technician} invites you to a live video support session"),
        greeting=_("Hello {name},"),
        intro=localized("LENS_EMAIL_INTRO", language)
        or _(
            "{technician} would like to see the problem through your phone's camera. "
            "Open the link below on your phone; there is nothing to install."
        ),
        button=_("Join the support session"),
        pin_line=_("Your PIN: {pin}"),
        expiry_line=_("The link and PIN are valid for {minutes} minutes."),
        fallback_line=_("If the button does not work, copy this link into your browser:"),
        lang=str(get_locale() or "en"),
    )


def invitation_email(lens_session: LensSession, pin: str) -> InvitationMessage:
    """The invitation e-mail for the session: subject, text and HTML with the link as a button."""
    return compose_invitation(
        lens_session.customer_name,
        join_url(lens_session),
        pin,
        _minutes(lens_session),
        technician_name=current_user.name,
        wording=_wording(),
        company=setting("LENS_COMPANY_NAME") or "",
    )


def invite(lens_session: LensSession, pin: str, form: NewSessionForm) -> InviteResult:
    """Send or show the invitation the pressed button asked for, and record it."""
    channel = form.channel.data
    actor = technician_actor(current_user)
    timeout = current_app.config["LENS_INVITATION_TIMEOUT"]
    if channel == Channel.SMS:
        to = form.phone.data
        body = sms_text(lens_session, pin)
        backend = current_app.extensions["lens.sms"]
        public_id = lens_session.public_id
        invitation = deliver_invitation(
            db.session,
            lens_session,
            channel=channel,
            destination=to,
            send=lambda: backend.send(to, body, public_id),
            timeout=timeout,
            actor=actor,
        )
        return InviteResult(invitation)
    if channel == Channel.EMAIL:
        to = form.email.data
        message = invitation_email(lens_session, pin)
        if form.email_via.data == EMAIL_VIA_SERVER:
            invitation = deliver_invitation(
                db.session,
                lens_session,
                channel=channel,
                destination=to,
                send=lambda: send_email(mail, None, to, message, timeout),
                timeout=timeout,
                actor=actor,
            )
            return InviteResult(invitation)
        invitation = _shown(lens_session, channel, to, actor)
        return InviteResult(invitation, mailto=mailto_url(to, message.subject, message.text))
    if channel == Channel.LINK:
        return InviteResult(_shown(lens_session, channel, "", actor))
    return InviteResult(None)


def _shown(lens_session: LensSession, channel: str, destination: str, actor: str) -> Invitation:
    return record_invitation(
        db.session,
        lens_session,
        channel=channel,
        destination=destination,
        outcome=InvitationOutcome.SHOWN,
        actor=actor,
        now=now_utc(),
    )
