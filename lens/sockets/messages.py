"""What each page may send on its socket: one schema, checked before any handler runs.

Plain Python (pydantic models, no Flask). A page's message is a JSON object whose "type"
names its model: the console's panel and dialog messages, an SDP offer, or one of the
session's control messages (lens.controls.messages; a console names the session it means).
Anything else is a `BadMessage`: the page is answered `bad_message` and its socket stays
open (lens.sockets.page).
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, Field, StrictInt, StrictStr, ValidationError, create_model

from lens.controls.messages import (
    BAD_MESSAGE,
    CUSTOMER,
    TECHNICIAN,
    ControlMessage,
    PageMessage,
    reason_of,
    senders_types,
)
from lens.database import MAX_ID  # a database id

MAX_SDP = 64 * 1024  # an offer with every candidate; the socket's own limit is larger
MAX_REF = 2**53  # a JavaScript number the page can count with
SDP_LINE = re.compile(r"[a-z]=[^\x00-\x08\x0a-\x1f\x7f]*")

SessionId = Annotated[StrictInt, Field(ge=1, le=MAX_ID)]
Ref = Annotated[StrictInt, Field(ge=0, le=MAX_REF)] | Annotated[StrictStr, Field(max_length=64)]


def _sdp_lines(sdp: str) -> str:
    """An SDP's shape (RFC 8866): `x=value` lines from `v=0`, with at least one media section."""
    lines = sdp.replace("\r\n", "\n").rstrip("\n").split("\n")
    if lines[0] != "v=0" or not all(SDP_LINE.fullmatch(line) for line in lines):
        raise ValueError("not an SDP")
    if not any(line.startswith("m=") for line in lines):
        raise ValueError("an offer without media")
    return sdp


Sdp = Annotated[StrictStr, Field(max_length=MAX_SDP), AfterValidator(_sdp_lines)]


class Offer(PageMessage):
    """A media leg's SDP offer (non-trickle); the answer carries `ref` back."""

    type: Literal["offer"]
    ref: Ref | None = None
    sdp: Sdp
    MAX_RAW: ClassVar[int] = MAX_SDP + 1024


class SessionOffer(Offer):
    """A console's offer names the session whose video it wants."""

    session: SessionId


class OpenPanel(PageMessage):
    """The console shows this session's panel."""

    type: Literal["open"]
    session: SessionId


class ClosePanel(PageMessage):
    """The console shows no session's panel."""

    type: Literal["close"]


class WatchDialog(PageMessage):
    """The New session window shows this session (None: it closed)."""

    type: Literal["dialog"]
    session: SessionId | None = None


def for_a_session(model: type[ControlMessage]) -> type[ControlMessage]:
    """A control message as a console sends it: with the session it is meant for."""
    return create_model(
        f"Session{model.__name__}",
        __base__=model,
        __module__=__name__,
        session=(SessionId, ...),
    )


class BadMessage(Exception):
    """A message no handler may see; `reason` is what the page is told, `echo` what it
    named (its ref, its session) so that it can match the answer."""

    def __init__(self, reason: str, detail: str, echo: dict[str, Any]) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.echo = echo


class PageSchema:
    """The messages one kind of page may send, by type."""

    def __init__(self, page: str, models: dict[str, type[PageMessage]]) -> None:
        self.page = page
        self.models = models
        self.max_raw = max(model.MAX_RAW for model in models.values())

    @property
    def types(self) -> frozenset[str]:
        return frozenset(self.models)

    def parse(self, raw: Any) -> PageMessage:
        """The message as its model, or BadMessage."""
        if not isinstance(raw, str):
            raise BadMessage(BAD_MESSAGE, "not a text message", {})
        if len(raw) > self.max_raw:
            raise BadMessage(BAD_MESSAGE, f"{len(raw)} characters", {})
        try:
            message = json.loads(raw)
        except (ValueError, RecursionError):
            raise BadMessage(BAD_MESSAGE, "not JSON", {}) from None
        return self.check(message, len(raw))

    def check(self, message: Any, size: int = 0) -> PageMessage:
        """A decoded message as its model, or BadMessage."""
        if not isinstance(message, dict):
            raise BadMessage(BAD_MESSAGE, "not a JSON object", {})
        echo = _echo(message)
        kind = message.get("type")
        model = self.models.get(kind) if isinstance(kind, str) else None
        if model is None:
            what = f"type {kind[:32]!r}" if isinstance(kind, str) else "no type"
            raise BadMessage(BAD_MESSAGE, f"{what} is not one of the {self.page}'s", echo)
        if size > model.MAX_RAW:
            raise BadMessage(BAD_MESSAGE, f"{kind}: {size} characters", echo)
        try:
            return model.model_validate(message)
        except ValidationError as exc:
            raise BadMessage(reason_of(exc), f"{kind}: {_summary(exc)}", echo) from None
        except (TypeError, ValueError, RecursionError) as exc:
            raise BadMessage(BAD_MESSAGE, f"{kind}: {type(exc).__name__}", echo) from None


def _echo(message: dict[str, Any]) -> dict[str, Any]:
    """The message's ref and session, where they are what a page sends (for its answer)."""
    echo = {}
    ref = message.get("ref")
    if (isinstance(ref, int) and not isinstance(ref, bool) and 0 <= ref <= MAX_REF) or (
        isinstance(ref, str) and len(ref) <= 64
    ):
        echo["ref"] = ref
    session = message.get("session")
    if isinstance(session, int) and not isinstance(session, bool) and 1 <= session <= MAX_ID:
        echo["session"] = session
    return echo


def _summary(error: ValidationError) -> str:
    """Where and what, for one log line: never the sender's input itself."""
    details = error.errors(include_input=False, include_url=False, include_context=False)
    parts = [
        ".".join(str(at) for at in detail["loc"]) + ": " + detail["type"] for detail in details
    ]
    more = f" (+{len(parts) - 3})" if len(parts) > 3 else ""
    return ", ".join(parts[:3])[:300] + more


CONSOLE = PageSchema(
    "console",
    {
        "open": OpenPanel,
        "close": ClosePanel,
        "dialog": WatchDialog,
        "offer": SessionOffer,
        **{name: for_a_session(model) for name, model in senders_types(TECHNICIAN).items()},
    },
)
PHONE = PageSchema("phone", {"offer": Offer, **senders_types(CUSTOMER)})
