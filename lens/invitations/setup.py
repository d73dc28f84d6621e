"""Bind the invitation settings to an app once, at start-up, so that mistakes show there."""

from __future__ import annotations

from flask import Flask

from lens.invitations.sms import invitation_timeout, make_sms_backend, sms_template


def init_app(app: Flask) -> None:
    """Check the SMS template and time-out, build the SMS backend into app.extensions.

    Raises SmsConfigError (a message for the administrator) on a wrong setting, such as
    an unknown LENS_SMS_BACKEND, so that the app does not start half-configured. Importing
    this module (inside lens.invitations) also maps the Invitation model.
    """
    app.config["LENS_INVITATION_TIMEOUT"] = invitation_timeout(app.config)
    app.config["LENS_SMS_TEMPLATE"] = sms_template(app.config)
    app.extensions["lens.sms"] = make_sms_backend(app.config)
