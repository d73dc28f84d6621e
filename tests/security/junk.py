"""Well-formed page messages of every type, and hypothesis strategies that spoil them.

SAMPLES has one valid message for every type a page may send (lens.sockets.messages):
a type without a sample fails tests/security/test_input_validation.py. `spoiled(schema)`
draws a message that cannot be valid: a sample with one part (a field, a point, a
keypoint) replaced by JSON of another kind, a required field left out, or its type
replaced; `json_junk` draws any JSON value at all.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

from hypothesis import strategies as st

from lens.sockets.messages import PageSchema

SDP = (
    "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:96 VP8/90000\r\n"
)
ANCHOR = {
    "frame": 123456,
    "points": [[i / 10, 0.5] for i in range(8)],
    "descriptors": base64.b64encode(bytes(32 * 8)).decode(),
}

# One valid message of each type; a console's also name a session (added by `sample`).
SAMPLES: dict[str, dict[str, Any]] = {
    "open": {},
    "close": {},
    "dialog": {},
    "offer": {"ref": 1, "sdp": SDP},
    "freeze": {"on": True},
    "quality": {"level": "low"},
    "torch": {"on": False},
    "camera": {"facing": "user"},
    "camera_paused": {"on": True},
    "capabilities": {"torch": True, "cameras": 2},
    "draw": {
        "kind": "text",
        "color": "#e53935",
        "width": 4,
        "points": [[0.25, 0.75]],
        "text": "here",
        "id": "d1-abc",
        "pinned": False,
        "anchor": ANCHOR,
    },
    "erase": {},
    "device_result": {"control": "torch", "ok": True},
    "chat": {"text": "Hello"},
    "photo": {"request": "p1-abcdefgh"},
    "photo_failed": {"request": "p1-abcdefgh"},
}

# fields whose null is as good as leaving them out, and other kinds a field may hold
NULLABLE = {"ref", "session", "frame", "anchor", "id"}
ALSO = {"ref": {"str"}}


def sample(schema: PageSchema, kind: str, session: int = 1) -> dict[str, Any]:
    """The valid message of `kind` as `schema`'s page sends it."""
    message = {"type": kind, **json.loads(json.dumps(SAMPLES[kind]))}
    if "session" in schema.models[kind].model_fields:
        message["session"] = session
    return message


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
)
json_junk = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=20,
)


def kind_of(value: Any) -> str:
    """A JSON value's kind: numbers are one kind (an int may stand for a float)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def _paths(value: Any, at: tuple = ()) -> list[tuple]:
    """Every place in a message that holds something (its type excepted)."""
    found = []
    if isinstance(value, dict):
        for key, inner in value.items():
            if at == () and key == "type":
                continue
            found += [(*at, key), *_paths(inner, (*at, key))]
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            found += [(*at, index), *_paths(inner, (*at, index))]
    return found


def _replace(message: Any, path: tuple, junk: Any) -> Any:
    copy = json.loads(json.dumps(message))
    place = copy
    for step in path[:-1]:
        place = place[step]
    place[path[-1]] = junk
    return copy


@st.composite
def spoiled(draw, schema: PageSchema, session: int = 1) -> dict[str, Any]:
    """A message of one of schema's types that its schema must refuse."""
    kind = draw(st.sampled_from(sorted(schema.types)))
    message = sample(schema, kind, session)
    how = draw(st.sampled_from(["part", "missing", "type"]))
    required = [
        name
        for name, field in schema.models[kind].model_fields.items()
        if field.is_required() and name != "type"
    ]
    if how == "missing" and required:
        del message[draw(st.sampled_from(required))]
        return message
    paths = _paths(message)
    if how == "type" or not paths:
        other = draw(
            json_junk.filter(lambda value: not (isinstance(value, str) and value in schema.types))
        )
        return {**message, "type": other}
    path = draw(st.sampled_from(paths))
    old = _replace_get(message, path)
    junk = draw(
        json_junk.filter(
            lambda value: (
                kind_of(value) != kind_of(old)
                and kind_of(value) not in ALSO.get(path[-1], ())
                and (value is not None or path[-1] not in NULLABLE)
            )
        )
    )
    return _replace(message, path, junk)


def _replace_get(message: Any, path: tuple) -> Any:
    for step in path:
        message = message[step]
    return message


def as_text(message: Any) -> str:
    """What a page's socket carries (NaN and Infinity as a browser's JSON.parse would refuse,
    but a hand-made socket can send)."""
    return json.dumps(message, allow_nan=True)


class Tracebacks(logging.Handler):
    """Every log record with an exception attached, from any thread."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.exc_text or record.stack_info:
            self.records.append(record)

    def lines(self) -> list[str]:
        return [f"{r.name}: {r.getMessage()}" for r in self.records]
