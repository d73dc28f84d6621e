"""Log-in (password, then the authenticator code where enrolled), log-out, password change and
the second factor's enrolment."""

from __future__ import annotations

import time
from datetime import datetime

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import format_timedelta
from flask_babel import gettext as _
from flask_login import current_user, login_required, login_user, logout_user

from lens.auth import revocation, totp
from lens.auth.forms import CodeForm, LoginForm, PasswordChangeForm
from lens.auth.login import LoginCheck, check_password_login, check_second_factor
from lens.auth.models import Technician
from lens.auth.throttle import Backoff, clear_failures, throttle_key
from lens.database import retry_when_busy
from lens.extensions import db, limiter, login_manager
from lens.i18n import safe_next
from lens.timeutil import now_utc

bp = Blueprint("auth", __name__)

login_manager.login_view = "auth.login"
login_manager.login_message = None

PENDING = "lens_login_pending"  # a log-in whose password was right, waiting for its code
PENDING_SECONDS = 300
ENROLMENT = "lens_totp_enrolment"  # the secret being enrolled, sealed
# what an administrator without a second factor may still reach: these, and nothing else
OPEN_TO_UNENROLLED = ("auth", "i18n", "ops")


@login_manager.user_loader
def load_technician(login_id: str) -> Technician | None:
    """The signed-in technician, while the cookie's session version is the account's."""
    technician_id, _sep, version = login_id.partition(":")
    if not technician_id.isdigit() or not version.isdigit():
        return None  # a cookie from before session versions: log in again
    technician = db.session.get(Technician, int(technician_id))
    if technician is None or not technician.active:
        return None
    return technician if technician.session_version == int(version) else None


@bp.before_app_request
def require_second_factor_for_admins():
    """An administrator without a second factor enrols before reaching anything else."""
    if not current_user.is_authenticated or not current_user.is_admin:
        return None
    if current_user.has_second_factor or current_user.password_change_required:
        return None  # (the password change comes first: the consoles send them there)
    endpoint = request.endpoint or ""
    if endpoint == "static" or endpoint.partition(".")[0] in OPEN_TO_UNENROLLED:
        return None
    if request.method != "GET" or request.path.endswith("/ws"):
        abort(403)
    return redirect(url_for("auth.two_factor", next=request.full_path.rstrip("?")))


def _login_limit() -> str:
    return current_app.config["LENS_LOGIN_RATE_LIMIT"]


def backoff() -> Backoff:
    config = current_app.config
    return Backoff(
        free=config["LENS_LOGIN_FREE_FAILURES"],
        base_seconds=config["LENS_LOGIN_BACKOFF_SECONDS"],
        cap_seconds=config["LENS_LOGIN_BACKOFF_MAX_SECONDS"],
    )


def site_secret() -> str:
    return current_app.config["SECRET_KEY"]


def refused(check: LoginCheck, now: datetime, wrong: str) -> int:
    """Flash why a log-in step was refused; the status to answer with."""
    if check.locked_until is None:
        flash(wrong, "error")
        return 200
    wait = format_timedelta(check.locked_until - now, threshold=1, add_direction=False)
    flash(
        _(
            "Too many failed log-ins for this account. For its safety, log-in is paused: "
            "try again in %(wait)s.",
            wait=wait,
        ),
        "error",
    )
    return 429


def complete_login(technician: Technician, key: str, target: str):
    """Password (and code) were right: log in, then what the account must do first."""
    clear_failures(db.session, key)
    db.session.commit()
    session.pop(PENDING, None)
    login_user(technician)
    if technician.password_change_required:
        return redirect(url_for("auth.change_password", next=target))
    if technician.is_admin and not technician.has_second_factor:
        return redirect(url_for("auth.two_factor", next=target))
    return redirect(target)


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
@retry_when_busy  # a failure is a write: SQLite's one writer may be busy under a guessing run
def login():
    """Show the log-in form; check e-mail and password (then ask for the code, if enrolled)."""
    form = LoginForm()
    status = 200
    if form.validate_on_submit():
        now = now_utc()
        key, check = password_check(form.email.data.strip().lower(), form.password.data, now)
        db.session.commit()
        target = safe_next(request.args.get("next"), url_for("technician_console.index"))
        if check.technician is None:
            status = refused(check, now, _("Wrong e-mail or password."))
        elif check.technician.has_second_factor:
            await_code(check.technician, key, target)
            return redirect(url_for("auth.login_code"))
        else:
            return complete_login(check.technician, key, target)
    elif form.errors:
        status = 422
    return render_template("auth/login.html", form=form), status


def await_code(technician: Technician, key: str, target: str) -> None:
    """Remember (in the signed session) whose password was right, for the code step."""
    session[PENDING] = {
        "id": technician.id,
        "version": technician.session_version,
        "key": key,
        "at": time.time(),
        "next": target,
    }


def pending_login() -> tuple[Technician, dict] | None:
    """The technician whose password was right a moment ago, still waiting for the code."""
    pending = session.get(PENDING)
    if not isinstance(pending, dict) or time.time() - pending.get("at", 0) > PENDING_SECONDS:
        return None
    technician = db.session.get(Technician, pending.get("id"))
    if (
        technician is None
        or not technician.active
        or not technician.has_second_factor
        or technician.session_version != pending.get("version")
    ):
        return None
    return technician, pending


@bp.route("/login/code", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
@retry_when_busy
def login_code():
    """The second step of a log-in: the code from the authenticator app."""
    found = pending_login()
    if found is None:
        session.pop(PENDING, None)
        flash(_("Log in again: the log-in took too long."), "error")
        return redirect(url_for("auth.login"))
    technician, pending = found
    form = CodeForm()
    status = 200
    if form.validate_on_submit():
        now = now_utc()
        check = check_second_factor(
            db.session,
            technician,
            form.code.data,
            key=pending["key"],
            site_secret=site_secret(),
            backoff=backoff(),
            now=now,
        )
        db.session.commit()
        if check.technician is not None:
            return complete_login(technician, pending["key"], pending["next"])
        wrong = _("That code is not right. Enter the code your app shows now.")
        status = refused(check, now, wrong)
    elif form.errors:
        status = 422
    return render_template("auth/code.html", form=form), status


@bp.post("/logout")
@login_required
def logout():
    """Log out: every log-in of this account ends, on every device, sockets included."""
    technician_id = current_user.id
    logout_user()
    revocation.sign_out_everywhere(technician_id, revocation.LOGGED_OUT)
    return redirect(url_for("auth.login"))


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
@limiter.limit(_login_limit, methods=["POST"])
@retry_when_busy
def change_password():
    """Choose a new password (required after a one-time one); other log-ins end.

    The current password is asked (and a wrong one counts towards the account's back-off,
    as at log-in): a stolen log-in cookie alone must not be able to take the account over.
    """
    technician = current_user._get_current_object()
    form = PasswordChangeForm(email=technician.email, name=technician.name)
    status = 200
    if form.validate_on_submit():
        status = current_password_refused(technician, form)
        if status == 0:
            technician.set_password(form.password.data, current_app.config["LENS_PASSWORD_METHOD"])
            technician.password_change_required = False
            db.session.commit()
            revocation.sign_out_everywhere(technician.id, revocation.PASSWORD_CHANGED)
            revocation.keep_this_login(technician)
            flash(_("Your password has been saved."), "info")
            target = url_for("technician_console.index")
            return redirect(safe_next(request.args.get("next"), target))
    return render_template("auth/password.html", form=form), status


def password_check(email: str, password: str, now: datetime):
    """Count this attempt at `email`'s password under its back-off and check it: the
    throttle's key and the result (the log-in form and the password change ask alike)."""
    key = throttle_key(email, site_secret())
    check = check_password_login(
        db.session,
        email,
        password,
        key=key,
        password_method=current_app.config["LENS_PASSWORD_METHOD"],
        backoff=backoff(),
        now=now,
    )
    return key, check


def current_password_refused(technician: Technician, form: PasswordChangeForm) -> int:
    """0 if the current password typed is the account's (under its back-off); else the
    status to answer with, the reason on the form or flashed."""
    now = now_utc()
    key, check = password_check(technician.email, form.current.data, now)
    if check.technician is None:
        db.session.commit()
        if check.locked_until is not None:
            return refused(check, now, "")  # flashes how long the pause lasts: 429
        form.current.errors.append(_("That is not your current password."))
        return 200
    clear_failures(db.session, key)
    return 0


def enrolment_secret(technician: Technician) -> str:
    """The secret this browser is enrolling (kept sealed in its session until confirmed).

    It belongs to the log-in that began it: after a log-out, whoever logs in next in this
    browser gets a new secret, never one the previous user may have scanned into their app.
    """
    kept = session.get(ENROLMENT)
    if isinstance(kept, dict) and kept.get("login") == technician.get_id():
        try:
            return totp.unseal(kept.get("secret", ""), site_secret())
        except totp.SecretUnreadable:
            pass
    secret = totp.new_secret()
    session[ENROLMENT] = {"login": technician.get_id(), "secret": totp.seal(secret, site_secret())}
    return secret


@bp.route("/account/two-factor", methods=["GET", "POST"])
@login_required
@limiter.limit(_login_limit, methods=["POST"])
def two_factor():
    """Two-step verification: scan the QR code, confirm with a code; or see that it is on."""
    technician = current_user._get_current_object()
    target = safe_next(request.args.get("next"), url_for("technician_console.index"))
    if technician.has_second_factor:
        return render_template("auth/two_factor_on.html", form=CodeForm(), next=target)
    secret = enrolment_secret(technician)
    form = CodeForm()
    status = 200
    if form.validate_on_submit():
        if totp.enrol(db.session, technician, secret, form.code.data, site_secret(), now_utc()):
            db.session.commit()
            session.pop(ENROLMENT, None)
            revocation.sign_out_everywhere(technician.id, revocation.SECOND_FACTOR_CHANGED)
            revocation.keep_this_login(technician)
            flash(_("Two-step verification is on."), "info")
            return redirect(target)
        form.code.errors.append(_("That code is not right. Enter the code your app shows now."))
    if form.errors:
        status = 422
    label = _("QR code for your authenticator app")
    page = render_template(
        "auth/two_factor.html",
        form=form,
        qr=totp.qr_code(secret, technician.email, label),
        key=totp.grouped(secret),
        required=technician.is_admin,
    )
    response = make_response(page, status)
    # the secret must not outlive the page: no copy in the browser's cache, where the Back
    # button would show it to whoever uses the computer after a log-out
    response.cache_control.no_store = True
    return response


@bp.post("/account/two-factor/off")
@login_required
@limiter.limit(_login_limit)
def two_factor_off():
    """Turn two-step verification off (technicians only; a current code is asked)."""
    technician = current_user._get_current_object()
    if technician.is_admin:
        abort(403)
    form = CodeForm()
    wrong = _("That code is not right. Enter the code your app shows now.")
    if not form.validate_on_submit():
        flash(wrong, "error")
        return render_template("auth/two_factor_on.html", form=form, next=None), 422
    # wrong codes count towards the account's back-off, as at log-in: a stolen cookie must
    # not be a way to guess codes without limit
    now, key = now_utc(), throttle_key(technician.email, site_secret())
    check = check_second_factor(
        db.session,
        technician,
        form.code.data,
        key=key,
        site_secret=site_secret(),
        backoff=backoff(),
        now=now,
    )
    if check.technician is None:
        db.session.commit()  # a used step stays used
        status = 422 if refused(check, now, wrong) == 200 else 429
        return render_template("auth/two_factor_on.html", form=form, next=None), status
    clear_failures(db.session, key)
    totp.disenrol(db.session, technician)
    db.session.commit()
    revocation.sign_out_everywhere(technician.id, revocation.SECOND_FACTOR_CHANGED)
    revocation.keep_this_login(technician)
    flash(_("Two-step verification is off."), "info")
    return redirect(url_for("auth.two_factor"))
