"""The benchmarks' events, deterministic by seed: a peak-sale mix over a catalogue of SKUs
and locations, and a stream where one bestseller takes most of the events."""

from __future__ import annotations

import random
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import Any, Final

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


BESTSELLER_SKU: Final = "BEST-000001"  # apart from the catalogue's SKU-… names
BESTSELLER_SHARE: Final = 0.8  # of a bestseller stream's events, the bestseller's
BESTSELLER_STORES: Final = [f"S{n:03d}" for n in range(1, 21)]  # a mid-size chain's 20 stores
# Its events' times cover 40 hours of trade: inside the 7-day dedup window, so the worker
# remembers every one of their ids; and inside the 48-hour reconciliation window, because
# the benchmark sends them all within seconds and the worker reads each event type's topic
# at its own pace: a count may be applied after sales of many hours later, and a count
# more than 48 hours behind them would be dead-lettered.
BESTSELLER_SPAN: Final = timedelta(hours=40)
OPENING_STOCK: Final = 200  # units a store starts with
REPLENISH_BELOW: Final = 20  # a store under this many units gets a receipt, not a sale
RECEIPT_QTY: Final = 120


class Bestseller:
    """The events of one SKU that sells at every store of a chain: a receipt at each store
    first, then sales mostly, and web orders shipped from a store (picked later), returns,
    cycle counts, and a receipt wherever stock runs low (about 1% of the events).

    The times of the `events` drawn are spread evenly over `span`, ending at `end`, in
    order. The units each store holds are followed, so a sale never takes a store below
    zero and a count finds what the book says, give or take a unit or two."""

    def __init__(
        self,
        events: int,
        seed: int = 13,
        end: datetime | None = None,
        span: timedelta = BESTSELLER_SPAN,
        sku: str = BESTSELLER_SKU,
        id_prefix: str = "best",
    ) -> None:
        self.sku = sku
        self.id_prefix = id_prefix
        self.random = random.Random(seed)
        end = end or datetime.now(UTC) - timedelta(minutes=1)
        self.start, self.span = end - span, span
        self.last = max(1, events - 1)  # the last event's serial: it happens at `end`
        self.serial = 0
        self.units = dict.fromkeys(BESTSELLER_STORES, 0)
        self.open_orders: deque[tuple[str, str, int]] = deque()  # store, order id, qty

    def _event(self, kind: str, store: str, **fields: Any) -> dict[str, Any]:
        moment = self.start + self.span * self.serial / self.last
        self.serial += 1
        return {
            "event_id": f"{self.id_prefix}-{self.serial}",
            "type": kind,
            "sku": self.sku,
            "location": store,
            "occurred_at": moment.isoformat().replace("+00:00", "Z"),
            **fields,
        }

    def _receipt(self, store: str, qty: int) -> dict[str, Any]:
        self.units[store] += qty
        return self._event("receipt", store, qty=qty)

    def next(self) -> dict[str, Any]:
        if self.serial < len(BESTSELLER_STORES):  # the opening stock
            return self._receipt(BESTSELLER_STORES[self.serial], OPENING_STOCK)
        r = self.random
        store = r.choice(BESTSELLER_STORES)
        roll = r.random()
        if self.units[store] < REPLENISH_BELOW:  # a delivery, before it runs out
            return self._receipt(store, RECEIPT_QTY)
        if roll < 0.06:
            order_id = f"W-{self.id_prefix}-{self.serial}"
            self.open_orders.append((store, order_id, 1))
            return self._event("order", store, qty=1, order_id=order_id, channel="web")
        if roll < 0.12 and self.open_orders:  # the oldest web order, at its store
            store, order_id, qty = self.open_orders.popleft()
            self.units[store] -= qty
            return self._event("pick", store, qty=qty, order_id=order_id)
        if 0.12 <= roll < 0.16:
            self.units[store] += 1
            return self._event("return", store, qty=1, disposition="sellable")
        if 0.16 <= roll < 0.17:
            counted = max(0, self.units[store] + r.randint(-2, 2))  # shrink, or a find
            self.units[store] = counted
            return self._event("count", store, counted=counted)
        qty = r.randint(1, 2)  # a sale: the rest, about 83% less the receipts
        self.units[store] -= qty
        return self._event("sale", store, qty=qty)


def bestseller_stream(
    total: int, share: float = BESTSELLER_SHARE, skus: int = 20_000, seed: int = 13
) -> list[dict[str, Any]]:
    """`total` events, `share` of them the bestseller's, the rest the catalogue's usual mix
    (`EventMix`, ids of their own), interleaved at random as stores and warehouses send
    them."""
    r = random.Random(seed)
    hot = set(r.sample(range(total), round(total * share)))
    bestseller = Bestseller(len(hot), seed=seed)
    catalogue = EventMix(skus, seed=seed, id_prefix="bestmix")
    return [bestseller.next() if n in hot else catalogue.next() for n in range(total)]
