"""`python -m lens.media`: run the media sidecar.

With LENS_MEDIA_STANDBY=1 (what the run command starts as its spare, lens/run.py) it loads
everything, says "ready" on stdout, and waits: it serves once a line comes on stdin (the
sidecar died: this one takes its port at once, without the seconds a fresh start spends
importing), and stops when stdin closes.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys

from aiohttp import web

from lens.logs import configure_logging
from lens.media import native, passthrough
from lens.media.app import make_app
from lens.media.config import event_loop_factory, load_config
from lens.media.stalls import install_from_env

STANDBY = "LENS_MEDIA_STANDBY"


def main() -> None:
    """Read the environment, build the app, serve until SIGINT/SIGTERM."""
    configure_logging("media")
    install_from_env()  # LENS_MEDIA_STALLS: diagnostics only
    try:
        config = load_config()
    except ValueError as exc:  # a bad setting: say which, and stop
        logging.getLogger("lens.media").error("%s", exc)
        raise SystemExit(2) from exc
    app = make_app(config)
    if os.environ.get(STANDBY) == "1" and not wait_for_go():
        return
    if config.gc_freeze:  # LENS_MEDIA_GC_FREEZE
        settle_heap()
    if passthrough.NATIVE is None and native.enabled():
        logging.getLogger("lens.media").warning(
            "the native steps are not built (%s): the Python twins forward every packet, at "
            "more CPU per session; bin/setup builds them",
            native.TARGET.name,
        )
    loop = event_loop_factory(config.event_loop)()  # LENS_MEDIA_LOOP
    asyncio.set_event_loop(loop)
    web.run_app(app, host=config.host, port=config.port, print=None, loop=loop)


def settle_heap() -> None:
    """Hide what start-up made from the collector: full collections walk half as much.

    A full collection walks every tracked object in one go, in the event loop that forwards
    every packet: the modules of aiortc, PyAV and aiohttp alone are ~57,000 objects, and
    20 sessions add 50,000-100,000 more, a pause of 30-80 ms (lens/media/README.md,
    "Pauses"). `gc.freeze()` puts start-up's objects where no collection looks. The
    thresholds stay CPython's: a closed session's cycles (and the packets they hold) wait
    for the next full collection, so fewer full collections would keep them longer.
    """
    gc.collect()
    gc.freeze()


def wait_for_go() -> bool:
    """A standby: True once told to serve, False when the run command went away first."""
    try:
        try:
            sys.stdout.write("ready\n")
            sys.stdout.flush()
        except OSError:  # nobody reads it (any more): the line on stdin is what counts
            pass
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # anything printed later: the log
        return bool(sys.stdin.buffer.readline())
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group
        return False


if __name__ == "__main__":
    main()
