"""E-mail invitations: address checks, the message itself, mailto: links and SMTP sending."""

import html
import smtplib
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import quote, urlsplit

import flask_mail
from email_validator import EmailNotValidError, validate_email

from lens.invitations.errors import InvalidEmailAddress, InvitationSendError
from lens.invitations.text import fill_template, has_control_characters, one_line

MAX_EMAIL_LENGTH = 254


@dataclass(frozen=True)
class InvitationMessage:
    """An invitation e-mail: one-line subject, plain-text body and HTML body."""

    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class InvitationWording:
    """The sentences of an invitation; pass translated ones, placeholders stay as they are.

    Placeholders: {name} customer, {technician}, {pin}, {minutes}; the link is the button.
    """

    subject: str = "{technician} invites you to a live video support session"
    greeting: str = "Hello {name},"
    intro: str = (
        "{technician} would like to see the problem through your phone's camera. "
        "Open the link below on your phone; there is nothing to install."
    )
    button: str = "Join the support session"
    pin_line: str = "Your PIN: {pin}"
    expiry_line: str = "The link and PIN are valid for {minutes} minutes."
    fallback_line: str = "If the button does not work, copy this link into your browser:"
    lang: str = "en"


def normalise_email(raw: str) -> str:
    """Return raw as a normalised e-mail address, or raise InvalidEmailAddress."""
    if "\r" in raw or "\n" in raw or has_control_characters(raw):
        raise InvalidEmailAddress("The e-mail address contains characters that are not allowed.")
    text = raw.strip()
    if not text:
        raise InvalidEmailAddress("Enter an e-mail address.")
    if len(text) > MAX_EMAIL_LENGTH:
        raise InvalidEmailAddress(
            f"The e-mail address is too long (at most {MAX_EMAIL_LENGTH} characters)."
        )
    try:
        # No SMTPUTF8: Flask-Mail does not request it, so non-ASCII local parts would bounce.
        result = validate_email(text, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise InvalidEmailAddress(f"The e-mail address is not valid: {exc}") from exc
    return result.normalized


def _check_join_url(join_url: str) -> None:
    parts = urlsplit(join_url)
    if parts.scheme not in ("https", "http") or not parts.netloc or one_line(join_url) != join_url:
        raise ValueError(f"join_url must be an absolute http(s) URL, not {join_url!r}")


def compose_invitation(
    customer_name: str,
    join_url: str,
    pin: str,
    expires_minutes: int,
    *,
    technician_name: str,
    wording: InvitationWording | None = None,
    company: str = "",
) -> InvitationMessage:
    """Build the invitation e-mail with the join link as a button; names are escaped."""
    _check_join_url(join_url)
    wording = wording or InvitationWording()
    fields = {
        "name": one_line(customer_name),
        "technician": one_line(technician_name),
        "pin": one_line(pin),
        "minutes": str(int(expires_minutes)),
        "company": one_line(company),
    }

    def text_of(template: str) -> str:
        return fill_template(template, fields)

    def html_of(template: str) -> str:
        return fill_template(template, fields, escape=html.escape)

    subject = one_line(text_of(wording.subject))
    text = "\n\n".join(
        [
            text_of(wording.greeting),
            text_of(wording.intro),
            join_url,
            text_of(wording.pin_line),
            text_of(wording.expiry_line),
        ]
    )
    href = html.escape(join_url, quote=True)
    body = f"""<!doctype html>
<html lang="{html.escape(wording.lang, quote=True)}">
<head><meta charset="utf-8"><title>{html.escape(subject)}</title></head>
<body style="font-family: sans-serif; font-size: 16px; line-height: 1.5; color: #1a1a1a;">
<p>{html_of(wording.greeting)}</p>
<p>{html_of(wording.intro)}</p>
<p><a href="{href}" role="button" style="display: inline-block; padding: 14px 24px; \
background: #0b5fff; color: #ffffff; text-decoration: none; border-radius: 6px; \
font-weight: bold;">{html_of(wording.button)}</a></p>
<p style="font-size: 20px;"><strong>{html_of(wording.pin_line)}</strong></p>
<p>{html_of(wording.expiry_line)}</p>
<p style="font-size: 13px; color: #555555;">{html_of(wording.fallback_line)}<br>
<a href="{href}">{html.escape(join_url)}</a></p>
</body>
</html>
"""
    return InvitationMessage(subject=subject, text=text, html=body)


def mailto_url(to: str, subject: str, body: str) -> str:
    """Return a mailto: link (RFC 6068) that opens the technician's own mail client prefilled."""
    crlf_body = "\r\n".join(body.splitlines())
    query = f"subject={quote(one_line(subject), safe='')}&body={quote(crlf_body, safe='')}"
    return f"mailto:{quote(one_line(to), safe='@')}?{query}"


class _TimeoutConnection(flask_mail.Connection):
    """Flask-Mail's Connection, but every socket operation gives up after timeout seconds."""

    def __init__(self, mail: flask_mail.Mail, timeout: float) -> None:
        super().__init__(mail)
        self.timeout = timeout

    def configure_host(self) -> smtplib.SMTP | smtplib.SMTP_SSL:
        """Connect and log in like Flask-Mail 0.10 does, passing the time-out to smtplib."""
        host: smtplib.SMTP | smtplib.SMTP_SSL
        if self.mail.use_ssl:
            host = smtplib.SMTP_SSL(self.mail.server, self.mail.port, timeout=self.timeout)
        else:
            host = smtplib.SMTP(self.mail.server, self.mail.port, timeout=self.timeout)
        host.set_debuglevel(int(self.mail.debug))
        if self.mail.use_tls:
            host.starttls()
        if self.mail.username and self.mail.password:
            host.login(self.mail.username, self.mail.password)
        return host

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Say QUIT after success; after a failure just close, so the first error is kept."""
        if self.host is None:
            return
        if exc_type is None:
            self.host.quit()
        else:
            self.host.close()


def _timed_out(exc: BaseException | None) -> bool:
    """Return whether exc is, or was raised while handling, a socket time-out."""
    while exc is not None:
        if isinstance(exc, TimeoutError):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def send_email(
    mail: flask_mail.Mail,
    sender: str | tuple[str, str] | None,
    to: str,
    message: InvitationMessage,
    timeout: float,
) -> None:
    """Send the invitation through the SMTP server in MAIL_*; raise InvitationSendError.

    Call it inside a Flask app context (Flask-Mail signals on current_app); sender None
    means MAIL_DEFAULT_SENDER.
    """
    recipient = normalise_email(to)
    envelope = flask_mail.Message(
        subject=one_line(message.subject),
        recipients=[recipient],
        body=message.text,
        html=message.html,
        sender=sender,
    )
    if not envelope.sender:
        raise InvitationSendError("No sender address is configured (MAIL_DEFAULT_SENDER).")
    # mail.connect() only builds the Connection; it connects on entering the with block.
    settings = mail.connect().mail
    try:
        with _TimeoutConnection(settings, timeout) as connection:
            connection.send(envelope)
    except flask_mail.BadHeaderError as exc:
        raise InvitationSendError("The sender or subject contains a line break.") from exc
    except (smtplib.SMTPException, OSError) as exc:
        raise InvitationSendError(_smtp_failure(exc, timeout)) from exc


def _smtp_failure(exc: smtplib.SMTPException | OSError, timeout: float) -> str:
    """Return what the technician is told about a failed SMTP exchange."""
    if _timed_out(exc):
        return f"The e-mail server did not answer within {timeout:g} seconds."
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        reasons = "; ".join(_smtp_reply(code, text) for code, text in exc.recipients.values())
        return f"The e-mail server refused the address: {reasons}"
    if isinstance(exc, smtplib.SMTPResponseException):
        reply = _smtp_reply(exc.smtp_code, exc.smtp_error)
        return f"The e-mail server refused the message: {reply}"
    return f"Could not reach the e-mail server: {exc}"


def _smtp_reply(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {one_line(text)}"
