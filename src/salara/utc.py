"""UTC times as salara shows them: Unix seconds to aware datetimes and ISO 8601 text."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_datetime(seconds: float) -> datetime:
    """Unix seconds as an aware UTC datetime."""
    return datetime.fromtimestamp(seconds, UTC)


def utc_timestamp(seconds: float) -> str:
    """ISO 8601 UTC time, milliseconds, ``Z``.

    >>> utc_timestamp(1795962301.1344)
    '2026-11-29T14:25:01.134Z'
    """
    return utc_datetime(seconds).isoformat(timespec="milliseconds").replace("+00:00", "Z")
