"""The session's control messages between the technician's page and the phone.

Plain Python: which side may send which message, which feature it needs, and what a
well-formed one looks like (a pydantic model per type, lens.sockets.messages puts them on
the pages' sockets). Anything else is refused before it reaches a handler or the other side.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import unicodedata
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from lens import features

TECHNICIAN = "technician"
CUSTOMER = "customer"
MAX_RAW = 16 * 1024
MAX_CHAT = 1000
BAD_MESSAGE = "bad_message"
# refusals a sender is told by name (the chat box says why), by the error type that says
# it; anything else is bad_message (pydantic's own types, e.g. its list "too_long", too)
NAMED_REASONS = {"lens_empty": "empty", "lens_too_long": "too_long"}


class ControlRefused(Exception):
    """A message that is not passed on; `reason` names why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PageMessage(BaseModel):
    """One JSON message from a page: unknown fields are dropped, nothing is coerced."""

    model_config = ConfigDict(extra="ignore", frozen=True, hide_input_in_errors=True)

    type: str
    MAX_RAW: ClassVar[int] = MAX_RAW  # the longest text this type may arrive as

    def payload(self) -> dict[str, Any]:
        """The clean message without its envelope (type, session, ref)."""
        return self.model_dump(exclude={"type", "session", "ref"})


class ControlMessage(PageMessage):
    """A session's control message (the registry below names each kind)."""


@dataclass(frozen=True)
class ControlType:
    """One kind of message: who may send it, the feature it needs, its model."""

    name: str
    senders: frozenset[str]
    feature: str | None
    model: type[ControlMessage]


REGISTRY: dict[str, ControlType] = {}


def control(name: str, senders: set[str], feature: str | None = None):
    """Register a message type with its model (the decorated class)."""

    def register(model: type[ControlMessage]) -> type[ControlMessage]:
        assert model.model_fields["type"].annotation == Literal[name], name
        REGISTRY[name] = ControlType(name, frozenset(senders), feature, model)
        return model

    return register


def reason_of(error: ValidationError) -> str:
    """What a sender is told of a refused message: a named reason, or bad_message."""
    for detail in error.errors():
        if detail["type"] in NAMED_REASONS:
            return NAMED_REASONS[detail["type"]]
    return BAD_MESSAGE


def validated(model: type[PageMessage], message: dict[str, Any]) -> PageMessage:
    """The message as model, or ControlRefused."""
    try:
        return model.model_validate(message)
    except ValidationError as exc:
        raise ControlRefused(reason_of(exc)) from exc
    except (TypeError, ValueError, RecursionError) as exc:  # never a handler's traceback
        raise ControlRefused(BAD_MESSAGE) from exc


@control("freeze", {TECHNICIAN}, features.FREEZE_DRAWING)
class Freeze(ControlMessage):
    type: Literal["freeze"]
    on: StrictBool


@control("quality", {TECHNICIAN}, features.DISPLAY_SETTINGS)
class Quality(ControlMessage):
    type: Literal["quality"]
    level: Literal["low", "medium", "high"]


@control("torch", {TECHNICIAN}, features.DEVICE_CONTROLS)
class Torch(ControlMessage):
    type: Literal["torch"]
    on: StrictBool


@control("camera", {TECHNICIAN}, features.DEVICE_CONTROLS)
class Camera(ControlMessage):
    type: Literal["camera"]
    facing: Literal["environment", "user"]


@control("camera_paused", {CUSTOMER})
class CameraPaused(ControlMessage):
    type: Literal["camera_paused"]
    on: StrictBool


MAX_CAMERAS = 8


@control("capabilities", {CUSTOMER})
class Capabilities(ControlMessage):
    """What the phone's camera can do; more cameras than MAX_CAMERAS count as that many."""

    type: Literal["capabilities"]
    torch: StrictBool
    cameras: Annotated[StrictInt, Field(ge=0), AfterValidator(lambda n: min(n, MAX_CAMERAS))] = 1


# Drawing on the video: one finished shape per message, in coordinates normalised to the
# video's picture (0..1 from its left/top edge), so each side draws it at the same place.
DrawKind = Literal["arrow", "circle", "line", "text"]
DrawColor = Literal["#e53935", "#fdd835", "#43a047", "#1e88e5", "#ffffff", "#000000"]
DRAW_KINDS = frozenset(get_args(DrawKind))
DRAW_COLORS = frozenset(get_args(DrawColor))
DRAW_WIDTHS = range(1, 17)
MAX_POINTS = 500
MAX_DRAW_TEXT = 200
# how many points each kind needs: arrow and circle (centre, rim) two, text its anchor
POINT_COUNTS = {"arrow": (2, 2), "circle": (2, 2), "line": (2, MAX_POINTS), "text": (1, 1)}

# a fraction of the picture, kept to 4 decimals (a tenth of a pixel on a 4K picture)
Coordinate = Annotated[
    float,
    Field(strict=True, ge=0, le=1, allow_inf_nan=False),
    AfterValidator(lambda value: round(float(value), 4)),
]
Point = Annotated[list[Coordinate], Field(min_length=2, max_length=2)]

# An anchored drawing (docs/tools.md): its id, and what it covers on the frame it was drawn
# on (ORB keypoints as picture fractions and their 32-byte descriptors, base64), so each
# screen finds that content in the frame it shows and keeps the drawing on it. `frame` is
# the technician's picture it refers to (its RTP timestamp; none on a frozen picture).
# A pinned drawing (or one without an anchor) stays at its screen place.
DRAW_ID = r"^[A-Za-z0-9_-]{1,32}$"
ANCHOR_POINTS = (8, 64)
DESCRIPTOR_BYTES = 32
MAX_FRAME = 2**32 - 1
MAX_DESCRIPTORS = 4 * ANCHOR_POINTS[1] * DESCRIPTOR_BYTES // 3 + 4


class Anchor(BaseModel):
    """What an anchored drawing covers on its frame: keypoints and their descriptors."""

    model_config = ConfigDict(extra="ignore", frozen=True, hide_input_in_errors=True)

    frame: Annotated[StrictInt, Field(ge=0, le=MAX_FRAME)] | None = None
    points: Annotated[list[Point], Field(min_length=ANCHOR_POINTS[0], max_length=ANCHOR_POINTS[1])]
    descriptors: Annotated[StrictStr, Field(max_length=MAX_DESCRIPTORS)]

    @model_validator(mode="after")
    def _one_descriptor_a_point(self) -> Anchor:
        try:
            raw = base64.b64decode(self.descriptors, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("descriptors are not base64") from exc
        if len(raw) != DESCRIPTOR_BYTES * len(self.points):
            raise ValueError("one descriptor a keypoint")
        return self


def _no_control_characters(text: str) -> str:
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise ValueError("control characters")
    return text


@control("draw", {TECHNICIAN}, features.FREEZE_DRAWING)
class Draw(ControlMessage):
    type: Literal["draw"]
    kind: DrawKind
    color: DrawColor
    width: Annotated[StrictInt, Field(ge=DRAW_WIDTHS.start, le=DRAW_WIDTHS.stop - 1)]
    points: Annotated[list[Point], Field(min_length=1, max_length=MAX_POINTS)]
    text: Any = None  # the text kind's words; other kinds drop whatever came
    id: Annotated[StrictStr, Field(pattern=DRAW_ID)] | None = None
    pinned: StrictBool = False
    anchor: Anchor | None = None

    @model_validator(mode="after")
    def _shape(self) -> Draw:
        fewest, most = POINT_COUNTS[self.kind]
        if not fewest <= len(self.points) <= most:
            raise ValueError(f"a {self.kind} has {fewest} to {most} points")
        if self.kind == "text":
            if not isinstance(self.text, str):
                raise ValueError("text needs its words")
            words = _no_control_characters(self.text.strip())
            if not words or len(words) > MAX_DRAW_TEXT:
                raise ValueError(f"text has 1 to {MAX_DRAW_TEXT} characters")
        if self.anchor is not None and (self.id is None or self.pinned):
            raise ValueError("an anchor belongs to a tracked drawing")
        return self

    def payload(self) -> dict[str, Any]:
        shape: dict[str, Any] = {
            "kind": self.kind,
            "color": self.color,
            "width": self.width,
            "points": [list(point) for point in self.points],
        }
        if self.kind == "text":
            shape["text"] = self.text.strip()
        if self.id is not None:
            shape["id"] = self.id
            shape["pinned"] = self.pinned
        if self.anchor is not None:
            shape["anchor"] = self.anchor.model_dump()
        return shape


@control("erase", {TECHNICIAN}, features.FREEZE_DRAWING)
class Erase(ControlMessage):
    type: Literal["erase"]


@control("device_result", {CUSTOMER}, features.DEVICE_CONTROLS)
class DeviceResult(ControlMessage):
    """The phone's answer to a flashlight or camera request: done, or not possible."""

    type: Literal["device_result"]
    control: Literal["torch", "camera"]
    ok: StrictBool


@control("chat", {TECHNICIAN, CUSTOMER}, features.CHAT)
class Chat(ControlMessage):
    """Plain text (never rendered as HTML), 1 to MAX_CHAT characters, newlines allowed."""

    type: Literal["chat"]
    text: StrictStr

    @field_validator("text")
    @classmethod
    def _clean(cls, text: str) -> str:
        text = text.replace("\r\n", "\n").strip()
        if not text:
            raise PydanticCustomError("lens_empty", "type a message first")
        if len(text) > MAX_CHAT:
            raise PydanticCustomError("lens_too_long", "at most {n} characters", {"n": MAX_CHAT})
        if any(c != "\n" and unicodedata.category(c) == "Cc" for c in text):
            raise ValueError("control characters")
        return text


def senders_types(sender: str) -> dict[str, type[ControlMessage]]:
    """The control messages `sender`'s page may send, by type."""
    return {name: kind.model for name, kind in REGISTRY.items() if sender in kind.senders}


def check_feature(kind: str, allowed: frozenset[str]) -> None:
    """Refuse (not_allowed) a kind whose feature the session may not use."""
    feature = REGISTRY[kind].feature
    if feature is not None and feature not in allowed:
        raise ControlRefused("not_allowed")


# A full-resolution photo (lens.captures.photos): the technician's page names each request;
# the phone uploads the photo with that name (its URL is checked against PHOTO_REQUEST),
# or says it could not take one.
PHOTO_REQUEST = re.compile(r"[A-Za-z0-9_-]{8,32}")


class PhotoMessage(ControlMessage):
    """A message about one photo request, by the name the technician's page gave it."""

    request: Annotated[StrictStr, Field(pattern=f"^{PHOTO_REQUEST.pattern}$")]


@control("photo", {TECHNICIAN}, features.SNAPSHOT)
class Photo(PhotoMessage):
    """Ask the phone for a full-resolution photo, named by the technician's page."""

    type: Literal["photo"]


@control("photo_failed", {CUSTOMER}, features.SNAPSHOT)
class PhotoFailed(PhotoMessage):
    """The phone could not take the photo asked for."""

    type: Literal["photo_failed"]


def parse(raw: Any, sender: str, allowed: frozenset[str]) -> tuple[str, dict[str, Any]]:
    """Check one raw WebSocket message from sender; return (type, clean payload)."""
    if not isinstance(raw, str) or len(raw) > MAX_RAW:
        raise ControlRefused(BAD_MESSAGE)
    try:
        message = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ControlRefused(BAD_MESSAGE) from exc
    return parse_message(message, sender, allowed)


def parse_message(message: Any, sender: str, allowed: frozenset[str]) -> tuple[str, dict[str, Any]]:
    """Check one decoded message from sender; return (type, clean payload)."""
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ControlRefused(BAD_MESSAGE)
    kind = REGISTRY.get(message["type"])
    if kind is None or sender not in kind.senders:
        raise ControlRefused(BAD_MESSAGE)
    check_feature(kind.name, allowed)
    return kind.name, validated(kind.model, message).payload()
