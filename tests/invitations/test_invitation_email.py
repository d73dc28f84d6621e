"""E-mail invitations: address checks, composition, mailto: links and SMTP sending."""

import email
import re
import time
from email.message import EmailMessage
from email.policy import default as default_policy
from html.parser import HTMLParser
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from flask import current_app
from flask_mail import Mail
from invitation_servers import SmtpServer, free_port, make_mail_app

from lens.invitations.errors import InvalidEmailAddress, InvitationSendError
from lens.invitations.mail import (
    InvitationWording,
    compose_invitation,
    mailto_url,
    normalise_email,
    send_email,
)
from lens.invitations.sending import send_with_timeout

JOIN_URL = "https://lens.example.com/j/Ab3dE9?pin=123456&lang=nl"


class LinkCollector(HTMLParser):
    """Collects the href of every <a> in an HTML document."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.buttons: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Remember links, and which of them are marked as buttons."""
        if tag == "a":
            values = dict(attrs)
            self.hrefs.append(values["href"] or "")
            if values.get("role") == "button":
                self.buttons.append(values["href"] or "")


def html_links(markup: str) -> LinkCollector:
    """Return the links found in markup (entities decoded, as a mail client sees them)."""
    collector = LinkCollector()
    collector.feed(markup)
    return collector


def text_links(text: str) -> list[str]:
    """Return the http(s) URLs in a plain-text body."""
    return re.findall(r"https?://\S+", text)


def received(server: SmtpServer) -> EmailMessage:
    """Return the one message the SMTP server received, parsed."""
    assert len(server.handler.envelopes) == 1
    content = server.handler.envelopes[0].content
    assert isinstance(content, bytes)
    message = email.message_from_bytes(content, policy=default_policy)
    assert isinstance(message, EmailMessage)
    return message


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("jan@example.com", "jan@example.com"),
        ("  Jan.Jansen@Example.COM ", "Jan.Jansen@example.com"),
    ],
)
def test_normalise_email_accepts_and_normalises(raw: str, expected: str) -> None:
    assert normalise_email(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "jan@example.com\r\nBcc: victim@example.org",
        "jan@example.com\nBcc: victim@example.org",
        "jan@exa\rmple.com",
        "not-an-address",
        "jan@",
        "",
        "   ",
        "a" * 250 + "@example.com",
        "jan@example..com",
    ],
)
def test_normalise_email_rejects(raw: str) -> None:
    with pytest.raises(InvalidEmailAddress) as caught:
        normalise_email(raw)
    assert caught.value.message
    assert caught.value.code == "invalid_email_address"


def test_compose_escapes_names_and_keeps_subject_on_one_line() -> None:
    message = compose_invitation(
        "Eve\r\nBcc: victim@example.org",
        JOIN_URL,
        "123456",
        15,
        technician_name="<script>alert(1)</script> Tom",
    )
    assert "\r" not in message.subject and "\n" not in message.subject
    assert message.subject.startswith("<script>alert(1)</script> Tom invites you")
    assert "<script>" not in message.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Tom" in message.html
    assert "Hello Eve Bcc: victim@example.org," in message.text
    assert "123456" in message.text and "123456" in message.html
    assert "15 minutes" in message.text


def test_compose_puts_the_link_in_both_parts_and_as_button() -> None:
    message = compose_invitation("Jan", JOIN_URL, "123456", 10, technician_name="Tom")
    links = html_links(message.html)
    assert links.buttons == [JOIN_URL]
    assert set(links.hrefs) == {JOIN_URL}
    assert "&amp;lang=nl" in message.html  # escaped in the markup, decoded by the parser
    assert text_links(message.text) == [JOIN_URL]


def test_compose_uses_the_wording_it_is_given() -> None:
    wording = InvitationWording(
        subject="{technician} nodigt u uit",
        greeting="Beste {name},",
        button="Deelnemen",
        pin_line="Uw pincode: {pin}",
        expiry_line="Geldig voor {minutes} minuten.",
        lang="nl",
    )
    message = compose_invitation(
        "Jan", JOIN_URL, "654321", 20, technician_name="Tom", wording=wording
    )
    assert message.subject == "Tom nodigt u uit"
    assert message.text.startswith("Beste Jan,")
    assert '<html lang="nl">' in message.html
    assert ">Deelnemen</a>" in message.html
    assert "Uw pincode: 654321" in message.text
    assert "Geldig voor 20 minuten." in message.html


def test_compose_refuses_a_non_http_link() -> None:
    with pytest.raises(ValueError):
        compose_invitation("Jan", "javascript:alert(1)", "1", 5, technician_name="Tom")


def test_mailto_url_is_percent_encoded_and_round_trips() -> None:
    body = "Hello Jan & co,\nopen https://lens.example.com/j/x?a=1&b=2 (PIN 123456)\n"
    url = mailto_url("jan@example.com", "Support?\r\nBcc: evil@example.org", body)
    parts = urlsplit(url)
    assert parts.scheme == "mailto"
    assert unquote(parts.path) == "jan@example.com"
    assert " " not in url and "\n" not in url and "+" not in url
    query = parse_qs(parts.query, strict_parsing=True)
    assert query["subject"] == ["Support? Bcc: evil@example.org"]
    assert query["body"] == [
        "Hello Jan & co,\r\nopen https://lens.example.com/j/x?a=1&b=2 (PIN 123456)"
    ]


def test_send_email_delivers_multipart_with_the_join_link(smtp_server: SmtpServer) -> None:
    app = make_mail_app(smtp_server.port)
    invitation = compose_invitation("Jan", JOIN_URL, "123456", 15, technician_name="Tom")
    with app.app_context():
        send_email(current_app.extensions["mail"], None, "jan@example.com", invitation, 5)

    message = received(smtp_server)
    assert smtp_server.handler.envelopes[0].rcpt_tos == ["jan@example.com"]
    assert message["To"] == "jan@example.com"
    assert message["Subject"] == invitation.subject
    assert "support@lens.example.com" in message["From"]
    assert message.is_multipart()
    assert any(part.get_content_type() == "multipart/alternative" for part in message.walk())
    text_part = message.get_body(preferencelist=("plain",))
    html_part = message.get_body(preferencelist=("html",))
    assert text_part is not None and html_part is not None
    assert text_links(text_part.get_content()) == [JOIN_URL]
    assert html_links(html_part.get_content()).buttons == [JOIN_URL]


def test_send_email_cannot_be_used_for_header_injection(smtp_server: SmtpServer) -> None:
    mail = Mail()
    app = make_mail_app(smtp_server.port, mail)
    invitation = compose_invitation(
        "Eve\r\nBcc: victim@example.org", JOIN_URL, "123456", 15, technician_name="Tom"
    )
    with app.app_context():
        with pytest.raises(InvalidEmailAddress):
            send_email(mail, None, "jan@example.com\r\nBcc: victim@example.org", invitation, 5)
        send_email(mail, None, "jan@example.com", invitation, 5)

    message = received(smtp_server)
    assert smtp_server.handler.envelopes[0].rcpt_tos == ["jan@example.com"]
    assert message["Bcc"] is None
    assert message["Subject"] == invitation.subject


def test_send_with_timeout_runs_send_email_in_a_worker(smtp_server: SmtpServer) -> None:
    mail = Mail()  # unbound, as in lens.extensions; the worker finds the app via current_app
    app = make_mail_app(smtp_server.port, mail)
    invitation = compose_invitation("Jan", JOIN_URL, "123456", 15, technician_name="Tom")
    with app.app_context():
        outcome = send_with_timeout(
            lambda: send_email(mail, None, "jan@example.com", invitation, 5), timeout=5
        )
    assert outcome.ok, outcome.error
    text_part = received(smtp_server).get_body(("plain",))
    assert text_part is not None
    assert text_links(text_part.get_content()) == [JOIN_URL]


def test_smtp_refusal_carries_the_server_reply(smtp_server: SmtpServer) -> None:
    smtp_server.handler.rcpt_reply = "550 5.1.1 No such user here"
    app = make_mail_app(smtp_server.port)
    invitation = compose_invitation("Jan", JOIN_URL, "123456", 15, technician_name="Tom")
    with app.app_context(), pytest.raises(InvitationSendError) as caught:
        send_email(current_app.extensions["mail"], None, "nobody@example.com", invitation, 5)
    assert caught.value.message == (
        "The e-mail server refused the address: 550 5.1.1 No such user here"
    )
    assert smtp_server.handler.envelopes == []


def test_refused_smtp_connection_fails_quickly() -> None:
    app = make_mail_app(free_port())
    invitation = compose_invitation("Jan", JOIN_URL, "123456", 15, technician_name="Tom")
    started = time.monotonic()
    with app.app_context(), pytest.raises(InvitationSendError) as caught:
        send_email(current_app.extensions["mail"], None, "jan@example.com", invitation, 5)
    assert time.monotonic() - started < 2
    assert "Could not reach the e-mail server" in caught.value.message


def test_silent_smtp_server_fails_within_the_timeout(silent_smtp_port: int) -> None:
    app = make_mail_app(silent_smtp_port)
    invitation = compose_invitation("Jan", JOIN_URL, "123456", 15, technician_name="Tom")
    timeout = 0.5
    started = time.monotonic()
    with app.app_context(), pytest.raises(InvitationSendError) as caught:
        send_email(current_app.extensions["mail"], None, "jan@example.com", invitation, timeout)
    elapsed = time.monotonic() - started
    assert timeout <= elapsed < timeout + 1.5
    assert caught.value.message == "The e-mail server did not answer within 0.5 seconds."
