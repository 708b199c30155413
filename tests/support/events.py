"""Inventory events as JSON objects for POST /v1/events, at minutes past a base time.

The base is two hours before the tests start, so every event a test builds (up to an hour
after the base, the tests take far less) is in the past and no clock rule refuses it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Final

BASE: Final = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)


def at(minutes: float) -> str:
    """RFC 3339 (with a Z) `minutes` after the base time."""
    moment = BASE + timedelta(minutes=minutes)
    return moment.isoformat().replace("+00:00", "Z")


def unique_sku(prefix: str = "SKU") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def event(
    type_: str,
    sku: str,
    location: str = "S001",
    *,
    minute: float = 0,
    event_id: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """An event of `type_`; `fields` are its extra fields (qty, order_id, counted, ...)."""
    return {
        "event_id": event_id or f"ev-{uuid.uuid4().hex}",
        "type": type_,
        "sku": sku,
        "location": location,
        "occurred_at": at(minute),
        **fields,
    }
