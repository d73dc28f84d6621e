"""SMS invitations: a backend per provider (Twilio, a generic webhook, the log) and the text."""

import logging
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

import requests
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from lens.invitations.errors import InvitationSendError, SmsConfigError
from lens.invitations.text import TemplateError, fill_template, one_line

DEFAULT_SMS_TEMPLATE = "Your support session: {link} (PIN {pin})"
DEFAULT_TIMEOUT = 10.0
SMS_BACKENDS = ("log", "twilio", "webhook")

_log = logging.getLogger(__name__)


@runtime_checkable
class SmsBackend(Protocol):
    """Sends one text message; raises InvitationSendError with the provider's reason."""

    def send(self, to: str, body: str, session_public_id: str) -> None:
        """Send body to the E.164 number to, on behalf of the session."""
        ...


class LogSmsBackend:
    """Writes each message to the log instead of sending it (the development default)."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or _log

    def send(self, to: str, body: str, session_public_id: str) -> None:
        """Log the message at INFO level."""
        self.logger.info("SMS for session %s to %s: %s", session_public_id, to, body)


class TwilioSmsBackend:
    """Sends through Twilio's Messages API with the official library."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        from_number: str | None = None,
        messaging_service_sid: str | None = None,
        api_base_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if not (from_number or messaging_service_sid):
            raise SmsConfigError(
                "Twilio needs LENS_TWILIO_FROM or LENS_TWILIO_MESSAGING_SERVICE_SID."
            )
        self.from_number = from_number
        self.messaging_service_sid = messaging_service_sid
        self.timeout = timeout
        self.client = Client(account_sid, auth_token, http_client=TwilioHttpClient(timeout=timeout))
        if api_base_url:
            # The Messages API lives on the "api" domain; pointing it elsewhere serves
            # gateways, proxies and the tests' local stand-in. TWILIO_EDGE/TWILIO_REGION
            # would rewrite that host name as if it were *.twilio.com, so they are off.
            self.client.api.base_url = api_base_url.rstrip("/")
            self.client.edge = None
            self.client.region = None

    def send(self, to: str, body: str, session_public_id: str) -> None:
        """POST the message to Twilio; raise InvitationSendError on any failure."""
        sender: dict[str, str] = {}
        if self.from_number:
            sender["from_"] = self.from_number
        if self.messaging_service_sid:
            sender["messaging_service_sid"] = self.messaging_service_sid
        try:
            message = self.client.messages.create(to=to, body=body, **sender)
        except TwilioRestException as exc:
            raise InvitationSendError(f"Twilio refused the SMS: {_twilio_reason(exc)}") from exc
        except TwilioServiceException as exc:
            reason = one_line(f"{exc.title}: {exc.detail or ''}".rstrip(": "))
            raise InvitationSendError(f"Twilio refused the SMS: {reason}") from exc
        except (TwilioException, requests.RequestException) as exc:
            raise InvitationSendError(_transport_failure("Twilio", exc, self.timeout)) from exc
        _log.info("Twilio accepted SMS %s for session %s", message.sid, session_public_id)


def _twilio_reason(exc: TwilioRestException) -> str:
    """Return Twilio's own message, without the library's "Unable to create record:" prefix."""
    reason = exc.msg.removeprefix("Unable to create record: ")
    code = f" (error {exc.code})" if exc.code and exc.code != exc.status else ""
    return one_line(reason) + code


def _transport_failure(provider: str, exc: BaseException, timeout: float) -> str:
    """Return what the technician is told when the provider could not be reached or timed out."""
    if isinstance(exc, requests.Timeout):
        return f"{provider} did not answer within {timeout:g} seconds."
    return f"Could not reach {provider}: {one_line(str(exc))}"


class WebhookSmsBackend:
    """POSTs {"to", "body", "session_id"} as JSON to a URL the operator runs."""

    def __init__(self, url: str, secret: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.url = url
        self.secret = secret
        self.timeout = timeout

    def send(self, to: str, body: str, session_public_id: str) -> None:
        """POST the message; any answer but 2xx raises InvitationSendError."""
        payload = {"to": to, "body": body, "session_id": session_public_id}
        try:
            response = requests.post(
                self.url,
                json=payload,
                headers={"X-Lens-Secret": self.secret},
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise InvitationSendError(
                _transport_failure("the SMS webhook", exc, self.timeout)
            ) from exc
        if not 200 <= response.status_code < 300:
            detail = one_line(response.text)[:200]
            raise InvitationSendError(
                f"The SMS webhook answered HTTP {response.status_code}: {detail}".rstrip(": ")
            )


def _setting(settings: Mapping[str, Any], name: str) -> str | None:
    """Return a setting as a stripped string; empty values (unset env vars) count as missing."""
    value = settings.get(name)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _required(settings: Mapping[str, Any], name: str, backend: str) -> str:
    value = _setting(settings, name)
    if value is None:
        raise SmsConfigError(f"LENS_SMS_BACKEND={backend} needs the setting {name}.")
    return value


def invitation_timeout(settings: Mapping[str, Any]) -> float:
    """Return LENS_INVITATION_TIMEOUT in seconds (default 10), or raise SmsConfigError."""
    raw = _setting(settings, "LENS_INVITATION_TIMEOUT")
    if raw is None:
        return DEFAULT_TIMEOUT
    try:
        timeout = float(raw)
    except ValueError:
        timeout = 0.0
    if not 0 < timeout <= 300:
        raise SmsConfigError(
            f"LENS_INVITATION_TIMEOUT must be a number of seconds between 0 and 300, not {raw!r}."
        )
    return timeout


def make_sms_backend(settings: Mapping[str, Any]) -> SmsBackend:
    """Build the SMS backend chosen by LENS_SMS_BACKEND (log, twilio or webhook)."""
    name = (_setting(settings, "LENS_SMS_BACKEND") or "log").lower()
    timeout = invitation_timeout(settings)
    if name == "log":
        return LogSmsBackend()
    if name == "twilio":
        from_number = _setting(settings, "LENS_TWILIO_FROM")
        service_sid = _setting(settings, "LENS_TWILIO_MESSAGING_SERVICE_SID")
        if not (from_number or service_sid):
            raise SmsConfigError(
                "LENS_SMS_BACKEND=twilio needs the setting LENS_TWILIO_FROM "
                "or LENS_TWILIO_MESSAGING_SERVICE_SID."
            )
        return TwilioSmsBackend(
            _required(settings, "LENS_TWILIO_ACCOUNT_SID", name),
            _required(settings, "LENS_TWILIO_AUTH_TOKEN", name),
            from_number=from_number,
            messaging_service_sid=service_sid,
            api_base_url=_http_url(settings, "LENS_TWILIO_API_BASE_URL"),
            timeout=timeout,
        )
    if name == "webhook":
        return WebhookSmsBackend(
            _http_url(settings, "LENS_SMS_WEBHOOK_URL")
            or _required(settings, "LENS_SMS_WEBHOOK_URL", name),
            _required(settings, "LENS_SMS_WEBHOOK_SECRET", name),
            timeout=timeout,
        )
    raise SmsConfigError(
        f"LENS_SMS_BACKEND={name!r} is not an SMS backend; use one of {', '.join(SMS_BACKENDS)}."
    )


def _http_url(settings: Mapping[str, Any], name: str) -> str | None:
    url = _setting(settings, name)
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SmsConfigError(f"{name} must be an http(s) URL, not {url!r}.")
    return url


def sms_template(settings: Mapping[str, Any]) -> str:
    """Return LENS_SMS_TEMPLATE (or the default), checked so a bad one fails at start-up."""
    template = _setting(settings, "LENS_SMS_TEMPLATE") or DEFAULT_SMS_TEMPLATE
    render_sms(template, link="https://example.invalid/j/x", pin="000000", name="")
    return template


def render_sms(
    template: str, *, link: str, pin: str, name: str, technician: str = "", company: str = ""
) -> str:
    """Fill {link}, {pin}, {name}, {technician} and {company} into template; other
    placeholders raise SmsConfigError."""
    fields = {
        "link": link,
        "pin": pin,
        "name": one_line(name),
        "technician": one_line(technician),
        "company": one_line(company),
    }
    try:
        return fill_template(template, fields)
    except TemplateError as exc:
        raise SmsConfigError(f"LENS_SMS_TEMPLATE: {exc}") from exc
