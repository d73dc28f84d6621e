"""Invitations: SMS, e-mail, mailto: links and QR codes that bring a customer to a session."""

from lens.invitations.errors import (
    InvalidEmailAddress,
    InvalidPhoneNumber,
    InvitationError,
    InvitationSendError,
    SmsConfigError,
)
from lens.invitations.mail import (
    InvitationMessage,
    InvitationWording,
    compose_invitation,
    mailto_url,
    normalise_email,
    send_email,
)
from lens.invitations.mask import mask_destination
from lens.invitations.models import Invitation, InvitationOutcome
from lens.invitations.phone import normalise_phone
from lens.invitations.qr import qr_svg
from lens.invitations.records import (
    create_session_once,
    deliver_invitation,
    record_invitation,
    session_for_request_key,
)
from lens.invitations.sending import Outcome, send_with_timeout
from lens.invitations.sms import (
    DEFAULT_SMS_TEMPLATE,
    LogSmsBackend,
    SmsBackend,
    TwilioSmsBackend,
    WebhookSmsBackend,
    invitation_timeout,
    make_sms_backend,
    render_sms,
    sms_template,
)

__all__ = [
    "DEFAULT_SMS_TEMPLATE",
    "InvalidEmailAddress",
    "InvalidPhoneNumber",
    "Invitation",
    "InvitationError",
    "InvitationMessage",
    "InvitationOutcome",
    "InvitationSendError",
    "InvitationWording",
    "LogSmsBackend",
    "Outcome",
    "SmsBackend",
    "SmsConfigError",
    "TwilioSmsBackend",
    "WebhookSmsBackend",
    "compose_invitation",
    "create_session_once",
    "deliver_invitation",
    "invitation_timeout",
    "mailto_url",
    "make_sms_backend",
    "mask_destination",
    "normalise_email",
    "normalise_phone",
    "qr_svg",
    "record_invitation",
    "render_sms",
    "send_email",
    "send_with_timeout",
    "session_for_request_key",
    "sms_template",
]
