"""How big and how long: the full run (`make chaos`) and the short one (the pytest)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class Profile:
    name: str
    event_skus: int  # SKUs that take events (and reads)
    hold_skus: int  # SKUs that take holds only (after their opening receipt)
    hold_stock: int  # units each hold SKU receives at the start: holds compete for them
    target_events_per_s: int  # a ceiling: the load sends as fast as it can up to it
    batch_size: int  # events per POST /v1/events
    writers_per_api: int  # concurrent POSTs per API
    holds_per_s: float  # per API
    reads_per_s: float  # per API
    warm_s: float  # load before each fault
    fault_s: float  # how long a fault lasts (a broker down, a worker frozen...)
    settle_timeout_s: float  # after a fault's end, until every answer must be right
    short_ttl_s: int  # the TTL of the holds left to expire


FULL: Final = Profile(
    name="full",
    event_skus=400,
    hold_skus=16,
    hold_stock=400,
    target_events_per_s=6_000,
    batch_size=500,
    writers_per_api=3,
    holds_per_s=5.0,
    reads_per_s=40.0,
    warm_s=20.0,
    fault_s=20.0,
    settle_timeout_s=180.0,
    short_ttl_s=8,
)

SHORT: Final = Profile(
    name="short",
    event_skus=120,
    hold_skus=8,
    hold_stock=150,
    target_events_per_s=3_000,
    batch_size=250,
    writers_per_api=2,
    holds_per_s=3.0,
    reads_per_s=20.0,
    warm_s=6.0,
    fault_s=20.0,
    settle_timeout_s=90.0,
    short_ttl_s=5,
)
