"""A peak-sale event mix over a catalogue of SKUs and locations, deterministic by seed."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

RULES: dict[str, Any] = {
    "default_location_type": "store",
    "locations": {"DC1": {"type": "dc"}, "DC2": {"type": "dc"}},
    "safety_stock": [{"units": 0}, {"location_type": "store", "units": 1}],
    "channels": {
        "web": {"location_types": ["dc", "store"]},
        "pickup": {"location_types": ["store"]},
        "amazon": {
            "location_types": ["dc"],
            "share": 0.5,
            "buffer": 2,
            "feed": {"max_per_second": 20, "min_interval_ms": 1000},
        },
    },
}

LOCATIONS = ["DC1", "DC2", "S001", "S002", "S003", "S004", "S005", "S006"]


def sku_name(index: int) -> str:
    return f"SKU-{index:06d}"


class EventMix:
    """Receipts first, then sales, orders, picks, cancels, returns, transfers and counts."""

    def __init__(
        self,
        skus: int,
        seed: int = 7,
        start: datetime | None = None,
        hot_share: float = 0.0,
        id_prefix: str = "bench",
    ) -> None:
        """`hot_share` of the events go to the hottest 1% of SKUs, as in a peak sale where
        a few doorbusters take most of the traffic; the rest spread evenly. Event ids are
        `<id_prefix>-<serial>`: mixes that feed one server need prefixes of their own."""
        self.skus = skus
        self.id_prefix = id_prefix
        self.hot_share = hot_share
        self.hot_skus = max(1, skus // 100)
        self.random = random.Random(seed)
        self.start = start or datetime.now(UTC) - timedelta(hours=1)
        self.serial = 0

    def _base(self, kind: str, sku: str, location: str) -> dict[str, Any]:
        self.serial += 1
        # Spread over the last hour, a few events per millisecond, like a busy chain.
        moment = self.start + timedelta(microseconds=self.serial * 50)
        return {
            "event_id": f"{self.id_prefix}-{self.serial}",
            "type": kind,
            "sku": sku,
            "location": location,
            "occurred_at": moment.isoformat().replace("+00:00", "Z"),
        }

    def receipt(self, sku: str, location: str, qty: int) -> dict[str, Any]:
        return dict(self._base("receipt", sku, location), qty=qty)

    def stock(self, sku_index: int) -> list[dict[str, Any]]:
        sku = sku_name(sku_index)
        return [self.receipt(sku, loc, 200) for loc in LOCATIONS]

    def next(self) -> dict[str, Any]:
        r = self.random
        hot = r.random() < self.hot_share
        sku = sku_name(r.randrange(self.hot_skus if hot else self.skus))
        location = r.choice(LOCATIONS)
        roll = r.random()
        if roll < 0.45:
            return dict(self._base("sale", sku, location), qty=r.randint(1, 3))
        if roll < 0.65:
            order = f"W-{r.randrange(self.skus * 4)}"
            return dict(self._base("order", sku, location), qty=1, order_id=order, channel="web")
        if roll < 0.75:
            order = f"W-{r.randrange(self.skus * 4)}"
            return dict(self._base("pick", sku, location), qty=1, order_id=order)
        if roll < 0.80:
            order = f"W-{r.randrange(self.skus * 4)}"
            return dict(self._base("cancel", sku, location), qty=1, order_id=order)
        if roll < 0.85:
            return dict(self._base("return", sku, location), qty=1, disposition="sellable")
        if roll < 0.92:
            return dict(self._base("receipt", sku, location), qty=r.randint(10, 50))
        if roll < 0.96:
            transfer = f"T-{r.randrange(self.skus)}"
            return dict(
                self._base("transfer_out", sku, "DC1"),
                qty=5,
                transfer_id=transfer,
                to_location=location,
            )
        return dict(self._base("count", sku, location), counted=r.randint(50, 150))

    def batches(self, count: int, size: int) -> list[list[dict[str, Any]]]:
        return [[self.next() for _ in range(size)] for _ in range(count)]
