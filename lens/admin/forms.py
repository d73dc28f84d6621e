"""The Admin Center's forms (Flask-WTF: CSRF, limits, clear messages)."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, DateField, RadioField, SelectField, StringField, SubmitField
from wtforms.validators import DataRequired, Length, Optional, ValidationError

from lens import features
from lens.admin.people import RECORDING_CHOICES, ROLES, SWITCHES
from lens.auth.models import ROLE_ADMIN, ROLE_TECHNICIAN

ROLE_LABELS = {ROLE_TECHNICIAN: _l("Technician"), ROLE_ADMIN: _l("Administrator")}
SWITCH_LABELS = {
    features.SESSIONS: _l("Lens sessions"),
    features.CHANNEL_PIN: _l("Channel: PIN"),
    features.CHANNEL_SMS: _l("Channel: SMS"),
    features.CHANNEL_EMAIL: _l("Channel: e-mail"),
    features.CHANNEL_LINK: _l("Channel: link"),
    features.CONSOLE_TECHNICIAN: _l("Technician Console"),
    features.CONSOLE_WEB: _l("Web Console"),
    features.CHAT: _l("Chat"),
    features.HOLD: _l("Hold"),
    features.DISPLAY_SETTINGS: _l("Display settings"),
    features.FREEZE_DRAWING: _l("Freeze and drawing"),
    features.DEVICE_CONTROLS: _l("Flashlight and camera switch"),
    features.SNAPSHOT: _l("Snapshots"),
    features.TRANSFER: _l("Transfer"),
}
PERMISSION_LABELS = {
    **SWITCH_LABELS,
    features.RECORDING: _l("Recording"),
    features.RECORDING_FORCED: _l("Recording forced"),
}
RECORDING_LABELS = {
    "off": _l("Off"),
    "allowed": _l("Allowed"),
    "forced": _l("Forced: every session records from Start and cannot stop"),
}
INVITE_PASSWORD, INVITE_EMAIL = "password", "email"


def _normal_email(form, field) -> None:
    try:
        field.data = validate_email(field.data.strip(), check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValidationError(_l("Enter a valid e-mail address.")) from exc
    field.data = field.data.lower()


class TechnicianForm(FlaskForm):
    """Create or edit a technician."""

    name = StringField(_l("Name"), validators=[DataRequired(), Length(max=120)])
    email = StringField(_l("E-mail"), validators=[DataRequired(), Length(max=254), _normal_email])
    role = SelectField(_l("Role"), choices=[(r, ROLE_LABELS[r]) for r in ROLES])
    group = SelectField(_l("Group"), coerce=int)
    invite = RadioField(
        _l("First password"),
        choices=[
            (INVITE_PASSWORD, _l("Show a one-time password now")),
            (INVITE_EMAIL, _l("E-mail a link to set a password")),
        ],
        default=INVITE_PASSWORD,
    )
    submit = SubmitField(_l("Save"))

    def set_groups(self, groups) -> None:
        self.group.choices = [(0, _l("No group (every permission)"))] + [
            (g.id, g.name) for g in groups
        ]


class DeactivateForm(FlaskForm):
    hand_to = SelectField(_l("Hand their waiting and active sessions to"), coerce=int)
    submit = SubmitField(_l("Deactivate"))


class GroupForm(FlaskForm):
    """A group's name, switches and recording choice (the switches are added per field)."""

    name = StringField(_l("Group name"), validators=[DataRequired(), Length(max=80)])
    recording = RadioField(
        _l("Recording"),
        choices=[(c, RECORDING_LABELS[c]) for c in RECORDING_CHOICES],
        default="allowed",
    )
    submit = SubmitField(_l("Save"))


for _switch in SWITCHES:
    setattr(GroupForm, f"p_{_switch}", BooleanField(SWITCH_LABELS[_switch], default=True))


def switch_fields(form: GroupForm) -> list:
    return [getattr(form, f"p_{s}") for s in SWITCHES]


class ReportForm(FlaskForm):
    """The report's filters (a GET form: no CSRF)."""

    class Meta:
        csrf = False

    start = DateField(_l("From"), validators=[Optional()])
    end = DateField(_l("Until"), validators=[Optional()])
    technician = SelectField(_l("Technician"), coerce=int, validators=[Optional()])
    group = SelectField(_l("Group"), coerce=int, validators=[Optional()])
    channel = SelectField(_l("Channel"), validators=[Optional()])
    state = SelectField(_l("State"), validators=[Optional()])
    console = SelectField(_l("Console"), validators=[Optional()])
