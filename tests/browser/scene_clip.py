"""A generated camera clip for the anchored-drawing test: a board filmed by a moving camera.

The board is procedural (chips, traces, vias and labels on green) with one magenta mark,
the target. The camera holds still, pans along a known path, rotates up to 15° while
moving 20 % closer and 20 % away, pans the target out of the picture and back, and
returns to where it started, so Chromium's fake camera can loop the file seamlessly.
Written as Y4M (4:2:0) for `--use-file-for-fake-video-capture`.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

WIDTH, HEIGHT, FPS = 480, 360, 30
BOARD = (1800, 1400)
TARGET = (900.0, 700.0)  # the magenta mark, in board pixels
TARGET_RADIUS = 11
MAGENTA = (255, 0, 255)


@dataclass(frozen=True)
class Pose:
    """Where the camera looks: the board point at the picture's centre, its turn and zoom."""

    x: float
    y: float
    angle: float  # degrees, counter-clockwise
    scale: float  # picture pixels per board pixel


# (seconds, pose) keys; the camera eases between them (cosine), the last equals the first
START = Pose(960, 730, 0, 1.0)
KEYS: list[tuple[float, Pose]] = [
    (0.0, START),
    (1.5, START),  # still: the technician draws here
    (3.0, Pose(860, 660, 0, 1.0)),  # pan up-left
    (4.3, Pose(1020, 780, 0, 1.0)),  # pan down-right
    (5.6, Pose(960, 730, 15, 1.2)),  # rotate 15°, 20 % closer
    (6.9, Pose(960, 730, -10, 0.8)),  # turn back past zero, 20 % further
    (7.8, Pose(940, 715, 0, 1.0)),  # nearly back (not quite: only the start is at rest there)
    (9.2, Pose(1320, 730, 0, 1.0)),  # the target leaves the picture on the left
    (10.4, Pose(1320, 730, 0, 1.0)),  # out of the picture for a second
    (11.8, START),  # back
    (13.0, START),
]
DURATION = KEYS[-1][0]


def pose_at(t: float) -> Pose:
    """The camera's pose t seconds into the clip."""
    t = t % DURATION
    for (t0, a), (t1, b) in zip(KEYS, KEYS[1:], strict=False):
        if t0 <= t <= t1:
            k = 0.5 - 0.5 * math.cos(math.pi * (t - t0) / (t1 - t0)) if t1 > t0 else 1.0
            pairs = zip(_values(a), _values(b), strict=True)
            return Pose(*(va + (vb - va) * k for va, vb in pairs))
    return START


def _values(pose: Pose) -> tuple[float, float, float, float]:
    return (pose.x, pose.y, pose.angle, pose.scale)


def to_picture(pose: Pose, point: tuple[float, float]) -> tuple[float, float]:
    """A board point's place in the picture (pixels)."""
    a = math.radians(pose.angle)
    dx, dy = point[0] - pose.x, point[1] - pose.y
    x = pose.scale * (math.cos(a) * dx + math.sin(a) * dy)
    y = pose.scale * (-math.sin(a) * dx + math.cos(a) * dy)
    return WIDTH / 2 + x, HEIGHT / 2 + y


def target_at(t: float) -> tuple[float, float] | None:
    """The target's true place as fractions of the picture, or None when it is out of it."""
    x, y = to_picture(pose_at(t), TARGET)
    if not (0 <= x < WIDTH and 0 <= y < HEIGHT):
        return None
    return x / WIDTH, y / HEIGHT


def board(seed: int = 16) -> Image.Image:
    """The printed circuit board the camera films."""
    rng = random.Random(seed)
    image = Image.new("RGB", BOARD, (22, 92, 48))
    draw = ImageDraw.Draw(image)
    for _ in range(900):  # traces
        x, y = rng.randrange(BOARD[0]), rng.randrange(BOARD[1])
        length = rng.randrange(30, 220)
        end = (x + length, y) if rng.random() < 0.5 else (x, y + length)
        copper = (rng.randrange(150, 220), rng.randrange(150, 190), 80)
        draw.line([(x, y), end], fill=copper, width=3)
    for _ in range(260):  # chips with pins and a light notch
        w, h = rng.randrange(24, 120), rng.randrange(18, 90)
        x, y = rng.randrange(BOARD[0] - w), rng.randrange(BOARD[1] - h)
        grey = rng.randrange(10, 70)
        draw.rectangle([x, y, x + w, y + h], fill=(grey, grey, grey + 10), outline=(200, 200, 200))
        draw.ellipse([x + 3, y + 3, x + 9, y + 9], fill=(230, 230, 230))
        for px in range(x + 4, x + w - 4, 9):
            draw.rectangle([px, y - 5, px + 4, y], fill=(210, 210, 200))
            draw.rectangle([px, y + h, px + 4, y + h + 5], fill=(210, 210, 200))
    for _ in range(700):  # vias
        x, y, r = rng.randrange(BOARD[0]), rng.randrange(BOARD[1]), rng.randrange(3, 8)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=(230, 200, 120), outline=(40, 40, 40))
    for _ in range(160):  # silk-screen labels
        x, y = rng.randrange(BOARD[0] - 40), rng.randrange(BOARD[1] - 12)
        draw.text((x, y), f"{rng.choice('RCUQLJ')}{rng.randrange(1, 99)}", fill=(245, 245, 245))
    tx, ty = TARGET
    r = TARGET_RADIUS
    draw.ellipse([tx - r - 4, ty - r - 4, tx + r + 4, ty + r + 4], fill=(255, 255, 255))
    draw.ellipse([tx - r, ty - r, tx + r, ty + r], fill=MAGENTA)
    return image.filter(ImageFilter.GaussianBlur(0.6))


def frame(source: Image.Image, pose: Pose) -> Image.Image:
    """What the camera sees at this pose (the inverse mapping PIL's affine transform wants)."""
    a = math.radians(pose.angle)
    c, s, k = math.cos(a), math.sin(a), 1 / pose.scale
    # board = pose + R(-angle)/scale · (picture - centre)
    coefficients = (
        k * c,
        -k * s,
        pose.x - k * (c * WIDTH / 2 - s * HEIGHT / 2),
        k * s,
        k * c,
        pose.y - k * (s * WIDTH / 2 + c * HEIGHT / 2),
    )
    return source.transform(
        (WIDTH, HEIGHT), Image.Transform.AFFINE, coefficients, Image.Resampling.BILINEAR
    )


def write_clip(path: Path) -> Path:
    """Write the whole clip as Y4M; returns the path."""
    source = board()
    frames = round(DURATION * FPS)
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{WIDTH} H{HEIGHT} F{FPS}:1 Ip A1:1 C420jpeg\n".encode())
        for index in range(frames):
            y, cb, cr = frame(source, pose_at(index / FPS)).convert("YCbCr").split()
            half = (WIDTH // 2, HEIGHT // 2)
            out.write(b"FRAME\n")
            out.write(y.tobytes())
            out.write(cb.resize(half, Image.Resampling.BOX).tobytes())
            out.write(cr.resize(half, Image.Resampling.BOX).tobytes())
    return path
