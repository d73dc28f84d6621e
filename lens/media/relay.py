"""Codec helpers and forwarding statistics shared by the forwarding path and captures."""

from __future__ import annotations

from dataclasses import dataclass, field


def is_keyframe(mime_type: str, data: bytes) -> bool:
    """True if an encoded video frame can be decoded on its own."""
    if not data:
        return False
    if mime_type == "video/vp8":
        return data[0] & 0x01 == 0
    if mime_type == "video/h264":
        return any(nal_type in (5, 7) for nal_type in _h264_nal_types(data))
    return True


def _h264_nal_types(data: bytes) -> list[int]:
    types = []
    start = data.find(b"\x00\x00\x01")
    while start != -1 and start + 3 < len(data):
        types.append(data[start + 3] & 0x1F)
        start = data.find(b"\x00\x00\x01", start + 3)
    return types


def vp8_resolution(data: bytes) -> tuple[int, int] | None:
    """Width and height from a VP8 keyframe header, None for other frames."""
    if len(data) < 10 or data[0] & 0x01 or data[3:6] != b"\x9d\x01\x2a":
        return None
    width = int.from_bytes(data[6:8], "little") & 0x3FFF
    height = int.from_bytes(data[8:10], "little") & 0x3FFF
    return width, height


@dataclass
class ForwardingStats:
    """What one forwarded track did (and, summed, what the relay did)."""

    frames_forwarded: int = 0
    bytes_forwarded: int = 0
    frames_dropped: int = 0
    keyframes_forwarded: int = 0


@dataclass
class RelayTotals:
    """Process-lifetime totals for /metrics, kept by the session registry."""

    by_kind: dict[str, ForwardingStats] = field(
        default_factory=lambda: {"video": ForwardingStats(), "audio": ForwardingStats()}
    )
    keyframe_requests: int = 0
