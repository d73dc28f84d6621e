"""Phone numbers, QR codes and masked destinations."""

import pytest
import segno

from lens.invitations.errors import InvalidPhoneNumber
from lens.invitations.mask import mask_destination
from lens.invitations.phone import normalise_phone
from lens.invitations.qr import qr_svg


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("06 12345678", "NL", "+31612345678"),
        ("+31 (0)6-1234 5678", "NL", "+31612345678"),
        (" +44 7911 123456 ", "NL", "+447911123456"),
        ("(415) 555-2671", "us", "+14155552671"),
        ("0031612345678", "NL", "+31612345678"),
    ],
)
def test_normalise_phone_returns_e164(raw: str, region: str, expected: str) -> None:
    assert normalise_phone(raw, region) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "Enter a phone number"),
        ("hello", "not a phone number"),
        ("06 12", "wrong number of digits"),
        ("06 1234", "not a valid phone number"),
        ("+31 6 1234567890123", "wrong number of digits"),
        ("+1 555 555 5555", "not a valid phone number"),
        ("+999 12345678", "not a phone number"),
        ("+31 6 12345678 ext. 12", "extension"),
        ("+31 6 12345678" + " " * 20 + "0", "too long"),
        ("+31612345678\r\nX-Injected: 1", "not allowed"),
        ("+31612345678\n", "not allowed"),
        ("+3161234\u200b5678", "not allowed"),
    ],
)
def test_normalise_phone_rejects(raw: str, reason: str) -> None:
    with pytest.raises(InvalidPhoneNumber) as caught:
        normalise_phone(raw, "NL")
    assert reason in caught.value.message


def test_number_without_country_code_needs_a_region() -> None:
    with pytest.raises(InvalidPhoneNumber):
        normalise_phone("06 12345678", "")
    assert normalise_phone("+31 6 12345678", "") == "+31612345678"


def test_qr_svg_is_inline_labelled_and_encodes_the_url() -> None:
    url = "https://lens.example.com/j/Ab3dE9"
    svg = qr_svg(url, label='Scan <this> & "join"')
    assert svg.startswith('<svg role="img" aria-label="Scan &lt;this&gt; &amp; &quot;join&quot;"')
    assert '<title>Scan &lt;this&gt; &amp; "join"</title>' in svg
    assert "<?xml" not in svg and "xmlns" not in svg
    # The same symbol segno makes for the URL, so a phone camera reads back the URL.
    path = segno.make(url, error="m", micro=False).svg_inline(scale=4, border=2)
    assert path[path.index("<path") :] in svg


@pytest.mark.parametrize(
    ("channel", "value", "expected"),
    [
        ("sms", "+31612345678", "+31 6 •••• 5678"),
        ("sms", "+14155552671", "+1 4 •••• 2671"),
        ("sms", "+3512345678", "+351 •••• 5678"),
        ("sms", "garbage", "••••"),
        ("email", "jan.jansen@example.com", "j•••@example.com"),
        ("email", "j@example.nl", "j•••@example.nl"),
        ("email", "no-at-sign", "••••"),
    ],
)
def test_mask_destination(channel: str, value: str, expected: str) -> None:
    assert mask_destination(channel, value) == expected  # type: ignore[arg-type]


def test_mask_destination_unknown_channel() -> None:
    with pytest.raises(ValueError):
        mask_destination("fax", "123")  # type: ignore[arg-type]
