"""Time in one convention: naive UTC datetimes, the same on SQLite and PostgreSQL."""

from datetime import UTC, datetime


def now_utc() -> datetime:
    """Return the current time as a naive UTC datetime."""
    return datetime.now(UTC).replace(tzinfo=None)
