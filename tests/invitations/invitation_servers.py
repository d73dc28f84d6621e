"""Local stand-ins for the invitation tests: an SMTP recorder, a silent port, an HTTP stub."""

import json
import socket
import threading
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler

from aiosmtpd.smtp import Envelope
from flask import Flask
from flask_mail import Mail


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RecordingHandler:
    """aiosmtpd handler that keeps every message it accepts."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self.rcpt_reply: str | None = None

    async def handle_RCPT(
        self, server: object, session: object, envelope: Envelope, address: str, options: list
    ) -> str:
        """Accept the recipient, or answer rcpt_reply when a test sets one."""
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: object, session: object, envelope: Envelope) -> str:
        """Keep the message; smtplib returns only after this 250 reply."""
        self.envelopes.append(envelope)
        return "250 Message accepted"


@dataclass
class SmtpServer:
    """A running aiosmtpd server and what it received."""

    port: int
    handler: RecordingHandler


def make_mail_app(port: int, mail: Mail | None = None) -> Flask:
    """A minimal Flask app whose Flask-Mail (mail, bound here) sends to 127.0.0.1:port."""
    app = Flask(__name__)
    app.config.update(
        MAIL_SERVER="127.0.0.1",
        MAIL_PORT=port,
        MAIL_USE_TLS=False,
        MAIL_USE_SSL=False,
        MAIL_DEFAULT_SENDER=("Lens Support", "support@lens.example.com"),
        MAIL_SUPPRESS_SEND=False,
    )
    (mail or Mail()).init_app(app)
    return app


@dataclass
class RecordedRequest:
    """One request the HTTP stand-in received."""

    method: str
    path: str
    headers: Message
    body: bytes

    def json(self) -> object:
        """The body parsed as JSON."""
        return json.loads(self.body)


@dataclass
class HttpStub:
    """An HTTP server that records requests and answers with a set status and body."""

    url: str = ""
    status: int = 200
    body: bytes = b"{}"
    hold: bool = False
    requests: list[RecordedRequest] = field(default_factory=list)
    released: threading.Event = field(default_factory=threading.Event)

    def respond(self, status: int, payload: object) -> None:
        """Answer every following request with status and payload as JSON."""
        self.status = status
        self.body = json.dumps(payload).encode()


def handler_for(stub: HttpStub) -> type[BaseHTTPRequestHandler]:
    """Return a request handler class that serves stub."""

    class StubHandler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            stub.requests.append(RecordedRequest("POST", self.path, self.headers, body))
            if stub.hold:
                # Stand in for a provider that never answers: wait until the test ends.
                stub.released.wait(timeout=30)
            try:
                self.send_response(stub.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(stub.body)))
                self.end_headers()
                self.wfile.write(stub.body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting, which is what a hold test wants

        def log_message(self, format: str, *args: object) -> None:
            pass

    return StubHandler
