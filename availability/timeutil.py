"""Event time as integer microseconds since the epoch, so the core compares ints, not datetimes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache

MICROS_PER_SECOND = 1_000_000
MICROS_PER_HOUR = 3600 * MICROS_PER_SECOND
MICROS_PER_DAY = 24 * MICROS_PER_HOUR

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MICRO = timedelta(microseconds=1)


def to_micros(moment: datetime) -> int:
    return (moment - _EPOCH) // _ONE_MICRO


def from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


@lru_cache(maxsize=4096)  # a batch stamps many SKUs with the same time
def format_micros(micros: int) -> str:
    """RFC 3339 in UTC with a Z, the form every answer of the API uses."""
    return from_micros(micros).isoformat().replace("+00:00", "Z")
