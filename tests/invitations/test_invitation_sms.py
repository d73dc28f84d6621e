"""SMS invitations: backends against a local HTTP stand-in, settings and the text template."""

import base64
import logging
import time
from urllib.parse import parse_qs

import pytest
from invitation_servers import HttpStub, free_port

from lens.invitations.errors import InvitationSendError, SmsConfigError
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

ACCOUNT_SID = "AC0123456789abcdef0123456789abcdef"
AUTH_TOKEN = "test-auth-token"
TWILIO_CREATED = {
    "sid": "SM0123456789abcdef0123456789abcdef",
    "account_sid": ACCOUNT_SID,
    "status": "queued",
    "to": "+31612345678",
    "from": "+3197010203040",
    "body": "hi",
}


def twilio_backend(stub: HttpStub, timeout: float = 5, **sender: str) -> TwilioSmsBackend:
    """A Twilio backend whose API base URL is the local stand-in."""
    return TwilioSmsBackend(
        ACCOUNT_SID,
        AUTH_TOKEN,
        api_base_url=stub.url,
        timeout=timeout,
        **(sender or {"from_number": "+3197010203040"}),
    )


def test_twilio_posts_the_message_with_basic_auth(http_stub: HttpStub) -> None:
    http_stub.respond(201, TWILIO_CREATED)
    twilio_backend(http_stub).send("+31612345678", "Join: https://x.test/j/1", "S-1")

    [request] = http_stub.requests
    assert request.method == "POST"
    assert request.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    scheme, _, credentials = request.headers["Authorization"].partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(credentials).decode() == f"{ACCOUNT_SID}:{AUTH_TOKEN}"
    form = parse_qs(request.body.decode(), strict_parsing=True)
    assert form == {
        "To": ["+31612345678"],
        "From": ["+3197010203040"],
        "Body": ["Join: https://x.test/j/1"],
    }


def test_twilio_can_send_through_a_messaging_service(http_stub: HttpStub) -> None:
    http_stub.respond(201, TWILIO_CREATED)
    backend = twilio_backend(http_stub, messaging_service_sid="MG0123")
    backend.send("+31612345678", "hi", "S-1")

    form = parse_qs(http_stub.requests[0].body.decode())
    assert form["MessagingServiceSid"] == ["MG0123"]
    assert "From" not in form


def test_twilio_error_carries_the_provider_message(http_stub: HttpStub) -> None:
    http_stub.respond(
        500,
        {
            "code": 21211,
            "message": "The 'To' number +31612345678 is not a valid phone number.",
            "more_info": "https://www.twilio.com/docs/errors/21211",
            "status": 500,
        },
    )
    with pytest.raises(InvitationSendError) as caught:
        twilio_backend(http_stub).send("+31612345678", "hi", "S-1")
    assert caught.value.message == (
        "Twilio refused the SMS: The 'To' number +31612345678 is not a valid phone number."
        " (error 21211)"
    )


def test_twilio_timeout_fails_within_the_timeout(http_stub: HttpStub) -> None:
    http_stub.hold = True
    timeout = 0.5
    started = time.monotonic()
    with pytest.raises(InvitationSendError) as caught:
        twilio_backend(http_stub, timeout=timeout).send("+31612345678", "hi", "S-1")
    elapsed = time.monotonic() - started
    assert timeout <= elapsed < timeout + 1.5
    assert caught.value.message == "Twilio did not answer within 0.5 seconds."
    assert len(http_stub.requests) == 1


def test_twilio_refused_connection_fails() -> None:
    backend = TwilioSmsBackend(
        ACCOUNT_SID,
        AUTH_TOKEN,
        from_number="+3197010203040",
        api_base_url=f"http://127.0.0.1:{free_port()}",
        timeout=5,
    )
    started = time.monotonic()
    with pytest.raises(InvitationSendError) as caught:
        backend.send("+31612345678", "hi", "S-1")
    assert time.monotonic() - started < 2
    assert caught.value.message.startswith("Could not reach Twilio: ")


def test_twilio_needs_a_sender() -> None:
    with pytest.raises(SmsConfigError, match="LENS_TWILIO_FROM"):
        TwilioSmsBackend(ACCOUNT_SID, AUTH_TOKEN)


def test_webhook_posts_json_with_the_secret(http_stub: HttpStub) -> None:
    http_stub.respond(202, {"queued": True})
    backend = WebhookSmsBackend(f"{http_stub.url}/sms", "s3cret", timeout=5)
    backend.send("+31612345678", "Join: https://x.test/j/1 (PIN 123456)", "S-42")

    [request] = http_stub.requests
    assert request.path == "/sms"
    assert request.headers["X-Lens-Secret"] == "s3cret"
    assert request.headers["Content-Type"] == "application/json"
    assert request.json() == {
        "to": "+31612345678",
        "body": "Join: https://x.test/j/1 (PIN 123456)",
        "session_id": "S-42",
    }


def test_webhook_non_2xx_is_an_error(http_stub: HttpStub) -> None:
    http_stub.respond(403, {"error": "bad secret"})
    backend = WebhookSmsBackend(http_stub.url, "wrong", timeout=5)
    with pytest.raises(InvitationSendError) as caught:
        backend.send("+31612345678", "hi", "S-1")
    assert caught.value.message == 'The SMS webhook answered HTTP 403: {"error": "bad secret"}'


def test_webhook_timeout_fails_within_the_timeout(http_stub: HttpStub) -> None:
    http_stub.hold = True
    timeout = 0.5
    started = time.monotonic()
    with pytest.raises(InvitationSendError) as caught:
        WebhookSmsBackend(http_stub.url, "s", timeout=timeout).send("+31612345678", "hi", "S")
    elapsed = time.monotonic() - started
    assert timeout <= elapsed < timeout + 1.5
    assert caught.value.message == "the SMS webhook did not answer within 0.5 seconds."


def test_webhook_refused_connection_fails() -> None:
    backend = WebhookSmsBackend(f"http://127.0.0.1:{free_port()}/sms", "s", timeout=5)
    with pytest.raises(InvitationSendError, match="Could not reach the SMS webhook"):
        backend.send("+31612345678", "hi", "S-1")


def test_log_backend_writes_the_message_to_the_log(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("lens.test.sms")
    with caplog.at_level(logging.INFO, logger="lens.test.sms"):
        LogSmsBackend(logger).send("+31612345678", "Join: https://x.test/j/1", "S-7")
    [record] = caplog.records
    assert record.name == "lens.test.sms"
    assert record.getMessage() == "SMS for session S-7 to +31612345678: Join: https://x.test/j/1"


def test_default_backend_is_the_log() -> None:
    backend = make_sms_backend({})
    assert isinstance(backend, LogSmsBackend)
    assert isinstance(backend, SmsBackend)


def test_make_twilio_backend_from_settings() -> None:
    backend = make_sms_backend(
        {
            "LENS_SMS_BACKEND": "twilio",
            "LENS_TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "LENS_TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "LENS_TWILIO_FROM": "+3197010203040",
            "LENS_TWILIO_API_BASE_URL": "http://127.0.0.1:9/",
            "LENS_INVITATION_TIMEOUT": "3.5",
        }
    )
    assert isinstance(backend, TwilioSmsBackend)
    assert backend.timeout == 3.5
    assert backend.from_number == "+3197010203040"
    assert backend.client.api.base_url == "http://127.0.0.1:9"


def test_make_webhook_backend_from_settings() -> None:
    backend = make_sms_backend(
        {
            "LENS_SMS_BACKEND": "webhook",
            "LENS_SMS_WEBHOOK_URL": "https://sms.example.com/send",
            "LENS_SMS_WEBHOOK_SECRET": "s3cret",
        }
    )
    assert isinstance(backend, WebhookSmsBackend)
    assert (backend.url, backend.secret, backend.timeout) == (
        "https://sms.example.com/send",
        "s3cret",
        10.0,
    )


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"LENS_SMS_BACKEND": "carrier-pigeon"}, "LENS_SMS_BACKEND='carrier-pigeon'"),
        ({"LENS_SMS_BACKEND": "twilio"}, "LENS_TWILIO_FROM"),
        (
            {"LENS_SMS_BACKEND": "twilio", "LENS_TWILIO_FROM": "+3197010203040"},
            "LENS_TWILIO_ACCOUNT_SID",
        ),
        (
            {
                "LENS_SMS_BACKEND": "twilio",
                "LENS_TWILIO_FROM": "+3197010203040",
                "LENS_TWILIO_ACCOUNT_SID": ACCOUNT_SID,
                "LENS_TWILIO_AUTH_TOKEN": "  ",
            },
            "LENS_TWILIO_AUTH_TOKEN",
        ),
        ({"LENS_SMS_BACKEND": "webhook", "LENS_SMS_WEBHOOK_SECRET": "s"}, "LENS_SMS_WEBHOOK_URL"),
        (
            {"LENS_SMS_BACKEND": "webhook", "LENS_SMS_WEBHOOK_URL": "ftp://x"},
            "LENS_SMS_WEBHOOK_URL must be an http(s) URL",
        ),
        (
            {"LENS_SMS_BACKEND": "webhook", "LENS_SMS_WEBHOOK_URL": "https://x.test"},
            "LENS_SMS_WEBHOOK_SECRET",
        ),
        ({"LENS_INVITATION_TIMEOUT": "soon"}, "LENS_INVITATION_TIMEOUT"),
        ({"LENS_INVITATION_TIMEOUT": "0"}, "LENS_INVITATION_TIMEOUT"),
    ],
)
def test_bad_settings_name_the_setting(settings: dict[str, object], named: str) -> None:
    with pytest.raises(SmsConfigError) as caught:
        make_sms_backend(settings)
    assert named in caught.value.message


def test_invitation_timeout_default() -> None:
    assert invitation_timeout({}) == 10.0
    assert invitation_timeout({"LENS_INVITATION_TIMEOUT": 4}) == 4.0


def test_render_sms_default_template() -> None:
    text = render_sms(DEFAULT_SMS_TEMPLATE, link="https://x.test/j/1", pin="123456", name="Jan")
    assert text == "Your support session: https://x.test/j/1 (PIN 123456)"


def test_render_sms_fills_name_on_one_line() -> None:
    text = render_sms("Hi {name}, {link} {{pin}} {pin}", link="L", pin="1", name="Jan\r\nX")
    assert text == "Hi Jan X, L {pin} 1"


@pytest.mark.parametrize(
    "template",
    [
        "{link} {secret}",
        "{}",
        "{0}",
        "{link.__class__}",
        "{link[0]}",
        "{pin!r}",
        "{pin:>20}",
        "{link",
    ],
)
def test_render_sms_rejects_other_placeholders(template: str) -> None:
    with pytest.raises(SmsConfigError, match="LENS_SMS_TEMPLATE"):
        render_sms(template, link="L", pin="1", name="N")


def test_sms_template_setting_is_checked() -> None:
    assert sms_template({}) == DEFAULT_SMS_TEMPLATE
    assert sms_template({"LENS_SMS_TEMPLATE": "Go to {link}"}) == "Go to {link}"
    with pytest.raises(SmsConfigError, match=r"\{token\}"):
        sms_template({"LENS_SMS_TEMPLATE": "Go to {link} {token}"})
