"""Log-in, log-out and the first-login password change."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required, login_user, logout_user
from sqlalchemy import func, select

from lens.auth.forms import LoginForm, PasswordForm
from lens.auth.models import Technician
from lens.extensions import db, limiter, login_manager
from lens.i18n import safe_next

bp = Blueprint("auth", __name__)

login_manager.login_view = "auth.login"
login_manager.login_message = None


@login_manager.user_loader
def load_technician(technician_id: str) -> Technician | None:
    """The signed-in technician; a deactivated one is logged out at their next request."""
    technician = db.session.get(Technician, int(technician_id))
    return technician if technician is not None and technician.active else None


def _login_limit() -> str:
    return current_app.config["LENS_LOGIN_RATE_LIMIT"]


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def login():
    """Show the log-in form; log the technician in."""
    form = LoginForm()
    if form.validate_on_submit():
        email = form.email.data.strip().lower()
        technician = db.session.scalar(
            select(Technician).where(func.lower(Technician.email) == email)
        )
        if technician and technician.active and technician.check_password(form.password.data):
            login_user(technician)
            target = safe_next(request.args.get("next"), url_for("technician_console.index"))
            if technician.password_change_required:
                return redirect(url_for("auth.change_password", next=target))
            return redirect(target)
        flash(_("Wrong e-mail or password."), "error")
    return render_template("auth/login.html", form=form), 200 if not form.errors else 422


@bp.post("/logout")
@login_required
def logout():
    """Log out."""
    logout_user()
    return redirect(url_for("auth.login"))


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def change_password():
    """Replace the one-time password with one of the technician's own."""
    form = PasswordForm()
    if form.validate_on_submit():
        current_user.set_password(form.password.data, current_app.config["LENS_PASSWORD_METHOD"])
        current_user.password_change_required = False
        db.session.commit()
        flash(_("Your password has been saved."), "info")
        return redirect(safe_next(request.args.get("next"), url_for("technician_console.index")))
    return render_template("auth/password.html", form=form)
