"""What the session's tools have left on the phone: frozen, drawings, quality, the camera's.

Kept on the session (LensSession.tools, JSON) as control messages pass, so that a page
opened later (a reopened panel, a reloaded phone) starts from it. Plain Python.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

QUALITIES = ("low", "medium", "high")


@dataclass(frozen=True)
class ToolState:
    frozen: bool = False
    drawings: bool = False  # the phone shows drawings that were not erased
    quality: str | None = None  # None: never set (the phone's own default)
    torch: bool = False  # the phone reported a flashlight it can control
    cameras: int = 1

    @classmethod
    def from_column(cls, data: dict[str, Any] | None) -> ToolState:
        """The state stored on a session; anything unknown or malformed is the default."""
        data = data if isinstance(data, dict) else {}
        quality = data.get("quality")
        cameras = data.get("cameras")
        return cls(
            frozen=data.get("frozen") is True,
            drawings=data.get("drawings") is True,
            quality=quality if quality in QUALITIES else None,
            torch=data.get("torch") is True,
            cameras=cameras if isinstance(cameras, int) and 1 <= cameras <= 8 else 1,
        )

    def to_column(self) -> dict[str, Any]:
        return asdict(self)

    def after(self, kind: str, payload: dict[str, Any]) -> ToolState:
        """The state once a (checked) control message of `kind` has passed."""
        if kind == "freeze":
            return replace(self, frozen=payload["on"])
        if kind == "draw":
            return replace(self, drawings=True)
        if kind == "erase":
            return replace(self, drawings=False)
        if kind == "quality":
            return replace(self, quality=payload["level"])
        if kind == "capabilities":
            return replace(self, torch=payload["torch"], cameras=payload["cameras"])
        return self


TRACKED = frozenset({"freeze", "draw", "erase", "quality", "capabilities"})
