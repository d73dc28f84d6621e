"""Phone numbers typed by technicians, normalised to E.164 for SMS providers."""

import phonenumbers

from lens.invitations.errors import InvalidPhoneNumber
from lens.invitations.text import has_control_characters

MAX_PHONE_LENGTH = 32


def normalise_phone(raw: str, default_region: str) -> str:
    """Return raw as an E.164 number ("+31612345678"), or raise InvalidPhoneNumber."""
    if has_control_characters(raw):
        raise InvalidPhoneNumber("The phone number contains characters that are not allowed.")
    text = raw.strip()
    if not text:
        raise InvalidPhoneNumber("Enter a phone number.")
    if len(text) > MAX_PHONE_LENGTH:
        raise InvalidPhoneNumber(
            f"The phone number is too long (at most {MAX_PHONE_LENGTH} characters)."
        )
    try:
        number = phonenumbers.parse(text, default_region.upper() or None)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhoneNumber(
            "This is not a phone number; include the country code, e.g. +31 6 12345678."
        ) from exc
    if number.extension:
        raise InvalidPhoneNumber("A phone number with an extension cannot receive an SMS.")
    if not phonenumbers.is_possible_number(number):
        raise InvalidPhoneNumber("This phone number has the wrong number of digits.")
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhoneNumber(
            "This is not a valid phone number; check the digits and the country code."
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
