"""Snapshot formats: the stored PNG, JPEG made from it on request, and the phone's photos
(checked here before they are kept). PyAV, no Pillow."""

from __future__ import annotations

import fractions
import io
import struct

import av


def png_to_jpeg(png: bytes) -> bytes:
    """The same picture as a baseline JPEG at full resolution."""
    with av.open(io.BytesIO(png), format="png_pipe") as source:
        picture = next(source.decode(video=0))
    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.width, encoder.height = picture.width, picture.height
    encoder.pix_fmt = "yuvj444p"
    encoder.time_base = fractions.Fraction(1, 1)
    # one picture per second: about a byte per pixel, which keeps text on screens legible
    encoder.bit_rate = picture.width * picture.height * 8
    frame = picture.reformat(format="yuvj444p")
    frame.pts = 0
    return b"".join(bytes(p) for p in [*encoder.encode(frame), *encoder.encode(None)])


class NotAPhoto(ValueError):
    """Uploaded bytes that are not one JPEG or PNG picture within the limits."""


PHOTO_FORMATS = {b"\xff\xd8\xff": ("jpeg_pipe", "jpg"), b"\x89PNG\r\n\x1a\n": ("png_pipe", "png")}


# JPEG start-of-frame markers (baseline, progressive, …): not DHT (C4), JPG (C8), DAC (CC)
JPEG_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def declared_size(data: bytes) -> tuple[int, int]:
    """The width and height a PNG's or JPEG's header declares, read without decoding."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    at = 2
    while at + 9 <= len(data) and data[at] == 0xFF:
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        length = struct.unpack(">H", data[at + 2 : at + 4])[0]
        if marker in JPEG_FRAMES:
            height, width = struct.unpack(">HH", data[at + 5 : at + 9])
            return width, height
        at += 2 + length
    raise NotAPhoto("no size in the header")


def photo_size(data: bytes, max_pixels: int) -> tuple[str, int, int]:
    """The format ("jpg" or "png"), width and height of a photo, after decoding it whole.

    Only JPEG and PNG (told by their first bytes, not by what the upload claims); the size
    its header declares is checked against `max_pixels` before anything is decoded.
    """
    known = [kind for magic, kind in PHOTO_FORMATS.items() if data.startswith(magic)]
    if not known:
        raise NotAPhoto("neither JPEG nor PNG")
    demuxer, file_format = known[0]
    width, height = declared_size(data)
    if not width or not height or width * height > max_pixels:
        raise NotAPhoto(f"{width}x{height}: not within {max_pixels} pixels")
    try:
        with av.open(io.BytesIO(data), format=demuxer) as source:
            picture = next(source.decode(video=0))
    except (av.FFmpegError, IndexError, StopIteration) as exc:
        raise NotAPhoto(f"not a readable picture: {exc}") from exc
    if picture.width * picture.height > max_pixels:
        raise NotAPhoto(f"{picture.width}x{picture.height} is more than {max_pixels} pixels")
    return file_format, picture.width, picture.height
