"""Errors raised by the invitation backends; each carries a message fit to show a technician."""


class InvitationError(Exception):
    """Base class: an invitation could not be prepared or sent."""

    code = "invitation_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidPhoneNumber(InvitationError):
    """The phone number typed by the technician cannot receive an SMS."""

    code = "invalid_phone_number"


class InvalidEmailAddress(InvitationError):
    """The e-mail address typed by the technician is not a usable address."""

    code = "invalid_email_address"


class InvitationSendError(InvitationError):
    """The e-mail server or SMS provider refused, failed or did not answer in time."""

    code = "invitation_send_failed"


class SmsConfigError(InvitationError):
    """The SMS settings are incomplete or wrong (a problem for the administrator)."""

    code = "sms_config_error"
