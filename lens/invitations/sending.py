"""Run a blocking send in a worker thread so a web request waits at most a time-out."""

import contextvars
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from lens.invitations.errors import InvitationError

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What became of a send: ok, or the message to show the technician."""

    ok: bool
    error: str | None = None


def send_with_timeout(fn: Callable[[], object], timeout: float) -> Outcome:
    """Call fn in a worker thread; give up waiting after timeout seconds.

    The worker runs in a copy of the caller's context, so Flask's current_app (which
    Flask-Mail needs) is there. A worker that outlives the time-out is abandoned; the
    backends' own socket time-outs end it.
    """
    future: Future[object] = Future()
    context = contextvars.copy_context()

    def work() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(context.run(fn))
        except BaseException as exc:  # handed to the waiting request, not swallowed
            future.set_exception(exc)

    threading.Thread(target=work, name="lens-invitation-send", daemon=True).start()
    try:
        future.result(timeout=timeout)
    except FutureTimeout:
        _log.warning("Invitation send still running after %g s; not waiting longer", timeout)
        return Outcome(ok=False, error=f"Sending did not finish within {timeout:g} seconds.")
    except InvitationError as exc:
        return Outcome(ok=False, error=exc.message)
    except Exception:
        _log.exception("Invitation send failed unexpectedly")
        return Outcome(ok=False, error="The invitation could not be sent because of an error.")
    return Outcome(ok=True)
