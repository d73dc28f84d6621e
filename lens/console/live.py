"""The console page's one socket: its list, the open session's panel, controls and media.

Pushes are HTML, and only what changed: a session whose state changed gets its row (and
its head, where its panel is open); a new log line is appended as one `<li>`; chat goes out
as one rendered line. Nothing is sent for a panel that is not open on this page.

The page says which session's panel is open ({"type": "open", "session": id}); its control
messages and offers name that session. On (re)connecting the page gets the list as it is,
and on "open" the panel's head, log and chat as they are, so nothing is missed.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from flask import current_app, render_template
from sqlalchemy import select

from lens.admin.settings import setting
from lens.admin.setup import SEEN_EVERY, technician_seen
from lens.auth.revocation import SIGNED_OUT, login_is_current
from lens.chat.models import session_chat
from lens.chat.rendering import render_chat_line
from lens.console.panel import render_panel
from lens.console.queries import sessions_for_list
from lens.controls.channel import control_handlers, controls_topic, receive_control, refusal
from lens.controls.messages import CUSTOMER, TECHNICIAN, ControlMessage
from lens.controls.state import ToolState
from lens.events.publishing import technician_topic
from lens.extensions import db
from lens.features import features_of
from lens.sessions.models import HANDLING_STATES, LensSession, SessionEvent
from lens.signaling.relay import (
    MediaNotes,
    busy,
    exchange_offer,
    log_media,
    media_control,
    offer_slots,
)
from lens.sockets import CLOSE_POLICY, PageSocket
from lens.sockets.messages import (
    CONSOLE,
    ClosePanel,
    OpenPanel,
    PageMessage,
    SessionOffer,
    WatchDialog,
)

Message = dict[str, Any]


class ConsolePage:
    """What one open console page sees and may do."""

    def __init__(
        self,
        sock: PageSocket,
        technician_id: int,
        actor: str,
        console: str | None = None,
        login_version: int | None = None,
    ) -> None:
        self.sock = sock
        self.console = console  # the console in use (lens.features.features_of)
        self.technician_id = technician_id
        self.actor = actor
        self.rows: set[int] = set()
        self.panel: int | None = None
        self.panel_live = False  # the open panel's session was live when it was opened
        self.dialog: int | None = None  # the session the New session window shows
        self.log_seen = 0  # the last log line the open panel has
        self.stop_controls = None
        self.media = MediaNotes()  # .connected: sessions whose video this page negotiated
        self.legs: dict[int, Any] = {}  # their legs, watched (lens.sidecars.legs)
        self.offer_slots = offer_slots()
        # the reader and the forwarders (threads under the dev server) share the page's state
        self.lock = threading.RLock()
        self.seen_at = float("-inf")
        # the log-in this socket was opened with (lens.auth.revocation): checked on every
        # message from the page, and now and then while idle
        self.login_version = login_version
        self.login_checked_at = time.monotonic()

    def run(self) -> None:
        """Serve the page until its socket closes."""
        bus = current_app.extensions["lens.events"]
        subscription = bus.subscribe([technician_topic(self.technician_id)])
        try:
            with self.sock.unit():
                self.sock.send_html(self.render_list())
                self.still_here()  # online now in the Admin Center, then once a minute
            self.sock.forward(subscription, self.on_change, on_idle=self.still_here)
            for raw in self.sock.received():
                self.receive(raw)
        finally:
            self.sock.finish()
            legs = current_app.extensions["lens.legs"]
            for leg in list(self.legs.values()):
                legs.remove(leg)
            with self.sock.unit():
                for session_id in self.media.connected:
                    log_media(session_id, "media_closed", self.actor)

    def still_here(self) -> None:
        """An open console is "online now" in the Admin Center (marked once a minute)."""
        now = time.monotonic()
        recheck = current_app.config["LENS_LOGIN_RECHECK_SECONDS"]
        if now - self.login_checked_at >= recheck and not self.login_holds():
            return
        if now - self.seen_at >= SEEN_EVERY.total_seconds():
            self.seen_at = now
            technician_seen(self.technician_id)

    # --- pushes -------------------------------------------------------------------------

    def render_list(self) -> str:
        sessions = sessions_for_list(self.technician_id)
        self.rows = {s.id for s in sessions}
        return render_template(
            "console/_session_rows.html",
            sessions=sessions,
            custom_labels=setting("LENS_CUSTOM_FIELDS"),
            oob=True,
        )

    def render_row(self, lens_session: LensSession) -> str:
        if not self.rows:  # the list still shows "No sessions yet": replace it whole
            return self.render_list()
        swap = "true" if lens_session.id in self.rows else "afterbegin:#session-rows"
        self.rows.add(lens_session.id)
        return render_template(
            "console/_session_row.html",
            s=lens_session,
            custom_labels=setting("LENS_CUSTOM_FIELDS"),
            swap=swap,
        )

    def login_holds(self) -> bool:
        """Whether the log-in this socket was opened with still holds; if not, it closes."""
        self.login_checked_at = time.monotonic()
        if self.login_version is None or login_is_current(
            db.session, self.technician_id, self.login_version
        ):
            return True
        self.signed_out(None)
        return False

    def signed_out(self, reason: str | None) -> None:
        """The log-in has ended (lens.auth.revocation): say so, and close."""
        self.sock.send_html(render_template("auth/_signed_out.html", reason=reason))
        self.sock.close(CLOSE_POLICY, "signed out")

    def on_change(self, message: Message) -> None:
        """A session of this technician's changed (state, owner, or a new log line)."""
        if message.get("type") == SIGNED_OUT:  # every log-in of the account ended
            self.signed_out(message.get("reason"))
            return
        with self.lock:
            self._on_change(message)

    def _on_change(self, message: Message) -> None:
        if message.get("type") == "resync":  # the bus reconnected: changes may be missed
            self.resync()
            return
        session_id = message.get("session_id")
        lens_session = db.session.get(LensSession, session_id) if session_id else None
        if lens_session is None:
            return
        if lens_session.technician_id != self.technician_id:  # transferred away
            html = ""
            if session_id in self.rows:
                self.rows.discard(session_id)
                html += f'<tr id="session-row-{session_id}" hx-swap-oob="delete"></tr>'
            if self.panel == session_id:
                html += render_template(
                    "console/_transferred.html",
                    s=lens_session,
                    receiver=lens_session.technician,
                    oob=True,
                )
                self.close_panel()
            self.sock.send_html(html)
            return
        html = ""
        changed = message.get("changed", True)
        if changed or session_id not in self.rows:
            html += self.render_row(lens_session)
        if changed and self.dialog == session_id:
            html += self.render_dialog_customer(lens_session)
        if self.panel == session_id and changed and self.panel_live and not lens_session.is_live:
            # ended elsewhere (the customer, a time-out): the whole panel, so that the video
            # and the tools go and its page stops reconnecting to media that is gone
            self.panel_live = False
            events = lens_session.events
            self.log_seen = events[-1].id if events else 0
            panel = render_panel(lens_session, self.panel_console(lens_session), self.technician_id)
            html += f'<div hx-swap-oob="innerHTML:#session-panel">{panel}</div>'
        elif self.panel == session_id:
            if changed:
                html += render_template(
                    "console/_session_head.html",
                    s=lens_session,
                    features=self.features(lens_session),
                    oob=True,
                )
            html += self.render_new_log_lines(lens_session)
            if message.get("captures"):  # e.g. a recording its sidecar lost: not "Recording"
                html += self.render_captures(lens_session)
        self.sock.send_html(html)

    def render_captures(self, lens_session: LensSession) -> str:
        if lens_session.console != "technician":
            return ""
        return render_template(
            "console/_captures.html", s=lens_session, features=self.features(lens_session), oob=True
        )

    def resync(self) -> None:
        """Everything the page shows, again (lens.events.bus: after a lost connection)."""
        html = self.render_list()
        lens_session = self.own_session(self.panel) if self.panel is not None else None
        if lens_session is not None:
            features = self.features(lens_session)
            html += render_template(
                "console/_session_head.html", s=lens_session, features=features, oob=True
            )
            html += self.render_new_log_lines(lens_session)
            html += self.render_captures(lens_session)
        self.sock.send_html(html)

    def render_dialog_customer(self, lens_session: LensSession) -> str:
        return render_template("console/_dialog_customer.html", s=lens_session, oob=True)

    def render_new_log_lines(self, lens_session: LensSession) -> str:
        events = list(
            db.session.scalars(
                select(SessionEvent)
                .where(SessionEvent.session_id == lens_session.id, SessionEvent.id > self.log_seen)
                .order_by(SessionEvent.id)
            )
        )
        if not events:
            return ""
        self.log_seen = events[-1].id
        return render_template("console/_log_lines.html", s=lens_session, events=events)

    def panel_console(self, lens_session: LensSession) -> str:
        return self.console or lens_session.console

    def features(self, lens_session: LensSession) -> frozenset[str]:
        return features_of(lens_session, self.panel_console(lens_session))

    # --- the page's messages --------------------------------------------------------------

    def receive(self, raw: Any) -> None:
        """One message from the page: checked by its schema (lens.sockets.messages), then done."""
        self.sock.dispatch(raw, CONSOLE, self.on_message)

    def on_message(self, message: PageMessage) -> None:
        if not self.login_holds():  # logged out elsewhere, password changed, deactivated
            return
        with self.lock:
            self._on_message(message)

    def _on_message(self, message: PageMessage) -> None:
        if isinstance(message, OpenPanel):
            self.open_panel(message.session)
        elif isinstance(message, ClosePanel):
            self.close_panel()
        elif isinstance(message, WatchDialog):
            self.watch_dialog(message.session)
        elif isinstance(message, SessionOffer):
            self.offer(message)
        elif isinstance(message, ControlMessage):
            self.control(message)
        else:  # a type in the schema without a handler here
            raise TypeError(f"no handler for {message.type}")

    def own_session(self, session_id: Any) -> LensSession | None:
        if not isinstance(session_id, int) or isinstance(session_id, bool):
            return None
        lens_session = db.session.get(LensSession, session_id)
        if lens_session is None or lens_session.technician_id != self.technician_id:
            return None
        return lens_session

    def open_panel(self, session_id: Any) -> None:
        """The page shows this session's panel: send it as it is, then its changes."""
        lens_session = self.own_session(session_id)
        if lens_session is None:
            self.sock.send_json({"type": "error", "reason": "not_found", "session": session_id})
            return
        self.close_panel()
        session_id = self.panel = lens_session.id
        self.panel_live = lens_session.is_live
        bus = current_app.extensions["lens.events"]
        subscription = bus.subscribe([controls_topic(session_id)])
        self.stop_controls = self.sock.forward(
            subscription, lambda message: self.on_control(message, session_id)
        )
        events = lens_session.events
        self.log_seen = events[-1].id if events else 0
        features = self.features(lens_session)
        html = render_template(
            "console/_session_head.html", s=lens_session, features=features, oob=True
        )
        html += render_template("console/_session_log.html", s=lens_session, oob=True)
        if "chat" in features:
            html += render_template(
                "chat/_chat_log.html",
                messages=db.session.scalars(session_chat(lens_session.id)),
                log_id=f"chat-log-{lens_session.id}",
                viewer=TECHNICIAN,
                oob=True,
            )
        self.sock.send_html(html)
        # what the phone last reported of its camera, read after subscribing: a report that
        # came between the panel's render and this "open" is not lost (issue 15)
        tools = ToolState.from_column(lens_session.tools)
        self.sock.send_json(
            {
                "type": "capabilities",
                "from": CUSTOMER,
                "session": lens_session.id,
                "torch": tools.torch,
                "cameras": tools.cameras,
            }
        )

    def watch_dialog(self, session_id: Any) -> None:
        """The New session window shows this session (None: it closed): send its customer line."""
        if session_id is None:
            self.dialog = None
            return
        lens_session = self.own_session(session_id)
        if lens_session is None:
            self.dialog = None
            self.sock.send_json({"type": "error", "reason": "not_found", "session": session_id})
            return
        self.dialog = lens_session.id
        self.sock.send_html(self.render_dialog_customer(lens_session))

    def close_panel(self) -> None:
        if self.stop_controls is not None:
            self.stop_controls()
        self.stop_controls = None
        self.panel = None

    def on_control(self, message: Message, session_id: int) -> None:
        """A control message on a session's channel, if its panel is still the open one."""
        with self.lock:
            if session_id != self.panel or not control_handlers().delivers(TECHNICIAN, message):
                return
        out = dict(message, session=session_id)
        if message.get("type") == "chat":
            out["html"] = render_chat_line(message, TECHNICIAN)
        self.sock.send_json(out)

    def control(self, message: ControlMessage) -> None:
        session_id = message.session
        lens_session = self.own_session(session_id)
        if lens_session is None:  # not (or no longer) this technician's
            self.sock.send_json(dict(refusal("not_allowed"), session=session_id))
            return
        if session_id != self.panel:
            self.sock.send_json(dict(refusal("not_open"), session=session_id))
            return
        allowed = self.features(lens_session)
        error = receive_control(session_id, TECHNICIAN, self.actor, allowed, message, self.console)
        if error is not None:
            self.sock.send_json(dict(error, session=session_id))

    def offer(self, message: SessionOffer) -> None:
        """The technician's video leg: answered beside the reader (the sidecar may be slow)."""
        lens_session = self.own_session(message.session)
        if lens_session is None or lens_session.state not in HANDLING_STATES:
            self.sock.send_json({"type": "error", "reason": "refused", "ref": message.ref})
            return
        session_id = lens_session.id
        ice_servers = setting("LENS_ICE_SERVERS")  # the Admin Center's STUN/TURN servers
        control = media_control()
        legs = current_app.extensions["lens.legs"]

        def reconnect() -> None:  # the sidecar under the leg is gone: offer again now
            self.sock.send_json({"type": "media_reconnect", "session": session_id})

        def answer(offer: dict[str, str]) -> dict[str, str]:
            reply = control.subscriber_offer(session_id, offer, ice_servers)
            with self.lock:  # the new leg replaces the old one on the sidecar
                legs.remove(self.legs.pop(session_id, None))
                leg = legs.add(session_id, reply, reconnect)
                if leg is not None:
                    self.legs[session_id] = leg
            return reply

        def work() -> None:
            try:
                reply = exchange_offer(message, answer)
            finally:
                self.offer_slots.release()
            self.media.replied(session_id, self.actor, reply)
            self.sock.send_json(reply)

        if not self.offer_slots.acquire(blocking=False):
            self.sock.send_json(busy(message))
            return
        self.sock.spawn(work)
