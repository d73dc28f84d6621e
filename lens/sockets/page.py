"""One socket per page: HTML pushes, control messages and media signaling, both ways.

The server sends HTML (out-of-band swaps the page hands to htmx) or JSON (control messages,
signaling answers, errors); the page sends JSON whose "type" says what it is. What a page
does with each is the page's own code (lens.console.live, lens.customer.live); this class
runs the socket: reading with a rate limit, sending from several greenlets (or threads)
one at a time, forwarding bus subscriptions, and closing with a clear code and reason.

Nothing here holds a database connection while it waits: every piece of work the page's
code does runs in `unit()`, which gives the connection back when it ends.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from flask import copy_current_request_context, current_app, request
from flask_babel import gettext as _
from redis.exceptions import RedisError
from simple_websocket import ConnectionClosed
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from lens.database import DatabaseBusy
from lens.events import BusUnavailable
from lens.extensions import db
from lens.sockets.limits import TokenBucket, TooManySockets
from lens.sockets.messages import BAD_MESSAGE, BadMessage, PageMessage, PageSchema

log = logging.getLogger(__name__)

CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008  # no login, no session, too many messages
CLOSE_TOO_BIG = 1009
CLOSE_SERVER_ERROR = 1011
CLOSE_TRY_LATER = 1013  # too many sockets: try again later

Message = dict[str, Any]


def bad_message(reason: str = BAD_MESSAGE, echo: Message | None = None) -> Message:
    """The answer to a message its page's schema refused (with its ref and session, if any)."""
    if reason == BAD_MESSAGE:
        text = _("That message could not be understood.")
    else:  # a named reason the page shows (an empty or too long chat line)
        from lens.controls.channel import refusal_text

        text = refusal_text(reason)
    return {"type": "error", "reason": reason, "message": text, **(echo or {})}


class PageSocket:
    """A page's socket, as the page's code uses it."""

    def __init__(self, ws, rate: TokenBucket, owner: str = "-") -> None:
        self.ws = ws
        self.owner = owner  # who holds it, for the log (technician:3, customer:12)
        self._rate = rate
        self._send_lock = threading.Lock()
        self._stopped = threading.Event()
        self._workers: list[threading.Thread] = []
        # what a unit sends waits until its database connection is back in the pool
        self._outbox = threading.local()

    @property
    def open(self) -> bool:
        return self.ws.connected and not self._stopped.is_set()

    def send_html(self, html: str) -> None:
        """Out-of-band swaps for htmx (a push starts with "<"); empty fragments are not sent."""
        html = html.strip()
        if html:
            self._send(html)

    def send_json(self, message: Message) -> None:
        self._send(json.dumps(message, ensure_ascii=False))

    def _send(self, text: str) -> None:
        held = getattr(self._outbox, "messages", None)
        if held is not None:  # inside a unit: sent when it ends
            held.append(text)
            return
        self._write(text)

    def _write(self, text: str) -> None:
        with self._send_lock:
            try:
                self.ws.send(text)
            except ConnectionClosed:
                self._stopped.set()

    def close(self, code: int, reason: str) -> None:
        """Close with a code and a reason the page can show or act on (after what was sent)."""
        held = getattr(self._outbox, "messages", None)
        if held is not None:  # inside a unit: once what the unit sent has gone out
            held.append((code, reason))
            return
        self._stopped.set()
        try:
            self.ws.close(code, reason)
        except Exception:  # already closed by the other side
            log.debug("socket already closed", exc_info=True)

    def received(self, timeout: float = 30.0) -> Iterator[Any]:
        """The page's messages as they came, until the socket closes.

        A page over its message rate is closed (CLOSE_POLICY).
        """
        while self.open:
            try:
                raw = self.ws.receive(timeout=timeout)
            except ConnectionClosed:
                break
            if raw is None:
                continue
            if not self._rate.take():
                self.close(CLOSE_POLICY, "too many messages")
                break
            yield raw

    def dispatch(
        self, raw: Any, schema: PageSchema, handler: Callable[[PageMessage], None]
    ) -> None:
        """Check one message against the page's schema, then hand it to handler (in a unit).

        A message the schema refuses is answered `bad_message` (one log line, no
        traceback); the socket stays open whatever a message holds. A handler that fails
        is a bug: logged with its traceback, the page told, the socket still open. A
        handler's abort() is a refusal: it ends the socket with its code (serve).
        """
        try:
            message = schema.parse(raw)
        except BadMessage as exc:
            log.info("%s refused from %s: %s", exc.reason, self.owner, exc.detail)
            self.send_json(bad_message(exc.reason, exc.echo))
            return
        with self.unit():  # its database session is removed (rolled back) at the end
            try:
                handler(message)
            except HTTPException:  # a refusal (abort): serve() closes the socket with its code
                raise
            except (DatabaseBusy, OperationalError, RedisError, BusUnavailable) as exc:
                log.error("%s message from %s not done: %s", message.type, self.owner, exc)
                error = _("The server is busy. Your message was not sent; try again.")
                self.send_json(
                    {"type": "error", "reason": "busy", "message": error, **_echo(message)}
                )
            except Exception:
                log.exception("%s message from %s failed", message.type, self.owner)
                error = _("Something went wrong on our side. Try again.")
                self.send_json(
                    {"type": "error", "reason": "server_error", "message": error, **_echo(message)}
                )

    def forward(
        self,
        subscription,
        on_message: Callable[[Message], None],
        on_idle: Callable[[], None] | None = None,
        poll: float = 5.0,
    ) -> Callable[[], None]:
        """Pass each bus message to on_message (in a unit) until stopped; returns the stop.

        on_idle runs between messages at least every `poll` seconds (e.g. a heartbeat).
        """
        stopped = threading.Event()

        def run() -> None:
            try:
                while self.open and not stopped.is_set():
                    message = subscription.get(timeout=poll)
                    if stopped.is_set() or not self.open:
                        break
                    with self.unit():
                        if message is not None:
                            on_message(message)
                        if on_idle is not None:
                            on_idle()
            except Exception:  # a broken push must end the socket, not leave it half alive
                log.exception("socket push failed")
                self.close(CLOSE_SERVER_ERROR, "server error")
            finally:
                subscription.close()

        self._start(run)

        def stop() -> None:
            stopped.set()

        return stop

    def spawn(self, work: Callable[[], None]) -> None:
        """Run work beside the reader (e.g. a signaling exchange that waits on the sidecar)."""

        def run() -> None:
            with self.unit():
                work()

        self._start(run)

    def _start(self, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=copy_current_request_context(target), daemon=True)
        self._workers.append(thread)
        thread.start()

    @contextmanager
    def unit(self) -> Iterator[None]:
        """A piece of work: its database connection goes back before anything is sent.

        A send can wait on a slow client; nothing waits while holding a connection.
        """
        self._outbox.messages = held = []
        try:
            yield
        finally:
            self._outbox.messages = None
            db.session.remove()
            for item in held:
                if isinstance(item, tuple):
                    self.close(*item)
                else:
                    self._write(item)

    def finish(self) -> None:
        """Stop every worker; called when the page's socket ends."""
        self._stopped.set()
        for thread in self._workers:  # each sees the stop at its next wake-up (≤ poll)
            if thread is not threading.current_thread():
                thread.join(timeout=0.1)


def _echo(message: PageMessage) -> Message:
    return {key: getattr(message, key) for key in ("ref", "session") if hasattr(message, key)}


def serve(ws, owner: str, make_page: Callable[[PageSocket], Any]) -> None:
    """Run a page's socket under the site's limits (lens.sockets.limits).

    owner names who holds it (a technician, a customer's session): it is counted with the
    client's address, and a client over either cap is closed at once (CLOSE_TRY_LATER).
    """
    config = current_app.config
    rate = TokenBucket(config["LENS_SOCKET_MESSAGES_PER_SECOND"], config["LENS_SOCKET_BURST"])
    sock = PageSocket(ws, rate, owner)
    limits = current_app.extensions["lens.socket_limits"]
    try:
        with limits.hold(request.remote_addr, owner):
            page = make_page(sock)
            db.session.remove()  # the log-in or join lookup is done: wait without a connection
            page.run()
    except TooManySockets as exc:
        sock.close(CLOSE_TRY_LATER, exc.reason)
    except ConnectionClosed:
        pass
    except HTTPException as exc:
        # Refusals belong before the upgrade (a before_request check); one raised in here
        # would have Flask write an error page into the upgraded socket. Close it instead.
        log.info("socket refused after the upgrade: %s %s", exc.code, exc.name)
        sock.close(CLOSE_POLICY, f"refused ({exc.code})")
    except Exception:
        log.exception("socket failed")
        sock.close(CLOSE_SERVER_ERROR, "server error")
    finally:
        db.session.remove()
        let_the_close_finish(ws)


def let_the_close_finish(ws) -> None:
    """Under werkzeug (`flask run`, the tests' server) flask-sock lets werkzeug write an HTTP
    response once the handler returns, into the socket that carried the WebSocket: the
    browser reads it as a broken frame ("Invalid frame header", close code 1006) and a
    page told that its session is over reconnects. So, there, the close frame is followed
    by the end of the connection (what is written after it goes nowhere). Other servers
    write nothing after the handler.
    """
    if getattr(ws, "mode", None) != "werkzeug":
        return
    if ws.connected:
        try:
            ws.close(CLOSE_NORMAL)
        except Exception:  # closed by the other side meanwhile
            log.debug("socket already closed", exc_info=True)
    with contextlib.suppress(OSError):  # the other side has gone already
        ws.sock.shutdown(socket.SHUT_WR)
