"""Ending a technician's log-ins at once (a minimal version; see issue 12 for the full one).

A deactivated account is refused by the user loader on its next request, so every open
tab loses its log-in; the open console's live socket is told too, and shows the log-in
link instead of the console (lens.console.live).
"""

from __future__ import annotations

from flask import current_app

from lens.events.publishing import technician_topic

SIGNED_OUT = "signed_out"


def sign_out_everywhere(technician_id: int) -> None:
    """Tell every open console of the technician that their log-in has ended."""
    bus = current_app.extensions["lens.events"]
    bus.publish(technician_topic(technician_id), {"type": SIGNED_OUT})
