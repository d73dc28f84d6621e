"""send_with_timeout: the web request waits at most the time-out, and gets a message."""

import contextvars
import logging
import threading
import time

import pytest

from lens.invitations.errors import InvitationSendError
from lens.invitations.sending import Outcome, send_with_timeout

caller_value: contextvars.ContextVar[str] = contextvars.ContextVar("caller_value")


def test_success_is_ok() -> None:
    ran = threading.Event()
    assert send_with_timeout(ran.set, timeout=5) == Outcome(ok=True, error=None)
    assert ran.is_set()


def test_invitation_error_message_is_handed_on() -> None:
    def refuse() -> None:
        raise InvitationSendError("Twilio refused the SMS: bad number")

    assert send_with_timeout(refuse, timeout=5) == Outcome(
        ok=False, error="Twilio refused the SMS: bad number"
    )


def test_unexpected_error_is_logged_not_shown(caplog: pytest.LogCaptureFixture) -> None:
    def crash() -> None:
        raise KeyError("internal detail")

    with caplog.at_level(logging.ERROR, logger="lens.invitations.sending"):
        outcome = send_with_timeout(crash, timeout=5)
    assert not outcome.ok
    assert outcome.error is not None and "internal detail" not in outcome.error
    assert any(record.exc_info for record in caplog.records)


def test_a_hanging_send_is_abandoned_after_the_timeout() -> None:
    release = threading.Event()
    try:
        started = time.monotonic()
        outcome = send_with_timeout(lambda: release.wait(30), timeout=0.3)
        elapsed = time.monotonic() - started
    finally:
        release.set()
    assert 0.3 <= elapsed < 1.5
    assert outcome == Outcome(ok=False, error="Sending did not finish within 0.3 seconds.")


def test_the_worker_sees_the_callers_context() -> None:
    seen: list[str] = []
    token = caller_value.set("from the request")
    try:
        outcome = send_with_timeout(lambda: seen.append(caller_value.get()), timeout=5)
    finally:
        caller_value.reset(token)
    assert outcome.ok
    assert seen == ["from the request"]
