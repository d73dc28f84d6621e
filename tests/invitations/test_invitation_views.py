"""Invitations through the consoles' New session dialog, against real local servers."""

from __future__ import annotations

import base64
import email
import re
import time
from datetime import timedelta
from email.message import EmailMessage
from email.policy import default as default_policy
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from invitation_servers import HttpStub, SmtpServer, free_port
from sqlalchemy import func, select

from lens.extensions import db
from lens.factory import create_app
from lens.invitations import Invitation, SmsConfigError
from lens.sessions import lifecycle
from lens.sessions.models import LensSession
from lens.timeutil import now_utc
from tests.conftest import Console

ACCOUNT_SID = "AC0123456789abcdef0123456789abcdef"
AUTH_TOKEN = "test-auth-token"
TWILIO_CREATED = {"sid": "SM0123456789abcdef0123456789abcdef", "status": "queued"}
KEY = re.compile(r'name="request_key" type="hidden" value="([^"]+)"')


# --- helpers -------------------------------------------------------------------------------


def submit(console: Console, channel: str, name: str = "Jane Customer", **fields: str):
    return console.post("/sessions", {"name": name, "channel": channel, **fields})


def pin_in(html: str) -> str:
    return re.search(r'data-pin="(\d{6})"', html).group(1)


def link_in_dialog(html: str) -> str:
    return re.search(r'id="join-link" type="text" readonly value="([^"]+)"', html).group(1)


def session_with_pin(app, pin: str) -> LensSession:
    with app.app_context():
        lens_session = db.session.scalar(select(LensSession).where(LensSession.pin == pin))
        assert lens_session is not None
        db.session.expunge(lens_session)
        return lens_session


def invitations_of(app, session_id: int) -> list[tuple[str, str, str, str, str | None]]:
    with app.app_context():
        rows = db.session.scalars(select(Invitation).where(Invitation.session_id == session_id))
        return [(i.channel, i.destination, i.masked_destination, i.outcome, i.error) for i in rows]


def session_count(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count(LensSession.id)))


def state_of(app, session_id: int) -> str:
    with app.app_context():
        return db.session.get(LensSession, session_id).state


def only_message(smtp: SmtpServer) -> EmailMessage:
    [envelope] = smtp.handler.envelopes
    return email.message_from_bytes(envelope.content, policy=default_policy)


def link_in_message(message: EmailMessage) -> str:
    text = message.get_body(preferencelist=("plain",)).get_content()
    return re.search(r"https?://\S+/j/[A-Za-z0-9_-]+", text).group(0)


def request_key(console: Console) -> str:
    return KEY.search(console.client.get(console.prefix + "/sessions/new").text).group(1)


def joins_by_pin(make_customer, pin: str) -> bool:
    return make_customer("198.51.100.99").join(pin).status_code == 303


@pytest.fixture
def twilio(configure, http_stub: HttpStub) -> HttpStub:
    configure(
        LENS_SMS_BACKEND="twilio",
        LENS_TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        LENS_TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        LENS_TWILIO_FROM="+3197010203040",
        LENS_TWILIO_API_BASE_URL=http_stub.url,
        LENS_INVITATION_TIMEOUT="2",
    )
    http_stub.respond(201, TWILIO_CREATED)
    return http_stub


@pytest.fixture
def webhook(configure, http_stub: HttpStub) -> HttpStub:
    configure(
        LENS_SMS_BACKEND="webhook",
        LENS_SMS_WEBHOOK_URL=http_stub.url + "/sms",
        LENS_SMS_WEBHOOK_SECRET="gateway-secret",
        LENS_INVITATION_TIMEOUT="2",
    )
    return http_stub


# --- the dialog ------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["/console", "/web"])
def test_dialog_has_four_tabs_with_their_fields(client, technician, prefix):
    console = Console(client, prefix)
    assert console.login("tess@example.com").status_code == 302
    html = client.get(prefix + "/sessions/new").text
    assert 'role="tablist"' in html
    for tab in ("pin", "sms", "email", "link"):
        assert f'role="tab" id="tab-{tab}" aria-controls="panel-{tab}"' in html
        assert f'role="tabpanel" id="panel-{tab}"' in html
    assert html.count('aria-selected="true"') == 1
    assert 'id="tab-pin" aria-controls="panel-pin"\n                  aria-selected="true"' in html
    for button in ("Create PIN", "Send SMS", "Send email", "Create link"):
        assert f">{button}</button>" in html
    assert "Send via my own e-mail client" in html and "Send via the Lens server" in html
    assert 'type="tel"' in html and 'name="request_key"' in html


def test_create_pin_is_unchanged(app, console):
    created = console.create_session("Pat Pin")
    html = created["response"].text
    assert "Give the customer this PIN:" in html
    assert 'id="join-link"' not in html  # the PIN tab shows the PIN only
    lens_session = session_with_pin(app, created["pin"])
    assert lens_session.channel == "pin"
    assert invitations_of(app, lens_session.id) == []


# --- e-mail through a real SMTP server ---------------------------------------------------------


def test_email_via_the_server_reaches_the_customer_who_joins_with_its_link(
    app, console, mail_server, make_customer
):
    response = submit(console, "email", email="jane@example.com", email_via="server")

    assert response.status_code == 201, response.text
    assert "E-mail sent to j•••@example.com." in response.text
    pin = pin_in(response.text)
    message = only_message(mail_server)
    assert message["To"] == "jane@example.com"
    assert "Tess Technician invites you" in message["Subject"]
    assert message.is_multipart()  # Flask-Mail: mixed, holding text and HTML alternatives
    assert "multipart/alternative" in {part.get_content_type() for part in message.walk()}
    html = message.get_body(preferencelist=("html",)).get_content()
    link = link_in_message(message)
    assert f'href="{link}" role="button"' in html
    assert pin in message.get_body(preferencelist=("plain",)).get_content()
    assert link == link_in_dialog(response.text)

    phone = make_customer()
    opened = phone.client.get(urlsplit(link).path)
    assert opened.status_code == 303
    assert phone.accept().status_code == 200

    with app.app_context():  # the PIN is used up by now: find the session by its link
        lens_session = db.session.scalar(
            select(LensSession).where(LensSession.join_token == link.rsplit("/", 1)[1])
        )
        session_id, channel = lens_session.id, lens_session.channel
    assert state_of(app, session_id) == "waiting"
    assert channel == "email"
    rows = console.client.get("/console/").text
    assert "Customer connected" in rows
    assert invitations_of(app, session_id) == [
        ("email", "jane@example.com", "j•••@example.com", "sent", None)
    ]
    log = console.client.get(f"/console/sessions/{session_id}").text
    assert "E-mail sent to j•••@example.com" in log
    assert "jane@example.com" not in log  # lists and logs show the masked address only


def test_web_console_sends_email_too(app, client, technician, mail_server):
    web = Console(client, "/web")
    assert web.login("tess@example.com").status_code == 302
    response = submit(web, "email", email="jane@example.com", email_via="server")
    assert response.status_code == 201, response.text
    assert "E-mail sent to" in response.text
    assert link_in_message(only_message(mail_server)) == link_in_dialog(response.text)
    assert session_with_pin(app, pin_in(response.text)).console == "web"


def test_email_via_my_own_client_is_a_prefilled_mailto_link(app, console, mail_server):
    response = submit(console, "email", email="jane@example.com", email_via="client")

    assert response.status_code == 201
    assert mail_server.handler.envelopes == []
    mailto = re.search(r'href="(mailto:[^"]+)"', response.text).group(1).replace("&amp;", "&")
    parts = urlsplit(mailto)
    assert unquote(parts.path) == "jane@example.com"
    query = parse_qs(parts.query)
    assert "invites you" in query["subject"][0]
    pin = pin_in(response.text)
    assert pin in query["body"][0] and link_in_dialog(response.text) in query["body"][0]
    lens_session = session_with_pin(app, pin)
    assert invitations_of(app, lens_session.id) == [
        ("email", "jane@example.com", "j•••@example.com", "shown", None)
    ]


def test_crlf_in_the_name_is_refused_and_never_reaches_a_subject(app, console, mail_server):
    name = "Jane\r\nBcc: victim@example.net"
    response = submit(console, "email", name=name, email="jane@example.com", email_via="server")

    assert response.status_code == 422
    assert "Control characters are not allowed." in response.text
    assert mail_server.handler.envelopes == []
    assert session_count(app) == 0


@pytest.mark.parametrize(
    ("address", "says"),
    [
        ("", "Enter an e-mail address."),
        ("not-an-address", "Enter a valid e-mail address."),
        ("jane@exa mple.com", "Enter a valid e-mail address."),
        ("jane@example.com\r\nBcc: x@example.net", "Enter a valid e-mail address."),
        ("a" * 250 + "@example.com", "cannot be longer than 254"),
    ],
)
def test_bad_email_addresses_are_refused_in_the_dialog(app, console, mail_server, address, says):
    response = submit(console, "email", email=address, email_via="server")
    assert response.status_code == 422
    assert says in response.text
    assert 'aria-invalid="true"' in response.text
    assert 'id="tab-email" aria-controls="panel-email"\n                  aria-selected="true"' in (
        response.text
    )
    assert mail_server.handler.envelopes == []
    assert session_count(app) == 0


def test_refused_smtp_connection_keeps_the_session_joinable_by_pin(
    app, console, configure, make_customer
):
    configure(
        MAIL_SERVER="127.0.0.1",
        MAIL_PORT=free_port(),
        MAIL_SUPPRESS_SEND=False,
        MAIL_DEFAULT_SENDER="support@lens.example.com",
    )
    response = submit(console, "email", email="jane@example.com", email_via="server")

    assert response.status_code == 201
    assert "The e-mail could not be sent." in response.text
    assert "Could not reach the e-mail server" in response.text
    pin = pin_in(response.text)
    assert f"the customer can still join with PIN {pin}" in response.text
    lens_session = session_with_pin(app, pin)
    [(_, _, _, outcome, error)] = invitations_of(app, lens_session.id)
    assert outcome == "failed" and "Could not reach the e-mail server" in error
    log = console.client.get(f"/console/sessions/{lens_session.id}").text
    assert "E-mail to j•••@example.com failed: Could not reach the e-mail server" in log
    assert joins_by_pin(make_customer, pin)


def test_silent_smtp_server_times_out_within_the_setting(
    app, console, configure, silent_smtp_port, make_customer
):
    configure(
        MAIL_SERVER="127.0.0.1",
        MAIL_PORT=silent_smtp_port,
        MAIL_SUPPRESS_SEND=False,
        MAIL_DEFAULT_SENDER="support@lens.example.com",
        LENS_INVITATION_TIMEOUT="0.5",
    )
    started = time.monotonic()
    response = submit(console, "email", email="jane@example.com", email_via="server")
    elapsed = time.monotonic() - started

    assert response.status_code == 201
    assert elapsed < 2.5
    assert "The e-mail could not be sent." in response.text
    assert re.search(r"did not (answer|finish) within 0.5 seconds", response.text)
    assert joins_by_pin(make_customer, pin_in(response.text))


def test_smtp_server_refusing_the_recipient_shows_its_reply(app, console, mail_server):
    mail_server.handler.rcpt_reply = "550 5.1.1 No such mailbox"
    response = submit(console, "email", email="jane@example.com", email_via="server")
    assert response.status_code == 201
    assert "550 5.1.1 No such mailbox" in response.text


# --- SMS through a local stand-in for Twilio and for a webhook gateway ---------------------------


def test_sms_through_twilio_posts_the_link_and_pin(app, console, twilio):
    response = submit(console, "sms", phone="06 1234 5678")  # national, default region NL

    assert response.status_code == 201, response.text
    assert "SMS sent to +31 6 •••• 5678." in response.text
    [request] = twilio.requests
    assert request.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    scheme, _, credentials = request.headers["Authorization"].partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(credentials).decode() == f"{ACCOUNT_SID}:{AUTH_TOKEN}"
    form = parse_qs(request.body.decode())
    assert form["To"] == ["+31612345678"] and form["From"] == ["+3197010203040"]
    pin = pin_in(response.text)
    # a Dutch number gets the Dutch text (the SMS goes out in the customer's language)
    link = link_in_dialog(response.text)
    assert form["Body"] == [f"Uw ondersteuningssessie: {link} (pincode {pin})"]
    lens_session = session_with_pin(app, pin)
    assert lens_session.channel == "sms"
    assert invitations_of(app, lens_session.id) == [
        ("sms", "+31612345678", "+31 6 •••• 5678", "sent", None)
    ]


def test_sms_template_from_settings(app, console, twilio, configure):
    configure(LENS_SMS_TEMPLATE="Hi {name}, tap {link} or type {pin}")
    response = submit(console, "sms", name="Ann", phone="+44 7911 123456")
    assert response.status_code == 201
    body = parse_qs(twilio.requests[0].body.decode())["Body"][0]
    assert body == f"Hi Ann, tap {link_in_dialog(response.text)} or type {pin_in(response.text)}"


def test_sms_through_the_webhook_posts_json_with_the_secret(app, console, webhook):
    response = submit(console, "sms", phone="+31 6 12345678")

    assert response.status_code == 201, response.text
    [request] = webhook.requests
    assert request.path == "/sms"
    assert request.headers["X-Lens-Secret"] == "gateway-secret"
    payload = request.json()
    lens_session = session_with_pin(app, pin_in(response.text))
    assert payload["to"] == "+31612345678"
    assert payload["session_id"] == lens_session.public_id
    assert link_in_dialog(response.text) in payload["body"]


def test_twilio_error_is_shown_and_the_pin_still_works(app, console, twilio, make_customer):
    twilio.respond(400, {"code": 21211, "message": "The 'To' number is not valid.", "status": 400})
    response = submit(console, "sms", phone="+31 6 12345678")

    assert response.status_code == 201
    assert "The SMS could not be sent." in response.text
    assert "Twilio refused the SMS: The &#39;To&#39; number is not valid." in response.text
    pin = pin_in(response.text)
    assert f"the customer can still join with PIN {pin}" in response.text
    assert joins_by_pin(make_customer, pin)


def test_webhook_500_is_shown_and_the_pin_still_works(app, console, webhook, make_customer):
    webhook.respond(500, {"error": "gateway down"})
    response = submit(console, "sms", phone="+31 6 12345678")

    assert response.status_code == 201
    assert 'role="alert"' in response.text
    assert "The SMS webhook answered HTTP 500" in response.text and "gateway down" in response.text
    lens_session = session_with_pin(app, pin_in(response.text))
    assert lens_session.state == "created"
    log = console.client.get(f"/console/sessions/{lens_session.id}").text
    assert "SMS to +31 6 •••• 5678 failed: The SMS webhook answered HTTP 500" in log
    assert joins_by_pin(make_customer, pin_in(response.text))


@pytest.mark.parametrize("backend", ["twilio", "webhook"])
def test_sms_provider_time_out_does_not_block_the_dialog(
    request, app, console, configure, make_customer, backend
):
    stub = request.getfixturevalue(backend)
    configure(LENS_INVITATION_TIMEOUT="0.5")
    stub.hold = True
    started = time.monotonic()
    response = submit(console, "sms", phone="+31 6 12345678")
    elapsed = time.monotonic() - started

    assert response.status_code == 201
    assert elapsed < 2.5
    assert "The SMS could not be sent." in response.text
    assert re.search(r"did not (answer|finish) within 0.5 seconds", response.text)
    assert joins_by_pin(make_customer, pin_in(response.text))


def test_refused_connection_to_the_sms_gateway(app, console, configure, make_customer):
    configure(
        LENS_SMS_BACKEND="webhook",
        LENS_SMS_WEBHOOK_URL=f"http://127.0.0.1:{free_port()}/sms",
        LENS_SMS_WEBHOOK_SECRET="s",
    )
    response = submit(console, "sms", phone="+31 6 12345678")
    assert response.status_code == 201
    assert "Could not reach the SMS webhook" in response.text
    assert joins_by_pin(make_customer, pin_in(response.text))


@pytest.mark.parametrize(
    ("phone", "says"),
    [
        ("", "Enter a phone number."),
        ("call me", "Enter a phone number."),
        ("12", "This phone number has the wrong number of digits."),
        ("+31 6 1234", "This is not a valid phone number"),
        ("+31 6 12345678 9999999999999999999", "cannot be longer than 32"),
        ("+31 6 1234\r\n5678", "Enter a phone number."),
    ],
)
def test_bad_phone_numbers_are_refused_in_the_dialog(app, console, twilio, phone, says):
    response = submit(console, "sms", phone=phone)
    assert response.status_code == 422
    assert says in response.text.replace("&#39;", "'")
    assert 'id="tab-sms" aria-controls="panel-sms"\n                  aria-selected="true"' in (
        response.text
    )
    assert twilio.requests == []
    assert session_count(app) == 0


def test_unknown_sms_backend_is_a_clear_start_up_error(tmp_path, monkeypatch):
    monkeypatch.setenv("LENS_INSTANCE_PATH", str(tmp_path / "instance"))
    with pytest.raises(SmsConfigError, match="LENS_SMS_BACKEND='pigeon' is not an SMS backend"):
        create_app(
            {"TESTING": True, "SQLALCHEMY_DATABASE_URI": "sqlite://", "LENS_SMS_BACKEND": "pigeon"}
        )


def test_sms_backend_is_built_once_at_start_up(app):
    from lens.invitations import LogSmsBackend

    assert isinstance(app.extensions["lens.sms"], LogSmsBackend)
    assert app.config["LENS_INVITATION_TIMEOUT"] == 10.0


# --- double submits and rate limits --------------------------------------------------------------


def test_the_same_form_twice_makes_one_session_and_one_sms(app, console, twilio):
    key = request_key(console)
    first = submit(console, "sms", phone="+31 6 12345678", request_key=key)
    again = submit(console, "sms", phone="+31 6 12345678", request_key=key)

    assert first.status_code == 201
    assert again.status_code == 200
    assert "nothing was sent again" in again.text
    assert pin_in(again.text) == pin_in(first.text)
    assert session_count(app) == 1
    assert len(twilio.requests) == 1


def test_a_double_click_racing_itself_sends_once(app, console, twilio):
    """Two POSTs of one form at the same time (the second while the first still sends)."""
    import threading

    key = request_key(console)
    second_browser_tab = Console(app.test_client())
    assert second_browser_tab.login("tess@example.com").status_code == 302
    twilio.hold = True  # the first send waits, so the second arrives while it is under way
    timeout = app.config["LENS_INVITATION_TIMEOUT"]
    results: dict[str, int] = {}
    texts: dict[str, str] = {}

    def post(name: str, con: Console) -> None:
        response = submit(con, "sms", phone="+31 6 12345678", request_key=key)
        results[name], texts[name] = response.status_code, response.text

    first = threading.Thread(target=post, args=("first", console))
    first.start()
    deadline = time.monotonic() + 5
    while not twilio.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    post("second", second_browser_tab)
    first.join(timeout=timeout + 5)

    assert results == {"first": 201, "second": 200}
    assert "This invitation is already being sent; it was not sent again." in texts["second"]
    assert pin_in(texts["second"]) == pin_in(texts["first"])
    assert session_count(app) == 1
    assert len(twilio.requests) == 1


def test_a_new_dialog_has_a_new_key(console):
    assert request_key(console) != request_key(console)


def test_someone_elses_key_does_not_show_their_session(app, console, other_console):
    key = request_key(console)
    assert submit(console, "link", request_key=key).status_code == 201
    response = submit(other_console, "link", request_key=key)
    assert response.status_code == 403
    assert session_count(app) == 1


def test_sending_is_rate_limited_per_technician(app, console, other_console, twilio, configure):
    configure(LENS_INVITE_RATE_LIMIT="2 per minute")
    for _ in range(2):
        assert submit(console, "sms", phone="+31 6 12345678").status_code == 201

    refused = submit(console, "sms", phone="+31 6 12345678")

    assert refused.status_code == 429
    assert 'id="new-session"' in refused.text and 'role="alert"' in refused.text
    assert "You have sent too many invitations in a short time." in refused.text
    assert len(twilio.requests) == 2 and session_count(app) == 2
    # e-mail through the server counts too; PIN and link never do; another technician may send
    assert submit(console, "email", email="j@example.com", email_via="server").status_code == 429
    assert submit(console, "pin").status_code == 201
    assert submit(console, "link").status_code == 201
    assert submit(other_console, "sms", phone="+31 6 12345678").status_code == 201


def test_the_limit_is_shared_by_both_consoles(app, client, technician, twilio, configure):
    configure(LENS_INVITE_RATE_LIMIT="1 per minute")
    console = Console(client, "/console")
    assert console.login("tess@example.com").status_code == 302
    assert submit(console, "sms", phone="+31 6 12345678").status_code == 201
    web = Console(client, "/web")
    web.token = console.token
    assert submit(web, "sms", phone="+31 6 12345678").status_code == 429


def test_refused_forms_do_not_use_up_the_allowance(app, console, twilio, configure):
    configure(LENS_INVITE_RATE_LIMIT="1 per minute")
    assert submit(console, "sms", phone="nope").status_code == 422
    assert submit(console, "sms", phone="+31 6 12345678").status_code == 201


# --- the Link tab and join links -----------------------------------------------------------------


def test_link_tab_shows_the_link_copy_and_qr(app, console):
    response = submit(console, "link")

    assert response.status_code == 201
    link = link_in_dialog(response.text)
    assert re.fullmatch(r"http://localhost/j/[A-Za-z0-9_-]{40,}", link)
    assert ">Copy link</button>" in response.text
    assert '<svg role="img" aria-label="QR code of the join link"' in response.text
    lens_session = session_with_pin(app, pin_in(response.text))
    assert lens_session.channel == "link"
    assert invitations_of(app, lens_session.id) == [("link", "", "", "shown", None)]
    assert "Join link shown" in console.client.get(f"/console/sessions/{lens_session.id}").text


def test_link_honours_the_base_url(app, console):
    app.config["LENS_BASE_URL"] = "https://support.example.com"
    link = link_in_dialog(submit(console, "link").text)
    assert link.startswith("https://support.example.com/j/")


def test_link_expires_with_the_pin_validity(app, console, make_customer):
    response = submit(console, "link")
    link = link_in_dialog(response.text)
    lens_session = session_with_pin(app, pin_in(response.text))
    assert lens_session.pin_expires_at - lens_session.created_at == timedelta(minutes=20)
    with app.app_context():
        row = db.session.get(LensSession, lens_session.id)
        row.pin_expires_at = now_utc() - timedelta(seconds=1)
        db.session.commit()

    page = make_customer().client.get(urlsplit(link).path)

    assert page.status_code == 410
    assert "no longer valid" in page.text
    assert state_of(app, lens_session.id) == "expired"


def test_link_still_works_just_before_it_expires(app, console, make_customer):
    response = submit(console, "link")
    lens_session = session_with_pin(app, pin_in(response.text))
    with app.app_context():
        row = db.session.get(LensSession, lens_session.id)
        row.pin_expires_at = now_utc() + timedelta(seconds=30)
        db.session.commit()
    assert (
        make_customer().client.get(urlsplit(link_in_dialog(response.text)).path).status_code == 303
    )


def test_a_sent_link_works_on_one_device_only(app, console, make_customer, mail_server):
    response = submit(console, "email", email="jane@example.com", email_via="server")
    path = urlsplit(link_in_message(only_message(mail_server))).path
    assert make_customer("198.51.100.7").client.get(path).status_code == 303
    other = make_customer("198.51.100.8").client.get(path)
    assert other.status_code == 410
    assert "already been opened on another device" in other.text
    assert pin_in(response.text)


def test_expire_sweep_also_ends_the_link(app, console, make_customer):
    response = submit(console, "link")
    with app.app_context():
        later = now_utc() + timedelta(hours=1)
        assert lifecycle.expire_due_sessions(db.session, later, timedelta(minutes=20)) == 1
        db.session.commit()
    page = make_customer().client.get(urlsplit(link_in_dialog(response.text)).path)
    assert page.status_code == 410


# --- the session list ---------------------------------------------------------------------------


def test_channel_column_shows_how_each_session_was_started(app, console, mail_server):
    submit(console, "pin", name="Pia")
    submit(console, "sms", name="Sam", phone="+31 6 12345678")
    submit(console, "email", name="Eve", email="eve@example.com", email_via="client")
    submit(console, "link", name="Lin")
    rows = console.client.get("/console/").text
    for name, channel in (("Pia", "PIN"), ("Sam", "SMS"), ("Eve", "E-mail"), ("Lin", "Link")):
        row = re.search(rf">{name}</a></td>.*?</tr>", rows, re.S).group(0)
        assert f"<td>{channel}</td>" in row


# --- Dutch ------------------------------------------------------------------------------------


def test_dialog_in_dutch_uses_the_manuals_words(app, console):
    nl = {"Accept-Language": "nl"}
    html = console.client.get("/console/sessions/new", headers=nl).text
    for word in ("Pincode maken", "Sms verzenden", "E-mail verzenden", "Link maken"):
        assert f">{word}</button>" in html
    response = console.client.post(
        "/console/sessions",
        data={"name": "Jan", "channel": "link"},
        headers={**nl, "HX-Request": "true", "X-CSRFToken": console.token},
    )
    assert response.status_code == 201
    assert ">Link kopiëren</button>" in response.text
