"""The customer's PIN form."""

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import StringField, SubmitField
from wtforms.validators import DataRequired, Length


class PinForm(FlaskForm):
    pin = StringField(_l("PIN"), validators=[DataRequired(), Length(max=12)])
    submit = SubmitField(_l("Connect"))
