"""Log-in, second-factor and password forms."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, StringField, SubmitField
from wtforms.validators import DataRequired, EqualTo, Length, ValidationError

from lens.auth import passwords

PASSWORD_PROBLEMS = {
    passwords.TOO_SHORT: _l("Use at least %(count)s characters.", count=passwords.MIN_LENGTH),
    passwords.TOO_LONG: _l("Use at most %(count)s characters.", count=passwords.MAX_LENGTH),
    passwords.COMMON: _l("This password is too common: it is among the first that are guessed."),
    passwords.PERSONAL: _l("Do not use your name or e-mail address as your password."),
    passwords.SIMPLE: _l("Use more different characters."),
}


def password_problem_text(problem: str) -> str:
    """The sentence that says why a password may not be used."""
    return str(PASSWORD_PROBLEMS[problem])


class LoginForm(FlaskForm):
    email = EmailField(_l("E-mail"), validators=[DataRequired(), Length(max=254)])
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=200)])
    submit = SubmitField(_l("Log in"))


class CodeForm(FlaskForm):
    """A six-digit code from the authenticator app."""

    code = StringField(
        _l("Code from your authenticator app"),
        validators=[DataRequired(), Length(max=12)],
        render_kw={
            "inputmode": "numeric",
            "autocomplete": "one-time-code",
            "pattern": "[0-9 ]*",
            "maxlength": "12",
        },
    )
    submit = SubmitField(_l("Verify"))


class PasswordForm(FlaskForm):
    password = PasswordField(
        _l("New password"), validators=[DataRequired(), Length(max=passwords.MAX_LENGTH)]
    )
    confirm = PasswordField(
        _l("Confirm password"),
        validators=[DataRequired(), EqualTo("password", message=_l("The passwords differ."))],
    )
    submit = SubmitField(_l("Save password"))

    def __init__(self, *args, email: str = "", name: str = "", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.account_email = email
        self.account_name = name

    def validate_password(self, field) -> None:
        """The password policy (lens.auth.passwords)."""
        problem = passwords.password_problem(
            field.data or "", email=self.account_email, name=self.account_name
        )
        if problem is not None:
            raise ValidationError(password_problem_text(problem))


class PasswordChangeForm(PasswordForm):
    """A logged-in account's password change: the current password proves it is its owner."""

    current = PasswordField(
        _l("Current password"),
        validators=[DataRequired(), Length(max=200)],
        render_kw={"autocomplete": "current-password"},
    )
