"""Destinations shown half-hidden in session logs and lists ("+31 6 •••• 5678")."""

from typing import Literal

import phonenumbers

HIDDEN = "\u2022" * 4
"""Four bullets, however many characters they stand for, so the length is not revealed."""

Channel = Literal["sms", "email"]


def mask_destination(channel: Channel, value: str) -> str:
    """Return value with most of it hidden: country code and last 4 digits, or e-mail initial."""
    if channel == "sms":
        return _mask_phone(value)
    if channel == "email":
        return _mask_email(value)
    raise ValueError(f"unknown invitation channel {channel!r}")


def _mask_phone(value: str) -> str:
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        return HIDDEN
    national = phonenumbers.national_significant_number(number)
    if len(national) <= 4:
        return f"+{number.country_code} {HIDDEN}"
    # The first national digit (mobile or area prefix) only while at least 3 digits stay hidden.
    lead = f"{national[0]} " if len(national) - 5 >= 3 else ""
    return f"+{number.country_code} {lead}{HIDDEN} {national[-4:]}"


def _mask_email(value: str) -> str:
    local, at, domain = value.rpartition("@")
    if not at or not local:
        return HIDDEN
    return f"{local[0]}{HIDDEN[:3]}@{domain}"
