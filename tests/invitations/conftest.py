"""Fixtures: real servers on 127.0.0.1 for the invitation tests."""

import socket
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller
from invitation_servers import HttpStub, RecordingHandler, SmtpServer, free_port, handler_for


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """An SMTP server (aiosmtpd) on a free port of 127.0.0.1 that records what it receives."""
    handler = RecordingHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield SmtpServer(port=controller.port, handler=handler)
    finally:
        controller.stop()


@pytest.fixture
def silent_smtp_port() -> Iterator[int]:
    """A port whose listener completes TCP handshakes but never sends the SMTP greeting."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        # The kernel accepts connections into the backlog; nobody ever reads or writes.
        listener.listen(8)
        yield listener.getsockname()[1]


@pytest.fixture
def http_stub() -> Iterator[HttpStub]:
    """An HTTP server on a free port of 127.0.0.1, in a thread, answering as told."""
    stub = HttpStub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(stub))
    server.daemon_threads = True
    stub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        stub.released.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def configure(app):
    """Change invitation settings of the running app, as if it had started with them."""
    from lens.extensions import mail
    from lens.invitations import setup

    def apply(**settings: object) -> None:
        app.config.update(settings)
        mail.init_app(app)
        setup.init_app(app)

    return apply


@pytest.fixture
def mail_server(configure, smtp_server: SmtpServer) -> SmtpServer:
    """The app's Flask-Mail pointed at the recording SMTP server."""
    configure(
        MAIL_SERVER="127.0.0.1",
        MAIL_PORT=smtp_server.port,
        MAIL_USE_TLS=False,
        MAIL_USE_SSL=False,
        MAIL_DEFAULT_SENDER=("Lens Support", "support@lens.example.com"),
        MAIL_SUPPRESS_SEND=False,
        LENS_INVITATION_TIMEOUT="5",
    )
    return smtp_server
