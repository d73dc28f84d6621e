"""The Admin Center's pages: administrators only (role admin), every change audited."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select

from lens.admin import people, reports
from lens.admin import settings as admin_settings
from lens.admin.forms import (
    INVITE_EMAIL,
    DeactivateForm,
    GroupForm,
    ReportForm,
    TechnicianForm,
    switch_fields,
)
from lens.admin.models import audit_entries
from lens.admin.welcome import send_welcome
from lens.auth import revocation
from lens.auth.models import Technician, TechnicianGroup
from lens.auth.revocation import keep_this_login, sign_out_everywhere
from lens.captures import records
from lens.captures.models import Recording, Snapshot, session_recordings, session_snapshots
from lens.chat.models import session_chat
from lens.extensions import db
from lens.features import CONSOLES, WEB_CONSOLE
from lens.security.input import database_id
from lens.sessions.models import Channel, LensSession, SessionState
from lens.signaling.relay import stop_media
from lens.timeutil import now_utc

bp = Blueprint("admin", __name__, url_prefix="/admin")

REFUSALS = {
    "email_taken": lambda: _("Another technician already uses this e-mail address."),
    "own_role": lambda: _("You cannot take the administrator role from yourself."),
    "own_account": lambda: _("You cannot deactivate your own account."),
    "inactive": lambda: _("This technician is already deactivated."),
    "active": lambda: _("This technician is already active."),
    "bad_receiver": lambda: _("Choose an active technician other than this one."),
    "group_taken": lambda: _("Another group already has this name."),
    "group_in_use": lambda: _("Move the group's technicians to another group first."),
    "own_second_factor": lambda: _(
        "You cannot reset your own two-step verification: ask another administrator."
    ),
    "no_second_factor": lambda: _("This technician has no two-step verification to reset."),
}


@bp.before_request
def require_admin():
    """Log-in first; then administrators only."""
    if not current_user.is_authenticated:
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
    if current_user.password_change_required:
        return redirect(url_for("auth.change_password", next=request.path))
    if not current_user.is_admin:
        abort(403)
    return None


def refused(error: people.AdminRefused) -> str:
    return REFUSALS.get(str(error), lambda: _("This change was refused."))()


def committed(change: Callable[[], object]) -> bool:
    """Make an administrator's change and commit it; a refused one is rolled back and its
    reason flashed (False)."""
    try:
        change()
    except people.AdminRefused as exc:
        db.session.rollback()
        flash(refused(exc), "error")
        return False
    db.session.commit()
    return True


def get_or_404(model, object_id: int):
    found = db.session.get(model, object_id)
    if found is None:
        abort(404)
    return found


def all_groups() -> list[TechnicianGroup]:
    return list(db.session.scalars(select(TechnicianGroup).order_by(TechnicianGroup.name)))


@bp.get("/")
def index():
    """The Admin Center's start: go to the technicians."""
    return redirect(url_for("admin.technicians"))


# ----- technicians ------------------------------------------------------------------------


@bp.get("/technicians")
def technicians():
    """Technicians, who is online now and who has a live session."""
    rows = people.technicians_overview(db.session, now_utc())
    return render_template("admin/technicians.html", rows=rows)


@bp.route("/technicians/new", methods=["GET", "POST"])
def new_technician():
    """Create a technician: a one-time password shown now, or an e-mailed link."""
    form = TechnicianForm()
    form.set_groups(all_groups())
    if not form.validate_on_submit():
        return render_template("admin/technician_form.html", form=form, technician=None), (
            422 if form.errors else 200
        )
    password = people.one_time_password()
    try:
        technician = people.create_technician(
            db.session,
            current_user,
            name=form.name.data.strip(),
            email=form.email.data,
            role=form.role.data,
            group=db.session.get(TechnicianGroup, form.group.data) if form.group.data else None,
            password=password,
            password_method=current_app.config["LENS_PASSWORD_METHOD"],
        )
    except people.AdminRefused as exc:
        db.session.rollback()
        form.email.errors.append(refused(exc))
        return render_template("admin/technician_form.html", form=form, technician=None), 422
    db.session.commit()
    if form.invite.data == INVITE_EMAIL:
        return sent_or_shown(technician, password)
    return render_template("admin/one_time.html", technician=technician, password=password)


def sent_or_shown(technician: Technician, password: str):
    """E-mail the set-password link; if the mail server fails, show the password instead."""
    error = send_welcome(technician)
    if error is None:
        flash(_("A link to set a password was e-mailed to %(email)s.", email=technician.email))
        return redirect(url_for("admin.technicians"))
    return render_template(
        "admin/one_time.html", technician=technician, password=password, mail_error=error
    )


@bp.route("/technicians/<int:technician_id>", methods=["GET", "POST"])
def edit_technician(technician_id: int):
    """Edit a technician: name, e-mail, role, group."""
    technician = get_or_404(Technician, technician_id)
    form = TechnicianForm(obj=technician if request.method == "GET" else None)
    form.set_groups(all_groups())
    if request.method == "GET":
        form.group.data = technician.group_id or 0
    if not form.validate_on_submit():
        status = 422 if form.errors else 200
        return render_template(
            "admin/technician_form.html", form=form, technician=technician
        ), status
    try:
        changed = people.update_technician(
            db.session,
            current_user,
            technician,
            name=form.name.data.strip(),
            email=form.email.data,
            role=form.role.data,
            group=db.session.get(TechnicianGroup, form.group.data) if form.group.data else None,
        )
    except people.AdminRefused as exc:
        db.session.rollback()
        flash(refused(exc), "error")
        return render_template("admin/technician_form.html", form=form, technician=technician), 409
    db.session.commit()
    if changed:
        flash(
            _(
                "%(name)s saved. Group changes apply to sessions started from now.",
                name=technician.name,
            )
        )
    return redirect(url_for("admin.technicians"))


@bp.post("/technicians/<int:technician_id>/password")
def reset_password(technician_id: int):
    """Reset the password: a new one-time one, to be changed at the next log-in."""
    technician = get_or_404(Technician, technician_id)
    password = people.one_time_password()
    people.reset_password(
        db.session, current_user, technician, password, current_app.config["LENS_PASSWORD_METHOD"]
    )
    db.session.commit()
    sign_out_everywhere(technician.id, revocation.PASSWORD_CHANGED)
    keep_own_login(technician)
    if request.form.get("via") == INVITE_EMAIL:
        return sent_or_shown(technician, password)
    return render_template("admin/one_time.html", technician=technician, password=password)


def keep_own_login(technician: Technician) -> None:
    """An administrator who ended their own log-ins stays logged in here (a new cookie)."""
    if technician.id == current_user.id:
        keep_this_login(technician)


@bp.post("/technicians/<int:technician_id>/sign-out")
def sign_out(technician_id: int):
    """Log out everywhere: every log-in of the technician ends, open consoles included."""
    technician = get_or_404(Technician, technician_id)
    people.end_all_logins(db.session, current_user, technician)
    db.session.commit()
    sign_out_everywhere(technician.id, revocation.BY_ADMIN)
    keep_own_login(technician)
    flash(_("%(name)s is logged out everywhere.", name=technician.name))
    return redirect(url_for("admin.edit_technician", technician_id=technician.id))


@bp.post("/technicians/<int:technician_id>/two-factor/reset")
def reset_second_factor(technician_id: int):
    """Reset two-step verification (a lost phone): off, and every log-in ended."""
    technician = get_or_404(Technician, technician_id)
    if committed(lambda: people.reset_second_factor(db.session, current_user, technician)):
        sign_out_everywhere(technician.id, revocation.SECOND_FACTOR_CHANGED)
        flash(_("Two-step verification of %(name)s is reset.", name=technician.name))
    return redirect(url_for("admin.edit_technician", technician_id=technician.id))


@bp.route("/technicians/<int:technician_id>/deactivate", methods=["GET", "POST"])
def deactivate(technician_id: int):
    """Deactivate: logged out at once; live sessions handed on or ended."""
    technician = get_or_404(Technician, technician_id)
    form = DeactivateForm()
    others = [
        t
        for t in db.session.scalars(
            select(Technician).where(Technician.active.is_(True)).order_by(Technician.name)
        )
        if t.id != technician.id
    ]
    form.hand_to.choices = [(0, _("Nobody: end them"))] + [(t.id, t.name) for t in others]
    if not form.validate_on_submit():
        return render_template("admin/deactivate.html", form=form, technician=technician)
    receiver = db.session.get(Technician, form.hand_to.data) if form.hand_to.data else None
    try:
        touched = people.deactivate(db.session, current_user, technician, receiver, now_utc())
    except people.AdminRefused as exc:
        db.session.rollback()
        flash(refused(exc), "error")
        return render_template("admin/deactivate.html", form=form, technician=technician), 409
    db.session.commit()
    for lens_session in touched:
        stop_media(lens_session.id)
    sign_out_everywhere(technician.id, revocation.DEACTIVATED)
    flash(_("%(name)s is deactivated and logged out.", name=technician.name))
    return redirect(url_for("admin.technicians"))


@bp.post("/technicians/<int:technician_id>/reactivate")
def reactivate(technician_id: int):
    """Let a deactivated technician log in again."""
    technician = get_or_404(Technician, technician_id)
    if committed(lambda: people.reactivate(db.session, current_user, technician)):
        flash(_("%(name)s can log in again.", name=technician.name))
    return redirect(url_for("admin.technicians"))


# ----- groups -----------------------------------------------------------------------------


@bp.get("/groups")
def groups():
    """Groups and what their members may use."""
    return render_template("admin/groups.html", groups=all_groups())


@bp.route("/groups/new", methods=["GET", "POST"], defaults={"group_id": None})
@bp.route("/groups/<int:group_id>", methods=["GET", "POST"])
def edit_group(group_id: int | None):
    """Create or edit a group: its name, permission switches and recording."""
    group = get_or_404(TechnicianGroup, group_id) if group_id else None
    form = GroupForm()
    if request.method == "GET" and group is not None:
        form.name.data = group.name
        form.recording.data = people.recording_choice(group.permissions or ())
        for field, switch in zip(switch_fields(form), people.SWITCHES, strict=True):
            field.data = switch in (group.permissions or ())
    if not form.validate_on_submit():
        status = 422 if form.errors else 200
        return render_template("admin/group_form.html", form=form, group=group), status
    switches_on = [s for f, s in zip(switch_fields(form), people.SWITCHES, strict=True) if f.data]
    permissions = people.group_permissions(switches_on, form.recording.data)
    try:
        people.save_group(db.session, current_user, group, form.name.data.strip(), permissions)
    except people.AdminRefused as exc:
        db.session.rollback()
        form.name.errors.append(refused(exc))
        return render_template("admin/group_form.html", form=form, group=group), 422
    db.session.commit()
    flash(_("Group saved. The change applies to sessions started from now."))
    return redirect(url_for("admin.groups"))


@bp.post("/groups/<int:group_id>/delete")
def delete_group(group_id: int):
    """Delete an empty group."""
    group = get_or_404(TechnicianGroup, group_id)
    if committed(lambda: people.delete_group(db.session, current_user, group)):
        flash(_("Group deleted."))
    return redirect(url_for("admin.groups"))


# ----- settings ---------------------------------------------------------------------------


@bp.route("/settings", methods=["GET", "POST"])
def settings():
    """Settings, over the environment's defaults; each change audited."""
    errors: dict[str, str] = {}
    if request.method == "POST":
        section = request.form.get("section", "")
        changed = 0
        for spec in admin_settings.SPECS:
            if spec.section != section:
                continue
            try:
                value = admin_settings.parse(spec, request.form)
            except admin_settings.SettingInvalid as exc:
                errors[spec.key] = str(exc)
                continue
            changed += admin_settings.change_setting(db.session, spec.key, value, current_user)
        if not errors:
            db.session.commit()
            if changed:
                flash(_("Settings saved. They apply to sessions started from now."))
            return redirect(url_for("admin.settings", _anchor=f"section-{section}"))
        db.session.rollback()
        admin_settings.forget_cached()
    return render_template(
        "admin/settings.html",
        errors=errors,
        submitted=request.form if errors else None,
        specs=admin_settings.SPECS,
        sections=admin_settings.SECTIONS,
        languages=admin_settings.LANGUAGES,
        is_overridden=admin_settings.is_overridden,
    ), (422 if errors else 200)


@bp.post("/settings/<key>/reset")
def reset_setting(key: str):
    """Back to the environment's value."""
    if key not in admin_settings.SPEC_BY_KEY:
        abort(404)
    if admin_settings.reset_setting(db.session, key, current_user):
        db.session.commit()
        flash(_("Setting reset to the server's default."))
    return redirect(url_for("admin.settings"))


@bp.post("/settings/preview")
def preview_template():
    """A template filled with sample values, shown before it is saved (HTMX)."""
    key, _sep, language = request.form.get("field", "").partition(".")
    spec = admin_settings.SPEC_BY_KEY.get(key)
    if spec is None or not spec.placeholders or language not in admin_settings.LANGUAGES:
        abort(404)
    text = request.form.get(f"{key}.{language}", "")
    try:
        text = admin_settings._text(spec, text, multiline=True)
        filled = admin_settings.preview(spec, text) if text else ""
        error = None
    except admin_settings.SettingInvalid as exc:
        filled, error = "", str(exc)
    response = Response(
        render_template("admin/_preview.html", filled=filled, error=error, spec=spec)
    )
    response.headers["Vary"] = "HX-Request"
    return response


# ----- reports ----------------------------------------------------------------------------


def report_filter() -> tuple[ReportForm, reports.ReportFilter | None]:
    """The report form, bound to the query string, and the filter it asks for."""
    form = ReportForm(request.args)
    form.technician.choices = [(0, _("All"))] + [
        (t.id, t.name) for t in db.session.scalars(select(Technician).order_by(Technician.name))
    ]
    form.group.choices = [(0, _("All"))] + [(g.id, g.name) for g in all_groups()]
    form.channel.choices = [("", _("All"))] + [(c.value, c.value) for c in Channel]
    form.state.choices = [("", _("All"))] + [(s.value, s.value) for s in SessionState]
    form.console.choices = [("", _("All"))] + [(c, c) for c in CONSOLES if c != WEB_CONSOLE]
    if not form.validate():
        return form, None
    end = form.end.data or date.today()
    start = form.start.data or end - timedelta(days=29)
    if start > end or (end - start).days >= reports.MAX_DAYS:
        form.start.errors = [_("Choose a period of at most a year, From before Until.")]
        return form, None
    form.start.data, form.end.data = start, end
    return form, reports.ReportFilter(
        start=start,
        end=end,
        technician_id=form.technician.data or None,
        group_id=form.group.data or None,
        channel=form.channel.data or None,
        state=form.state.data or None,
        console=form.console.data or None,
    )


@bp.get("/reports")
def report():
    """Sessions in a period, filtered, with summary charts."""
    form, chosen = report_filter()
    if chosen is None:
        return render_template("admin/reports.html", form=form, rows=[], summary=None), 422
    rows = reports.report_rows(db.session, chosen)
    summary = reports.summary(rows, chosen)
    return render_template(
        "admin/reports.html",
        form=form,
        rows=rows,
        summary=summary,
        day_chart=reports.column_chart(summary["days"]),
        technician_charts=reports.technician_charts(summary),
        query=request.query_string.decode(),
    )


@bp.get("/reports.<any(csv, json):file_format>")
def export_report(file_format: str):
    """The report's rows as CSV or JSON."""
    form, chosen = report_filter()
    if chosen is None:
        abort(422)
    rows = reports.report_rows(db.session, chosen)
    name = f"lens-sessions-{chosen.start}-{chosen.end}.{file_format}"
    body = reports.to_csv(rows) if file_format == "csv" else reports.to_json(rows)
    mimetype = "text/csv" if file_format == "csv" else "application/json"
    return Response(
        body,
        mimetype=mimetype,
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def reported_session(session_id: int) -> LensSession:
    """A session that reports show (never one of the Web Console)."""
    lens_session = get_or_404(LensSession, session_id)
    if lens_session.console == WEB_CONSOLE:
        abort(404)
    return lens_session


@bp.get("/reports/sessions/<int:session_id>")
def report_session(session_id: int):
    """One session: its log, chat transcript, snapshots and recordings."""
    lens_session = reported_session(session_id)
    return render_template(
        "admin/session.html",
        s=lens_session,
        chat=list(db.session.scalars(session_chat(lens_session.id))),
        snapshots=list(db.session.scalars(session_snapshots(lens_session.id))),
        recordings=[
            r for r in db.session.scalars(session_recordings(lens_session.id)) if not r.is_running
        ],
    )


@bp.get("/reports/sessions/<int:session_id>/snapshots/<int:snapshot_id>.png")
def report_snapshot(session_id: int, snapshot_id: int):
    lens_session = reported_session(session_id)
    snapshot = get_or_404(Snapshot, snapshot_id)
    if snapshot.session_id != lens_session.id:
        abort(404)
    file = records.inside(Path(current_app.instance_path), snapshot.path)
    return send_file(file, mimetype=snapshot.mimetype, conditional=True)


@bp.get("/reports/sessions/<int:session_id>/recordings/<int:recording_id>.<any(webm, mkv):ext>")
def report_recording(session_id: int, recording_id: int, ext: str):
    lens_session = reported_session(session_id)
    recording = get_or_404(Recording, recording_id)
    if (
        recording.session_id != lens_session.id
        or recording.extension != ext
        or recording.is_running
    ):
        abort(404)
    file = records.inside(Path(current_app.config["LENS_RECORDINGS_PATH"]), recording.path)
    if not file.is_file():
        abort(404)
    return send_file(file, mimetype=recording.mimetype, conditional=True)


# ----- audit log --------------------------------------------------------------------------

AUDIT_KINDS = ("setting", "permission", "technician", "group")


def audit_query():
    kind = request.args.get("kind") if request.args.get("kind") in AUDIT_KINDS else None
    actor = database_id(request.args.get("actor"))
    text = (request.args.get("q") or "").strip()[:100] or None
    return audit_entries(kind, actor, text)


@bp.get("/audit")
def audit_log():
    """Who changed what, when, from what to what."""
    page = db.paginate(audit_query(), per_page=100, error_out=False)
    admins = db.session.scalars(select(Technician).order_by(Technician.name))
    return render_template(
        "admin/audit.html",
        page=page,
        kinds=AUDIT_KINDS,
        actors=admins,
        actor=database_id(request.args.get("actor")),
    )


@bp.get("/audit.csv")
def export_audit():
    """The filtered audit log as CSV."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["at", "actor", "kind", "target", "field", "before", "after"])
    for entry in db.session.scalars(audit_query().limit(50000)):
        row = [
            entry.at.isoformat(timespec="seconds"),
            entry.actor_name,
            entry.kind,
            entry.target,
            entry.field,
            entry.before or "",
            entry.after or "",
        ]
        writer.writerow([reports._cell(v) for v in row])
    return Response(
        out.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": 'attachment; filename="lens-audit.csv"'},
    )
