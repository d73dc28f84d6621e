"""One WebSocket per page: pushes, control messages and signaling (lens.sockets.page)."""

from lens.sockets.limits import SocketLimits, TokenBucket, TooManySockets
from lens.sockets.page import (
    CLOSE_NORMAL,
    CLOSE_POLICY,
    CLOSE_TOO_BIG,
    CLOSE_TRY_LATER,
    PageSocket,
    serve,
)

__all__ = [
    "CLOSE_NORMAL",
    "CLOSE_POLICY",
    "CLOSE_TOO_BIG",
    "CLOSE_TRY_LATER",
    "PageSocket",
    "SocketLimits",
    "TokenBucket",
    "TooManySockets",
    "serve",
]
