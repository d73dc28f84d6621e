"""The control channel's checks: who may send what, with which feature."""

import json

import pytest

from lens import features
from lens.controls.messages import CUSTOMER, TECHNICIAN, ControlRefused, parse

ALL = features.ALL


def test_a_technician_control_passes_clean():
    kind, payload = parse(json.dumps({"type": "freeze", "on": True, "x": "junk"}), TECHNICIAN, ALL)
    assert (kind, payload) == ("freeze", {"on": True})


@pytest.mark.parametrize(
    "raw",
    [
        b"\x00\xffbinary",
        "not json",
        "[1, 2]",
        json.dumps({"type": "nope"}),
        json.dumps({"type": "freeze", "on": "yes"}),
        json.dumps({"type": "quality", "level": "ultra"}),
        "x" * 20000,
    ],
)
def test_junk_is_refused(raw):
    with pytest.raises(ControlRefused) as refused:
        parse(raw, TECHNICIAN, ALL)
    assert refused.value.reason == "bad_message"


def test_a_side_cannot_send_the_other_sides_controls():
    with pytest.raises(ControlRefused):
        parse(json.dumps({"type": "freeze", "on": True}), CUSTOMER, ALL)
    with pytest.raises(ControlRefused):
        parse(json.dumps({"type": "camera_paused", "on": True}), TECHNICIAN, ALL)


def test_a_control_needs_its_feature():
    raw = json.dumps({"type": "quality", "level": "low"})
    with pytest.raises(ControlRefused) as refused:
        parse(raw, TECHNICIAN, ALL - {features.DISPLAY_SETTINGS})
    assert refused.value.reason == "not_allowed"
    assert parse(raw, TECHNICIAN, ALL)[1] == {"level": "low"}
