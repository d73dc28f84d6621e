"""A daemon thread in the web process that expires PINs on time and pushes the change."""

from __future__ import annotations

import logging
import threading

from flask import Flask

log = logging.getLogger(__name__)


def start_sweeper(app: Flask) -> threading.Thread | None:
    """Run the sweep every LENS_SWEEP_SECONDS (0 turns it off)."""
    every = app.config["LENS_SWEEP_SECONDS"]
    if every <= 0:
        return None
    stop = threading.Event()

    def run() -> None:
        from lens.cli import sweep_once
        from lens.extensions import db

        while not stop.wait(every):
            with app.app_context():
                try:
                    sweep_once()
                except Exception:  # a bad sweep must not kill the thread; next one retries
                    log.exception("session sweep failed")
                    db.session.rollback()

    thread = threading.Thread(target=run, name="lens-sweeper", daemon=True)
    thread.start()
    app.extensions["lens.sweeper"] = stop
    return thread
