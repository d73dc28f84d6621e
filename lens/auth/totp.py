"""TOTP second factor (RFC 6238, via pyotp): secrets sealed at rest, each code good once.

The secret is stored encrypted (Fernet, with a key derived from the site's SECRET_KEY by
HKDF), so a copy of the database alone does not give anyone the codes. A code is accepted
for the current 30-second step or the one before or after (clock drift), and only for a
step later than the last one accepted: claiming the step is one atomic UPDATE, so the same
code cannot log in twice, not even from two processes at once.
"""

from __future__ import annotations

import base64
import hmac
import logging
import unicodedata
from datetime import UTC, datetime

import pyotp
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import or_, update
from sqlalchemy.orm import Session

from lens.auth.models import Technician
from lens.invitations.qr import qr_svg

log = logging.getLogger(__name__)

ISSUER = "Lens"
DRIFT_STEPS = 1  # codes of the step before and after are accepted too
CODE_DIGITS = 6


class SecretUnreadable(ValueError):
    """A sealed secret that this site's SECRET_KEY cannot open (the key was changed)."""


def new_secret() -> str:
    """A fresh random secret (base32, 160 bits), as authenticator apps expect."""
    return pyotp.random_base32(32)


def _fernet(site_secret: str) -> Fernet:
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"lens-totp", info=b"totp secret at rest"
    ).derive(site_secret.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def seal(secret: str, site_secret: str) -> str:
    """The secret encrypted for storage."""
    return _fernet(site_secret).encrypt(secret.encode()).decode()


def unseal(sealed: str, site_secret: str) -> str:
    """The stored secret decrypted."""
    try:
        return _fernet(site_secret).decrypt(sealed.encode()).decode()
    except InvalidToken as exc:
        raise SecretUnreadable("the TOTP secret cannot be read with this SECRET_KEY") from exc


def provisioning_uri(secret: str, account: str, issuer: str = ISSUER) -> str:
    """The otpauth:// URI an authenticator app reads from the QR code."""
    return pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=issuer)


def qr_code(secret: str, account: str, label: str, issuer: str = ISSUER) -> str:
    """The provisioning URI as an inline SVG QR code (rendered here: no script, no image host)."""
    return qr_svg(provisioning_uri(secret, account, issuer), label=label, scale=4)


def grouped(secret: str) -> str:
    """The secret in groups of four, for typing it into an app by hand."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def matching_step(secret: str, code: str, now: datetime) -> int | None:
    """The time step whose code this is (within the drift), or None."""
    # full-width digits (a Japanese or Chinese keyboard) are digits too; any other
    # non-ASCII character is no code, and hmac.compare_digest raises TypeError on one
    code = "".join(unicodedata.normalize("NFKC", code).split())
    if len(code) != CODE_DIGITS or not (code.isascii() and code.isdigit()):
        return None
    totp = pyotp.TOTP(secret, digits=CODE_DIGITS)
    if now.tzinfo is None:  # naive UTC (lens.timeutil); pyotp reads naive as local time
        now = now.replace(tzinfo=UTC)
    current = totp.timecode(now)
    found = None
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        # every candidate is compared, so the time taken does not depend on which matched
        if hmac.compare_digest(totp.generate_otp(step), code):
            found = step
    return found


def claim_step(db: Session, technician_id: int, step: int) -> bool:
    """Mark the step used; False if it (or a later one) already was: a replayed code."""
    result = db.execute(
        update(Technician)
        .where(
            Technician.id == technician_id,
            or_(Technician.totp_last_step.is_(None), Technician.totp_last_step < step),
        )
        .values(totp_last_step=step)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def check_code(
    db: Session, technician: Technician, code: str, site_secret: str, now: datetime
) -> bool:
    """Whether code is a fresh, valid code of the technician's enrolled secret (and use it)."""
    if technician.totp_secret is None:
        return False
    try:
        secret = unseal(technician.totp_secret, site_secret)
    except SecretUnreadable:  # SECRET_KEY changed: `flask lens reset-two-factor` helps
        log.warning("the TOTP secret of technician %s cannot be read", technician.id)
        return False
    step = matching_step(secret, code, now)
    return step is not None and claim_step(db, technician.id, step)


def enrol(
    db: Session, technician: Technician, secret: str, code: str, site_secret: str, now: datetime
) -> bool:
    """Turn the second factor on if code proves the app has secret; the code counts as used."""
    step = matching_step(secret, code, now)
    if step is None:
        return False
    technician.totp_secret = seal(secret, site_secret)
    technician.totp_last_step = step
    db.flush()
    return True


def disenrol(db: Session, technician: Technician) -> None:
    """Turn the second factor off (the account logs in with its password alone)."""
    technician.totp_secret = None
    technician.totp_last_step = None
    db.flush()
