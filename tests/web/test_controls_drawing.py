"""Drawing, erase and device-result messages: well-formed shapes pass, anything else is refused."""

from __future__ import annotations

import base64
import json

import pytest

from lens import features
from lens.controls.messages import CUSTOMER, TECHNICIAN, ControlRefused, parse
from lens.features import WEB_CONSOLE, console_features

ALL = features.ALL


def draw(**fields) -> str:
    shape = {"type": "draw", "kind": "arrow", "color": "#e53935", "width": 4}
    shape["points"] = [[0.1, 0.2], [0.5, 0.6]]
    shape.update(fields)
    return json.dumps(shape)


def refused(raw: str, sender: str = TECHNICIAN) -> str:
    with pytest.raises(ControlRefused) as refusal:
        parse(raw, sender, ALL)
    return refusal.value.reason


def test_an_arrow_passes_clean_and_rounded():
    kind, shape = parse(draw(points=[[0, 1], [0.123456789, 0.5]], extra="junk"), TECHNICIAN, ALL)
    assert kind == "draw"
    assert shape == {
        "kind": "arrow",
        "color": "#e53935",
        "width": 4,
        "points": [[0.0, 1.0], [0.1235, 0.5]],
    }


def test_text_keeps_its_words_and_other_kinds_drop_them():
    _, text = parse(draw(kind="text", points=[[0.5, 0.5]], text="  <b>here</b>  "), TECHNICIAN, ALL)
    assert text["text"] == "<b>here</b>"  # stored as text; the pages draw it, never as HTML
    _, line = parse(draw(kind="line", text="ignored"), TECHNICIAN, ALL)
    assert "text" not in line


def test_a_free_line_may_have_up_to_500_points():
    points = [[i / 500, 0.5] for i in range(500)]
    assert len(parse(draw(kind="line", points=points), TECHNICIAN, ALL)[1]["points"]) == 500
    assert refused(draw(kind="line", points=[*points, [1, 1]])) == "bad_message"


@pytest.mark.parametrize(
    "fields",
    [
        {"kind": "square"},
        {"kind": None},
        {"color": "red"},
        {"color": "#E53935 "},
        {"color": ["#e53935"]},
        {"width": 0},
        {"width": 17},
        {"width": 2.5},
        {"width": True},
        {"width": "4"},
        {"points": []},
        {"points": [[0.1, 0.2]]},  # an arrow needs two
        {"points": [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]]},
        {"points": [[0.1, 0.2], [1.01, 0.4]]},
        {"points": [[-0.01, 0.2], [0.3, 0.4]]},
        {"points": [[0.1, 0.2], [0.3]]},
        {"points": [[0.1, 0.2], [0.3, 0.4, 0.5]]},
        {"points": [[0.1, 0.2], {"x": 0.3, "y": 0.4}]},
        {"points": [[0.1, 0.2], ["0.3", 0.4]]},
        {"points": [[0.1, 0.2], [True, 0.4]]},
        {"points": [[0.1, 0.2], [None, 0.4]]},
        {"points": "0.1,0.2 0.3,0.4"},
        {"points": {"0": [0.1, 0.2]}},
        {"kind": "circle", "points": [[0.5, 0.5]]},
        {"kind": "text", "points": [[0.5, 0.5]]},  # no text
        {"kind": "text", "points": [[0.5, 0.5]], "text": "   "},
        {"kind": "text", "points": [[0.5, 0.5]], "text": "x" * 201},
        {"kind": "text", "points": [[0.5, 0.5]], "text": "bell\x07"},
        {"kind": "text", "points": [[0.5, 0.5]], "text": 42},
        {"kind": "text", "points": [[0.5, 0.5], [0.6, 0.6]], "text": "two anchors"},
    ],
)
def test_bad_shapes_are_refused(fields):
    assert refused(draw(**fields)) == "bad_message"


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_coordinates_are_refused(number):
    # json.dumps cannot write these, but a browser's socket can carry any text
    raw = draw().replace("0.5", number, 1)
    assert number in raw
    assert refused(raw) == "bad_message"


def test_a_shape_too_large_for_the_socket_is_refused():
    points = [[0.123456789012, 0.123456789012]] * 500
    assert refused(draw(kind="line", points=points)) == "bad_message"


def test_only_the_technician_draws_and_erases():
    assert refused(draw(), CUSTOMER) == "bad_message"
    assert refused(json.dumps({"type": "erase"}), CUSTOMER) == "bad_message"
    assert parse(json.dumps({"type": "erase", "all": "x"}), TECHNICIAN, ALL) == ("erase", {})


def test_the_phone_answers_device_controls():
    raw = json.dumps({"type": "device_result", "control": "torch", "ok": False})
    assert parse(raw, CUSTOMER, ALL) == ("device_result", {"control": "torch", "ok": False})
    assert refused(raw, TECHNICIAN) == "bad_message"
    bad = json.dumps({"type": "device_result", "control": "siren", "ok": True})
    assert refused(bad, CUSTOMER) == "bad_message"


def test_drawing_needs_freeze_and_drawing_not_display_settings():
    # the Web Console draws and freezes; quality needs DISPLAY_SETTINGS, drawing its own switch
    web_console = console_features(WEB_CONSOLE, ALL)
    assert parse(draw(), TECHNICIAN, web_console)[0] == "draw"
    with pytest.raises(ControlRefused) as refusal:
        parse(json.dumps({"type": "quality", "level": "low"}), TECHNICIAN, web_console)
    assert refusal.value.reason == "not_allowed"
    with pytest.raises(ControlRefused) as refusal:
        parse(draw(), TECHNICIAN, web_console - {features.FREEZE_DRAWING})
    assert refusal.value.reason == "not_allowed"


def anchor(count: int = 12, **fields) -> dict:
    """An anchor as the console sends it: keypoints and their ORB descriptors."""
    value = {
        "frame": 123456,
        "points": [[i / 100, 0.5] for i in range(count)],
        "descriptors": base64.b64encode(bytes(range(32)) * count).decode(),
    }
    value.update(fields)
    return value


def test_an_anchored_drawing_passes_with_its_id_pin_and_anchor():
    _, shape = parse(draw(kind="circle", id="d1-x_Y", anchor=anchor()), TECHNICIAN, ALL)
    assert shape["id"] == "d1-x_Y" and shape["pinned"] is False
    assert shape["anchor"]["frame"] == 123456
    assert len(shape["anchor"]["points"]) == 12
    _, frozen = parse(draw(id="d2", anchor=anchor(frame=None)), TECHNICIAN, ALL)
    assert frozen["anchor"]["frame"] is None  # drawn on a frozen picture
    _, pinned = parse(draw(id="d3", pinned=True), TECHNICIAN, ALL)
    assert pinned["pinned"] is True and "anchor" not in pinned
    _, biggest = parse(draw(kind="line", id="d4", anchor=anchor(64)), TECHNICIAN, ALL)
    assert len(biggest["anchor"]["descriptors"]) <= 4 * 64 * 32 // 3 + 4


@pytest.mark.parametrize(
    "fields",
    [
        {"id": ""},
        {"id": "a" * 33},
        {"id": "d 1"},
        {"id": "<script>"},
        {"id": 5},
        {"id": "d1", "pinned": "yes"},
        {"anchor": anchor()},  # an anchor needs the drawing's id
        {"id": "d1", "pinned": True, "anchor": anchor()},  # a pinned drawing has none
        {"id": "d1", "anchor": "points"},
        {"id": "d1", "anchor": anchor(7)},  # too few keypoints to find it again
        {"id": "d1", "anchor": anchor(65)},
        {"id": "d1", "anchor": anchor(frame=-1)},
        {"id": "d1", "anchor": anchor(frame=2**32)},
        {"id": "d1", "anchor": anchor(frame=1.5)},
        {"id": "d1", "anchor": anchor(frame=True)},
        {"id": "d1", "anchor": anchor(points=[[0.1, 1.2]] * 12)},
        {"id": "d1", "anchor": anchor(points=[[0.1]] * 12)},
        {"id": "d1", "anchor": anchor(descriptors="not base64!")},
        {"id": "d1", "anchor": anchor(descriptors=base64.b64encode(bytes(31 * 12)).decode())},
        {"id": "d1", "anchor": anchor(descriptors=None)},
    ],
)
def test_a_bad_anchor_is_refused(fields):
    assert refused(draw(**fields)) == "bad_message"


def test_the_customer_cannot_send_an_anchored_drawing():
    assert refused(draw(id="d1", anchor=anchor()), CUSTOMER) == "bad_message"
