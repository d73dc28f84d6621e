"""The New session dialog's form."""

from __future__ import annotations

from collections.abc import Sequence

from email_validator import EmailNotValidError, validate_email
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import StringField, SubmitField
from wtforms.validators import DataRequired, Length, Optional, Regexp, ValidationError

_NO_CONTROL = Regexp(r"^[^\x00-\x1f\x7f]*$", message=_l("Control characters are not allowed."))


def _email_check(form: FlaskForm, field: StringField) -> None:
    if field.data:
        try:
            field.data = validate_email(field.data, check_deliverability=False).normalized
        except EmailNotValidError as exc:
            raise ValidationError(_l("Enter a valid e-mail address.")) from exc


class NewSessionForm(FlaskForm):
    """Name plus the optional fields; the tab's button says which channel."""

    name = StringField(_l("Name"), validators=[DataRequired(), Length(max=120), _NO_CONTROL])
    phone = StringField(
        _l("Phone"),
        validators=[Optional(), Length(max=32), Regexp(r"^[0-9+()./ -]*$",
                                                       message=_l("Enter a phone number."))],
    )
    email = StringField(_l("E-mail"), validators=[Optional(), Length(max=254), _email_check])
    ticket_id = StringField(_l("Ticket ID"), validators=[Optional(), Length(max=64), _NO_CONTROL])
    create_pin = SubmitField(_l("Create PIN"))


def new_session_form(custom_labels: Sequence[str]) -> NewSessionForm:
    """The form with one text field per configured custom field."""

    class Form(NewSessionForm):
        pass

    for index, label in enumerate(custom_labels):
        setattr(
            Form,
            f"custom_{index}",
            StringField(label, validators=[Optional(), Length(max=120), _NO_CONTROL]),
        )
    return Form()


def custom_values(form: NewSessionForm, custom_labels: Sequence[str]) -> dict[str, str]:
    """The filled-in custom fields, by label."""
    values = {}
    for index, label in enumerate(custom_labels):
        value = (getattr(form, f"custom_{index}").data or "").strip()
        if value:
            values[label] = value
    return values
