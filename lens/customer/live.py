"""The phone page's one socket: its status screen, the session's controls, its media leg.

Pushes are HTML (the status screen, when the state or the recording changes); control
messages and signaling are JSON. On (re)connecting the phone gets its screen and its chat
as they are, so nothing is missed while it was away.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from typing import Any

from flask import current_app, render_template
from sqlalchemy.exc import SQLAlchemyError

from lens.admin.settings import setting
from lens.captures.records import open_recording
from lens.chat.models import session_chat
from lens.chat.rendering import render_chat_line
from lens.controls.channel import control_handlers, controls_topic, receive_control
from lens.controls.messages import CUSTOMER, ControlMessage
from lens.database import DatabaseBusy, retrying
from lens.events.publishing import session_topic
from lens.extensions import db
from lens.features import customer_features, started_in
from lens.sessions import lifecycle
from lens.sessions.models import LensSession, SessionState
from lens.signaling.relay import (
    MEDIA_STATES,
    MediaNotes,
    busy,
    exchange_offer,
    log_media,
    media_control,
    offer_slots,
)
from lens.sockets import CLOSE_NORMAL, PageSocket
from lens.sockets.messages import PHONE, Offer, PageMessage
from lens.timeutil import now_utc

log = logging.getLogger(__name__)

SEEN_EVERY_SECONDS = 30.0  # well inside LENS_CUSTOMER_GONE_MINUTES

Message = dict[str, Any]

EMPTY_CHAT_SLOT = '<div id="phone-chat-slot" hx-swap-oob="innerHTML"></div>'


class PhonePage:
    """What the customer's open page sees and may do."""

    def __init__(self, sock: PageSocket, session_id: int) -> None:
        self.sock = sock
        self.session_id = session_id
        self.last_screen: tuple | None = None
        self.seen_at = 0.0
        self.media = MediaNotes()
        self.leg = None  # this page's media leg, watched (lens.sidecars.legs)
        self.offer_slots = offer_slots()
        self.link = secrets.token_hex(8)  # this socket, for presence (lifecycle.customer_arrived)

    def run(self) -> None:
        """Serve the page until its socket closes or its session is over."""
        bus = current_app.extensions["lens.events"]
        subscription = bus.subscribe(
            [session_topic(self.session_id), controls_topic(self.session_id)]
        )
        arrived = False
        try:
            with self.sock.unit():
                live = self.push_screen()
                self.push_chat()
                if live:
                    self.still_here()  # the sweep knows at once that the page is open
            if not live:
                self.sock.close(CLOSE_NORMAL, "session over")
                return
            with self.sock.unit():
                arrived = self.presence(lifecycle.customer_arrived)
            self.sock.forward(subscription, self.on_bus, on_idle=self.still_here)
            for raw in self.sock.received():
                self.receive(raw)
        finally:
            self.sock.finish()
            current_app.extensions["lens.legs"].remove(self.leg)
            if self.media.connected:
                with self.sock.unit():
                    log_media(self.session_id, "media_closed", CUSTOMER)
            if arrived:
                self.leave_after_grace()

    # --- presence -----------------------------------------------------------------------

    def presence(self, change) -> bool:
        """Record that this page came or went (change: lifecycle.customer_arrived or _left)."""

        def write() -> None:
            change(db.session, self.session_id, self.link, now_utc())
            db.session.commit()

        try:
            retrying(db.session, write, current_app.config["LENS_DB_BUSY_SECONDS"])
        except DatabaseBusy:
            log.warning("presence of session %s not recorded: database busy", self.session_id)
            return False
        return True

    def leave_after_grace(self) -> None:
        """The customer left, unless another page of theirs comes within the grace period.

        Waits beside the socket's own thread (greenlet), so that the socket's slot is free
        for the reconnect; the conditional UPDATE (lifecycle.customer_left) decides.
        """
        app = current_app._get_current_object()
        grace = app.config["LENS_CUSTOMER_GRACE_SECONDS"]

        def later() -> None:
            time.sleep(grace)
            with app.app_context():
                try:
                    self.presence(lifecycle.customer_left)
                except SQLAlchemyError as exc:  # the database gone away meanwhile: say so
                    log.warning(
                        "customer's departure from session %s not recorded: %s",
                        self.session_id,
                        exc,
                    )
                finally:
                    db.session.remove()

        threading.Thread(target=later, daemon=True).start()

    # --- pushes -------------------------------------------------------------------------

    def push_screen(self) -> bool:
        """Send the status screen if the state (or recording) changed; False once it is over."""
        lens_session = db.session.get(LensSession, self.session_id)
        if lens_session is None:
            return False
        recording = open_recording(db.session, self.session_id) is not None
        screen = (lens_session.state, recording, lens_session.technician_id)
        if screen != self.last_screen:
            self.last_screen = screen
            html = ""
            if lens_session.state != SessionState.CONNECTING:  # the join steps are the page's
                html = render_template(
                    "customer/_status.html", s=lens_session, recording=recording, oob=True
                )
            if "chat" not in self.features(lens_session):
                # started in the Web Console (no chat there), perhaps after the page was
                # rendered with one: its slot, always on the page, is emptied
                html += EMPTY_CHAT_SLOT
            if html:
                self.sock.send_html(html)
        return lens_session.is_live

    def push_chat(self) -> None:
        lens_session = db.session.get(LensSession, self.session_id)
        if lens_session is None or "chat" not in self.features(lens_session):
            return
        self.sock.send_html(
            render_template(
                "chat/_chat_log.html",
                messages=db.session.scalars(session_chat(self.session_id)),
                log_id="phone-chat-log",
                viewer=CUSTOMER,
                oob=True,
            )
        )

    def on_bus(self, message: Message) -> None:
        if message.get("type") in ("session", "resync"):  # resync: the bus reconnected
            if not self.push_screen():
                self.sock.close(CLOSE_NORMAL, "session over")
            return
        if not control_handlers().delivers(CUSTOMER, message):
            return
        if message.get("type") == "chat":
            message = dict(message, html=render_chat_line(message, CUSTOMER))
        self.sock.send_json(message)

    def still_here(self) -> None:
        """Tell the sweep that the customer's page is open, every SEEN_EVERY_SECONDS."""
        if time.monotonic() - self.seen_at < SEEN_EVERY_SECONDS:
            return
        self.seen_at = time.monotonic()

        try:  # one try: the next beat comes in half a minute, nothing waits for this one
            lifecycle.customer_seen(db.session, self.session_id, now_utc())
            db.session.commit()
        except SQLAlchemyError as exc:
            db.session.rollback()
            log.warning("could not mark session %s seen: %s", self.session_id, exc)

    def features(self, lens_session: LensSession) -> frozenset[str]:
        return customer_features(lens_session)

    # --- the page's messages --------------------------------------------------------------

    def receive(self, raw: Any) -> None:
        """One message from the page: checked by its schema (lens.sockets.messages), then done."""
        self.sock.dispatch(raw, PHONE, self.on_message)

    def on_message(self, message: PageMessage) -> None:
        if isinstance(message, Offer):
            self.offer(message)
        elif isinstance(message, ControlMessage):
            lens_session = db.session.get(LensSession, self.session_id)
            if lens_session is None:
                return
            allowed = self.features(lens_session)
            error = receive_control(self.session_id, CUSTOMER, CUSTOMER, allowed, message)
            if error is not None:
                self.sock.send_json(error)
        else:  # a type in the schema without a handler here
            raise TypeError(f"no handler for {message.type}")

    def offer(self, message: Offer) -> None:
        """The phone's leg, prepared on the waiting screen so that Start is quick."""
        lens_session = db.session.get(LensSession, self.session_id)
        if lens_session is None or lens_session.state not in MEDIA_STATES:
            self.sock.send_json({"type": "error", "reason": "refused", "ref": message.ref})
            return
        features = self.features(lens_session)
        ice_servers = setting("LENS_ICE_SERVERS")  # the Admin Center's STUN/TURN servers
        control = media_control()
        legs = current_app.extensions["lens.legs"]
        session_id = self.session_id

        answered_by: list[str] = []  # the sidecar process that took the leg

        def answer(offer: dict[str, str]) -> dict[str, str]:
            reply = control.publisher_offer(session_id, offer, features, ice_servers)
            legs.remove(self.leg)  # the new leg replaces the old one on the sidecar
            self.leg = legs.add(session_id, reply, self.reconnect)
            answered_by.append(str(reply.get("boot") or ""))
            return reply

        def work() -> None:
            try:
                reply = exchange_offer(message, answer)
            finally:
                self.offer_slots.release()
            self.media.replied(session_id, CUSTOMER, reply)
            self.sock.send_json(reply)
            if reply["type"] == "answer":
                record_if_forced(session_id, answered_by[-1] if answered_by else "")

        if not self.offer_slots.acquire(blocking=False):
            self.sock.send_json(busy(message))
            return
        self.sock.spawn(work)

    def reconnect(self) -> None:
        """The sidecar under this page's leg is gone: the page offers again now."""
        self.sock.send_json({"type": "media_reconnect"})


def record_if_forced(session_id: int, boot: str = "") -> None:
    """A forced-recording session whose phone (re)connected after Start records now.

    `boot`: the sidecar process that answered the phone. A recording still open but written
    by another one was cut off with its sidecar: it is closed first (what the recording
    watch would do a moment later), so that the forced recording starts again at once.
    """
    from lens.captures.views import start_forced_recording
    from lens.sidecars.watch import close_lost_recording

    db.session.rollback()  # read the session as it is now
    lens_session = db.session.get(LensSession, session_id)
    if lens_session is None:
        return
    recording = open_recording(db.session, session_id)
    if boot and recording is not None and recording.media_boot not in (None, boot):
        close_lost_recording(recording.id)
        db.session.rollback()
        lens_session = db.session.get(LensSession, session_id)
    start_forced_recording(lens_session, started_in(lens_session))
