"""The session's control messages between the technician's page and the phone.

Plain Python: which side may send which message, which feature it needs, and what a
well-formed one looks like. Anything else is refused before it reaches the other side.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lens import features

TECHNICIAN = "technician"
CUSTOMER = "customer"
MAX_RAW = 16 * 1024
MAX_CHAT = 1000


class ControlRefused(Exception):
    """A message that is not passed on; `reason` names why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


Validator = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class ControlType:
    """One kind of message: who may send it, the feature it needs, how to check it."""

    name: str
    senders: frozenset[str]
    feature: str | None
    validate: Validator


REGISTRY: dict[str, ControlType] = {}


def control(name: str, senders: set[str], feature: str | None = None):
    """Register a message type with its validator (the decorated function)."""

    def register(validate: Validator) -> Validator:
        REGISTRY[name] = ControlType(name, frozenset(senders), feature, validate)
        return validate

    return register


def _bool(payload: dict[str, Any], key: str) -> bool:
    value = payload.get(key)
    if not isinstance(value, bool):
        raise ControlRefused("bad_message")
    return value


def _choice(payload: dict[str, Any], key: str, choices: set[str]) -> str:
    value = payload.get(key)
    if value not in choices:
        raise ControlRefused("bad_message")
    return value


@control("freeze", {TECHNICIAN}, features.FREEZE_DRAWING)
def _freeze(payload: dict[str, Any]) -> dict[str, Any]:
    return {"on": _bool(payload, "on")}


@control("quality", {TECHNICIAN}, features.DISPLAY_SETTINGS)
def _quality(payload: dict[str, Any]) -> dict[str, Any]:
    return {"level": _choice(payload, "level", {"low", "medium", "high"})}


@control("torch", {TECHNICIAN}, features.DEVICE_CONTROLS)
def _torch(payload: dict[str, Any]) -> dict[str, Any]:
    return {"on": _bool(payload, "on")}


@control("camera", {TECHNICIAN}, features.DEVICE_CONTROLS)
def _camera(payload: dict[str, Any]) -> dict[str, Any]:
    return {"facing": _choice(payload, "facing", {"environment", "user"})}


@control("camera_paused", {CUSTOMER})
def _camera_paused(payload: dict[str, Any]) -> dict[str, Any]:
    return {"on": _bool(payload, "on")}


@control("capabilities", {CUSTOMER})
def _capabilities(payload: dict[str, Any]) -> dict[str, Any]:
    return {"torch": _bool(payload, "torch"), "cameras": min(int(payload.get("cameras", 1)), 8)}


# Drawing on the video: one finished shape per message, in coordinates normalised to the
# video's picture (0..1 from its left/top edge), so each side draws it at the same place.
DRAW_KINDS = frozenset({"arrow", "circle", "line", "text"})
DRAW_COLORS = frozenset({"#e53935", "#fdd835", "#43a047", "#1e88e5", "#ffffff", "#000000"})
DRAW_WIDTHS = range(1, 17)
MAX_POINTS = 500
MAX_DRAW_TEXT = 200
# how many points each kind needs: arrow and circle (centre, rim) two, text its anchor
POINT_COUNTS = {"arrow": (2, 2), "circle": (2, 2), "line": (2, MAX_POINTS), "text": (1, 1)}


def _coordinate(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ControlRefused("bad_message")
    if not math.isfinite(value) or not 0 <= value <= 1:
        raise ControlRefused("bad_message")
    return round(float(value), 4)


def _points(payload: dict[str, Any], kind: str) -> list[list[float]]:
    points = payload.get("points")
    fewest, most = POINT_COUNTS[kind]
    if not isinstance(points, list) or not fewest <= len(points) <= most:
        raise ControlRefused("bad_message")
    clean = []
    for point in points:
        if not isinstance(point, list) or len(point) != 2:
            raise ControlRefused("bad_message")
        clean.append([_coordinate(point[0]), _coordinate(point[1])])
    return clean


def _draw_text(payload: dict[str, Any]) -> str:
    text = payload.get("text")
    if not isinstance(text, str):
        raise ControlRefused("bad_message")
    text = text.strip()
    if not text or len(text) > MAX_DRAW_TEXT or any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise ControlRefused("bad_message")
    return text


# An anchored drawing (docs/tools.md): its id, and what it covers on the frame it was drawn
# on (ORB keypoints as picture fractions and their 32-byte descriptors, base64), so each
# screen finds that content in the frame it shows and keeps the drawing on it. `frame` is
# the technician's picture it refers to (its RTP timestamp; none on a frozen picture).
# A pinned drawing (or one without an anchor) stays at its screen place.
DRAW_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
ANCHOR_POINTS = (8, 64)
DESCRIPTOR_BYTES = 32
MAX_FRAME = 2**32 - 1


def _draw_id(payload: dict[str, Any]) -> str:
    value = payload.get("id")
    if not isinstance(value, str) or not DRAW_ID.fullmatch(value):
        raise ControlRefused("bad_message")
    return value


def _frame(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_FRAME:
        raise ControlRefused("bad_message")
    return value


def _anchor(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ControlRefused("bad_message")
    points = value.get("points")
    fewest, most = ANCHOR_POINTS
    if not isinstance(points, list) or not fewest <= len(points) <= most:
        raise ControlRefused("bad_message")
    clean = []
    for point in points:
        if not isinstance(point, list) or len(point) != 2:
            raise ControlRefused("bad_message")
        clean.append([_coordinate(point[0]), _coordinate(point[1])])
    descriptors = value.get("descriptors")
    if not isinstance(descriptors, str) or len(descriptors) > 4 * most * DESCRIPTOR_BYTES // 3 + 4:
        raise ControlRefused("bad_message")
    try:
        raw = base64.b64decode(descriptors, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ControlRefused("bad_message") from exc
    if len(raw) != DESCRIPTOR_BYTES * len(clean):
        raise ControlRefused("bad_message")
    return {"frame": _frame(value.get("frame")), "points": clean, "descriptors": descriptors}


@control("draw", {TECHNICIAN}, features.FREEZE_DRAWING)
def _draw(payload: dict[str, Any]) -> dict[str, Any]:
    kind = _choice(payload, "kind", DRAW_KINDS)
    width = payload.get("width")
    if isinstance(width, bool) or not isinstance(width, int) or width not in DRAW_WIDTHS:
        raise ControlRefused("bad_message")
    shape = {
        "kind": kind,
        "color": _choice(payload, "color", DRAW_COLORS),
        "width": width,
        "points": _points(payload, kind),
    }
    if kind == "text":
        shape["text"] = _draw_text(payload)
    if "id" in payload:
        shape["id"] = _draw_id(payload)
        shape["pinned"] = _bool(payload, "pinned") if "pinned" in payload else False
    if payload.get("anchor") is not None:
        if "id" not in shape or shape["pinned"]:
            raise ControlRefused("bad_message")  # an anchor belongs to a tracked drawing
        shape["anchor"] = _anchor(payload["anchor"])
    return shape


@control("erase", {TECHNICIAN}, features.FREEZE_DRAWING)
def _erase(payload: dict[str, Any]) -> dict[str, Any]:
    return {}


@control("device_result", {CUSTOMER}, features.DEVICE_CONTROLS)
def _device_result(payload: dict[str, Any]) -> dict[str, Any]:
    """The phone's answer to a flashlight or camera request: done, or not possible."""
    return {"control": _choice(payload, "control", {"torch", "camera"}), "ok": _bool(payload, "ok")}


@control("chat", {TECHNICIAN, CUSTOMER}, features.CHAT)
def _chat(payload: dict[str, Any]) -> dict[str, Any]:
    """Plain text (never rendered as HTML), 1 to MAX_CHAT characters, newlines allowed."""
    text = payload.get("text")
    if not isinstance(text, str):
        raise ControlRefused("bad_message")
    text = text.replace("\r\n", "\n").strip()
    if not text:
        raise ControlRefused("empty")
    if len(text) > MAX_CHAT:
        raise ControlRefused("too_long")
    if any(c != "\n" and unicodedata.category(c) == "Cc" for c in text):
        raise ControlRefused("bad_message")
    return {"text": text}


# A full-resolution photo (lens.captures.photos): the technician's page names each request;
# the phone uploads the photo with that name, or says it could not take one.
PHOTO_REQUEST = re.compile(r"[A-Za-z0-9_-]{8,32}")


def _photo_request(payload: dict[str, Any]) -> str:
    value = payload.get("request")
    if not isinstance(value, str) or not PHOTO_REQUEST.fullmatch(value):
        raise ControlRefused("bad_message")
    return value


@control("photo", {TECHNICIAN}, features.SNAPSHOT)
def _photo(payload: dict[str, Any]) -> dict[str, Any]:
    return {"request": _photo_request(payload)}


@control("photo_failed", {CUSTOMER}, features.SNAPSHOT)
def _photo_failed(payload: dict[str, Any]) -> dict[str, Any]:
    return {"request": _photo_request(payload)}


def parse(raw: Any, sender: str, allowed: frozenset[str]) -> tuple[str, dict[str, Any]]:
    """Check one raw WebSocket message from sender; return (type, clean payload)."""
    if not isinstance(raw, str) or len(raw) > MAX_RAW:
        raise ControlRefused("bad_message")
    try:
        message = json.loads(raw)
    except ValueError as exc:
        raise ControlRefused("bad_message") from exc
    return parse_message(message, sender, allowed)


def parse_message(message: Any, sender: str, allowed: frozenset[str]) -> tuple[str, dict[str, Any]]:
    """Check one decoded message from sender; return (type, clean payload)."""
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ControlRefused("bad_message")
    kind = REGISTRY.get(message["type"])
    if kind is None or sender not in kind.senders:
        raise ControlRefused("bad_message")
    if kind.feature is not None and kind.feature not in allowed:
        raise ControlRefused("not_allowed")
    try:
        return kind.name, kind.validate(message)
    except (TypeError, ValueError) as exc:
        raise ControlRefused("bad_message") from exc
