"""A recording whose sidecar died mid-write: make the file whole and measure it.

The sidecar writes short clusters (lens/media/capture.py), so a killed one leaves a file
that lacks at most its last half second, its index (cues) and its duration. Copying its
packets into a new file (no decoding) writes both; the last packet gives the duration.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import av

log = logging.getLogger(__name__)


def salvage_recording(path: Path) -> tuple[float, int]:
    """Rewrite `path` with an index and duration; return (seconds of media, bytes).

    (0.0, 0) for a file that is missing or holds no complete cluster (left as it is)."""
    if not path.exists() or path.stat().st_size == 0:
        return 0.0, 0
    fixed = path.with_name(path.name + ".salvage")
    end = 0.0
    packets = 0
    try:
        with av.open(str(path)) as source:
            output_format = "webm" if path.suffix == ".webm" else "matroska"
            with av.open(str(fixed), "w", format=output_format) as target:
                streams = {
                    s.index: target.add_stream_from_template(s, opaque=True)
                    for s in source.streams
                    if s.type in ("video", "audio")
                }
                try:
                    for packet in source.demux(*[s for s in source.streams if s.index in streams]):
                        if packet.dts is None or packet.pts is None:
                            continue  # the demuxer's end-of-stream flush
                        stop = packet.pts + (packet.duration or 0)
                        end = max(end, float(stop * packet.time_base))
                        packet.stream = streams[packet.stream.index]
                        target.mux(packet)
                        packets += 1
                except av.FFmpegError as exc:  # the cut-off end: keep what came before
                    log.info("recording %s ends in a cut-off cluster: %s", path.name, exc)
    except (av.FFmpegError, OSError) as exc:
        log.warning("recording %s could not be read: %s", path, exc)
        fixed.unlink(missing_ok=True)
        return 0.0, path.stat().st_size
    if packets == 0:
        fixed.unlink(missing_ok=True)
        return 0.0, path.stat().st_size
    os.replace(fixed, path)
    return end, path.stat().st_size
