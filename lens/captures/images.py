"""Snapshot formats: the stored PNG, and JPEG made from it on request (PyAV, no Pillow)."""

from __future__ import annotations

import fractions
import io

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
