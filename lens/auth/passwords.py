"""The password policy: long enough, not a common password, not the account's own name.

Used wherever a password is chosen: the password change, the e-mailed set-password link,
and the command line (`flask lens create-admin --password …`). The one-time passwords the
Admin Center makes are random (16 characters) and must be changed at the first log-in.

The common passwords are a vendored list (common-passwords.md says where it comes from).
A password is refused when it, lowercased, is on the list; also when it is a listed
password with only spaces, digits or punctuation around it ("Password 2024!!"), since
those are what guessing tools try first.
"""

from __future__ import annotations

import gzip
import string
from functools import cache
from pathlib import Path

MIN_LENGTH = 12
MAX_LENGTH = 200
COMMON_PASSWORDS = Path(__file__).with_name("common-passwords.txt.gz")

# reasons, as codes (lens.auth.forms turns them into sentences)
TOO_SHORT = "too_short"
TOO_LONG = "too_long"
COMMON = "common"
PERSONAL = "personal"
SIMPLE = "simple"

_PADDING = string.digits + string.punctuation + string.whitespace


@cache
def common_passwords() -> frozenset[str]:
    """The vendored list, lowercased."""
    with gzip.open(COMMON_PASSWORDS, "rt", encoding="utf-8") as lines:
        return frozenset(line.strip() for line in lines if line.strip())


def _cores(password: str) -> set[str]:
    """The password as a guesser would try it: lowercased, without padding, without spaces."""
    lowered = password.lower()
    stripped = lowered.strip(_PADDING)
    return {lowered, stripped, "".join(lowered.split()), "".join(stripped.split())}


def password_problem(password: str, *, email: str = "", name: str = "") -> str | None:
    """Why this password may not be used (a reason code above), or None if it may."""
    if len(password) < MIN_LENGTH:
        return TOO_SHORT
    if len(password) > MAX_LENGTH:
        return TOO_LONG
    if len(set(password.lower())) < 5:  # "aaaaaaaaaaaa", "abababababab"
        return SIMPLE
    cores = _cores(password)
    if cores & common_passwords():
        return COMMON
    personal = {email.strip().lower(), email.strip().lower().partition("@")[0]}
    personal |= {part for part in name.lower().split() if len(part) >= 4}
    personal.add("".join(name.lower().split()))
    personal.discard("")
    if any(core in personal for core in cores) or any(
        len(word) >= 4 and word in password.lower() and len(password) - len(word) < 6
        for word in personal
    ):
        return PERSONAL
    return None
