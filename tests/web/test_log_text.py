"""Log lines are said from the event's data (and older lines from their detail text)."""

from __future__ import annotations

import pytest

from lens.console.log_text import event_text
from lens.sessions.models import SessionEvent


def line(kind: str, *, detail=None, data=None, actor="technician:1") -> dict:
    """An event's fields (made into a SessionEvent once the app has set the models up)."""
    return {"kind": kind, "detail": detail, "data": data, "actor": actor}


@pytest.mark.parametrize(
    ("event", "text"),
    [
        (line("freeze", data={"on": True}), "Picture frozen"),
        (line("freeze", data={"on": False}), "Picture unfrozen"),
        (line("freeze", detail='{"on": true}'), "Picture frozen"),  # an older line
        (line("quality", data={"level": "medium"}), "Video quality set to Medium"),
        (line("quality", data={"level": "<script>"}), "Video quality set to High"),
        (line("camera", data={"facing": "user"}), "Technician asked for the front camera"),
        (line("capabilities", data={"torch": True, "cameras": 2}, actor="customer"),
         "Customer's camera: flashlight available"),
        (line("device_result", data={"control": "torch", "ok": False}, actor="customer"),
         "Customer's phone could not change the flashlight"),
        (line("transfer", data={"from": "Tess", "to": "Otto"}),
         "Session transferred from Tess to Otto"),
        (line("transfer", detail="Tess\nOtto"), "Session transferred from Tess to Otto"),
        (line("invite_failed", data={"channel": "sms", "to": "+31 6 ****5678", "error": "busy"}),
         "SMS to +31 6 ****5678 failed: busy"),
        (line("invite_sent", detail="email j***@example.com"), "E-mail sent to j***@example.com"),
        (line("end", detail="customer_left"),
         "Session ended (the customer's page was closed)"),
        (line("media_connected", actor="customer"), "Customer's camera connected"),
        (line("media_unavailable", actor="customer"),
         "The media server is not answering: the customer's camera waits for it"),
        (line("media_unavailable", actor="technician"),
         "The media server is not answering: the technician's video waits for it"),
        (line("something_new", detail="x"), "something_new: x"),
    ],
)  # fmt: skip
def test_each_kind_of_line(app, event, text):
    with app.test_request_context(headers={"Accept-Language": "en"}):
        assert event_text(SessionEvent(**event)) == text


def test_lines_are_in_the_readers_language(app):
    with app.test_request_context(headers={"Accept-Language": "nl"}):
        assert event_text(SessionEvent(**line("freeze", data={"on": True}))) == "Beeld bevroren"
        moved = SessionEvent(**line("transfer", data={"from": "Tess", "to": "Otto"}))
        assert "Otto" in event_text(moved) and "Tess" in event_text(moved)
