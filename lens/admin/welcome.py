"""The e-mailed set-password link for a new technician (or a reset): single use, 3 days."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from itsdangerous import BadSignature, URLSafeTimedSerializer
from markupsafe import escape

from lens.auth.forms import PasswordForm
from lens.auth.models import Technician
from lens.auth.revocation import PASSWORD_CHANGED, sign_out_everywhere
from lens.extensions import db, mail
from lens.invitations.errors import InvitationSendError
from lens.invitations.mail import InvitationMessage, send_email

bp = Blueprint("welcome", __name__)

VALID_SECONDS = 3 * 24 * 3600


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="lens-welcome")


def welcome_token(technician: Technician) -> str:
    """A link token bound to the current password hash: it is void once a password is set."""
    return _serializer().dumps([technician.id, technician.password_hash[-16:]])


def technician_of(token: str) -> Technician | None:
    try:
        technician_id, fingerprint = _serializer().loads(token, max_age=VALID_SECONDS)
    except (BadSignature, ValueError, TypeError):
        return None
    technician = db.session.get(Technician, technician_id)
    if technician is None or not technician.active:
        return None
    if technician.password_hash[-16:] != fingerprint:
        return None
    return technician


def send_welcome(technician: Technician) -> str | None:
    """E-mail the set-password link; None when sent, else why it failed."""
    link = url_for("welcome.set_password", token=welcome_token(technician), _external=True)
    base = current_app.config.get("LENS_BASE_URL")
    if base:
        link = base + url_for("welcome.set_password", token=welcome_token(technician))
    subject = _("Your Lens account")
    text = _(
        "Hello %(name)s,\n\nAn account on Lens was made for you. Choose your password here "
        "(the link works once, for three days):\n\n%(link)s\n",
        name=technician.name,
        link=link,
    )
    html = "".join(f"<p>{escape(part)}</p>" for part in text.split("\n\n"))
    message = InvitationMessage(subject=subject, text=text, html=html)
    try:
        send_email(mail, None, technician.email, message, 10.0)
    except InvitationSendError as exc:
        return str(exc)
    return None


@bp.route("/account/welcome/<token>", methods=["GET", "POST"])
def set_password(token: str):
    """Choose a password from the e-mailed link."""
    technician = technician_of(token)
    if technician is None:
        abort(404)
    form = PasswordForm(email=technician.email, name=technician.name)
    if form.validate_on_submit():
        technician.set_password(form.password.data, current_app.config["LENS_PASSWORD_METHOD"])
        technician.password_change_required = False
        db.session.commit()
        sign_out_everywhere(technician.id, PASSWORD_CHANGED)
        flash(_("Your password has been saved. Log in with it."), "info")
        return redirect(url_for("auth.login"))
    return render_template("auth/password.html", form=form)
