"""The session's control messages between the technician's page and the phone.

Plain Python: which side may send which message, which feature it needs, and what a
well-formed one looks like. Anything else is refused before it reaches the other side.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lens import features

TECHNICIAN = "technician"
CUSTOMER = "customer"
MAX_RAW = 16 * 1024


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


@control("freeze", {TECHNICIAN})
def _freeze(payload: dict[str, Any]) -> dict[str, Any]:
    return {"on": _bool(payload, "on")}


@control("quality", {TECHNICIAN}, features.DISPLAY_SETTINGS)
def _quality(payload: dict[str, Any]) -> dict[str, Any]:
    return {"level": _choice(payload, "level", {"low", "medium", "high"})}


@control("torch", {TECHNICIAN})
def _torch(payload: dict[str, Any]) -> dict[str, Any]:
    return {"on": _bool(payload, "on")}


@control("camera", {TECHNICIAN})
def _camera(payload: dict[str, Any]) -> dict[str, Any]:
    return {"facing": _choice(payload, "facing", {"environment", "user"})}


@control("camera_paused", {CUSTOMER})
def _camera_paused(payload: dict[str, Any]) -> dict[str, Any]:
    return {"on": _bool(payload, "on")}


@control("capabilities", {CUSTOMER})
def _capabilities(payload: dict[str, Any]) -> dict[str, Any]:
    return {"torch": _bool(payload, "torch"), "cameras": min(int(payload.get("cameras", 1)), 8)}


def parse(raw: Any, sender: str, allowed: frozenset[str]) -> tuple[str, dict[str, Any]]:
    """Check one raw WebSocket message from sender; return (type, clean payload)."""
    if not isinstance(raw, str) or len(raw) > MAX_RAW:
        raise ControlRefused("bad_message")
    try:
        message = json.loads(raw)
    except ValueError as exc:
        raise ControlRefused("bad_message") from exc
    if not isinstance(message, dict):
        raise ControlRefused("bad_message")
    kind = REGISTRY.get(message.get("type"))  # type: ignore[arg-type]
    if kind is None or sender not in kind.senders:
        raise ControlRefused("bad_message")
    if kind.feature is not None and kind.feature not in allowed:
        raise ControlRefused("not_allowed")
    try:
        return kind.name, kind.validate(message)
    except (TypeError, ValueError) as exc:
        raise ControlRefused("bad_message") from exc
