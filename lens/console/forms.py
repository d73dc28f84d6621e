"""The New session dialog's form: Name, the optional fields, and one channel per tab."""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence

from email_validator import EmailNotValidError, validate_email
from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import Field, HiddenField, RadioField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import AnyOf, DataRequired, Length, Optional, Regexp, ValidationError

from lens.i18n import field_label
from lens.invitations import InvitationError, normalise_email, normalise_phone
from lens.sessions.models import Channel

_NO_CONTROL = Regexp(r"^[^\x00-\x1f\x7f]*$", message=_l("Control characters are not allowed."))

EMAIL_VIA_CLIENT = "client"
EMAIL_VIA_SERVER = "server"

# The invitation checks explain in English; these are the same sentences, marked so that
# they are translated. A sentence missing here is shown as it is.
_CHECK_MESSAGES = {
    "Enter a phone number.": _l("Enter a phone number."),
    "The phone number contains characters that are not allowed.": _l(
        "The phone number contains characters that are not allowed."
    ),
    "The phone number is too long (at most 32 characters).": _l(
        "The phone number is too long (at most 32 characters)."
    ),
    "This is not a phone number; include the country code, e.g. +31 6 12345678.": _l(
        "This is not a phone number; include the country code, e.g. +31 6 12345678."
    ),
    "A phone number with an extension cannot receive an SMS.": _l(
        "A phone number with an extension cannot receive an SMS."
    ),
    "This phone number has the wrong number of digits.": _l(
        "This phone number has the wrong number of digits."
    ),
    "This is not a valid phone number; check the digits and the country code.": _l(
        "This is not a valid phone number; check the digits and the country code."
    ),
    "Enter an e-mail address.": _l("Enter an e-mail address."),
    "The e-mail address contains characters that are not allowed.": _l(
        "The e-mail address contains characters that are not allowed."
    ),
    "The e-mail address is too long (at most 254 characters).": _l(
        "The e-mail address is too long (at most 254 characters)."
    ),
}


def _check_message(error: InvitationError) -> str:
    if error.message in _CHECK_MESSAGES:
        return str(_CHECK_MESSAGES[error.message])
    if error.message.startswith("The e-mail address is not valid"):
        return gettext("Enter a valid e-mail address.")
    return error.message


def _email_check(form: FlaskForm, field: StringField) -> None:
    if field.data:
        try:
            field.data = validate_email(field.data, check_deliverability=False).normalized
        except EmailNotValidError as exc:
            raise ValidationError(_l("Enter a valid e-mail address.")) from exc


def _new_request_key() -> str:
    return secrets.token_urlsafe(24)


class NewSessionForm(FlaskForm):
    """Name plus the optional fields; the pressed button's channel says how to invite."""

    default_region = "NL"

    name = StringField(_l("Name"), validators=[DataRequired(), Length(max=120), _NO_CONTROL])
    phone = StringField(
        _l("Phone"),
        validators=[
            Optional(),
            Length(max=32),
            Regexp(r"^[0-9+()./ -]*$", message=_l("Enter a phone number.")),
        ],
    )
    email = StringField(_l("E-mail"), validators=[Optional(), Length(max=254), _email_check])
    ticket_id = StringField(_l("Ticket ID"), validators=[Optional(), Length(max=64), _NO_CONTROL])
    email_via = RadioField(
        _l("How to send the e-mail"),
        choices=[
            SelectChoice(EMAIL_VIA_CLIENT, _l("Send via my own e-mail client")),
            SelectChoice(EMAIL_VIA_SERVER, _l("Send via the Lens server")),
        ],
        default=EMAIL_VIA_CLIENT,
    )
    # Sent by the tab's submit button (name="channel"); absent means Create PIN.
    channel = StringField(default=Channel.PIN, validators=[AnyOf([c.value for c in Channel])])
    # One per dialog: a repeated POST (a double click) finds the session the first made.
    request_key = HiddenField(
        default=_new_request_key,
        validators=[Optional(), Regexp(r"^[A-Za-z0-9_-]{16,64}$")],
    )

    TAB_FIELDS = ("phone", "email", "email_via", "channel", "request_key", "csrf_token")

    def common_fields(self) -> Iterator[Field]:
        """The fields above the tabs: Name, Ticket ID and the custom fields."""
        return (field for field in self if field.name not in self.TAB_FIELDS)

    def validate_phone(self, field: StringField) -> None:
        """For Send SMS, a phone number is needed, normalised to E.164."""
        if self.channel.data != Channel.SMS or field.errors:
            return
        try:
            field.data = normalise_phone(field.data or "", self.default_region)
        except InvitationError as exc:
            raise ValidationError(_check_message(exc)) from exc

    def validate_email(self, field: StringField) -> None:
        """For Send email, an address is needed that an SMTP server accepts."""
        if self.channel.data != Channel.EMAIL or field.errors:
            return
        try:
            field.data = normalise_email(field.data or "")
        except InvitationError as exc:
            raise ValidationError(_check_message(exc)) from exc

    def validate(self, extra_validators=None) -> bool:
        """The common checks, then what the chosen channel needs (a phone or an address)."""
        valid = super().validate(extra_validators)
        needed = {Channel.SMS: self.phone, Channel.EMAIL: self.email}.get(self.channel.data)
        if needed is not None and not (needed.data or "").strip() and not needed.errors:
            message = (
                _l("Enter a phone number.")
                if needed is self.phone
                else _l("Enter an e-mail address.")
            )
            needed.errors = [*needed.errors, str(message)]
            valid = False
        return valid

    @property
    def sends(self) -> bool:
        """Whether this submit makes the server send something (SMS, or e-mail over SMTP)."""
        return self.channel.data == Channel.SMS or (
            self.channel.data == Channel.EMAIL and self.email_via.data == EMAIL_VIA_SERVER
        )


def new_session_form(custom_labels: Sequence[str], default_region: str = "NL") -> NewSessionForm:
    """The form with one text field per configured custom field."""

    class Form(NewSessionForm):
        pass

    Form.default_region = default_region
    for index, label in enumerate(custom_labels):
        setattr(
            Form,
            f"custom_{index}",
            StringField(field_label(label), validators=[Optional(), Length(max=120), _NO_CONTROL]),
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
