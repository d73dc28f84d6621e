"""Domain errors of the session lifecycle; the web layer turns them into clear messages."""


class SessionError(Exception):
    """A refused action on a Lens session; `code` names it for the web layer."""

    code = "session_error"

    def __init__(self, message: str = "") -> None:
        super().__init__(message or self.code)


class InvalidTransition(SessionError):
    code = "invalid_transition"

    def __init__(self, action: str, state: str) -> None:
        self.action = action
        self.state = state
        super().__init__(f"cannot {action} a session that is {state}")


class OneActiveSession(SessionError):
    code = "one_active_session"


class NotYourSession(SessionError):
    code = "not_your_session"


class PinNotValid(SessionError):
    code = "pin_not_valid"


class PinUsed(PinNotValid):
    """The PIN was valid and a customer joined with it: it works once."""

    code = "pin_used"


class PinExpired(PinNotValid):
    """The PIN was given out, but its validity passed before a customer joined with it."""

    code = "pin_expired"


class LinkNotValid(SessionError):
    code = "link_not_valid"


class LinkUnknown(LinkNotValid):
    """No session has this token: a link cut short or mistyped, not one that expired."""

    code = "link_unknown"


class OtherDevice(SessionError):
    code = "other_device"


class TransferRefused(SessionError):
    code = "transfer_refused"


class CustomerAway(SessionError):
    code = "customer_away"
