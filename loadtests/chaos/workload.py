"""The suite's events: the benchmarks' mix (`loadtests.workload.EventMix`: sales, orders,
picks, cancels, returns, receipts, transfers out, counts) plus the types it leaves out
(transfers in, adjustments), duplicates and late arrivals.

Every event SKU starts with OPENING_STOCK units at each location and every count is near
that figure, so no position of it ever comes near zero: an availability answer of 0 (or
anything under READ_FLOOR) for one of them is certainly wrong, whatever the state of the
stack when it was given. That is what makes "no reader is told 0 for stock that exists"
checkable while faults are going on.

Event ids are `<prefix>-<serial>`; the serial indexes the suite's record of which events
were answered 202 and which are in the Kafka log (`log_fold.Ledger`)."""

from __future__ import annotations

import random
from collections import deque
from datetime import datetime, timedelta
from typing import Any, Final

from loadtests.workload import LOCATIONS, EventMix, sku_name

OPENING_STOCK: Final = 1_000_000
READ_FLOOR: Final = 100_000  # far under any answer the load can produce for an event SKU
HOLD_LOCATION: Final = "DC1"
DUPLICATE_SHARE: Final = 0.05  # events sent again, same event_id, in a later batch
LATE_SHARE: Final = 0.05  # events that happened minutes before the stream's time
LATE_BY: Final = (timedelta(minutes=2), timedelta(minutes=40))
TRANSFER_IN_SHARE: Final = 0.03
ADJUST_SHARE: Final = 0.03


def hold_sku(index: int) -> str:
    return f"HOLD-{index:04d}"


def serial_of(event_id: str) -> int:
    return int(event_id.rsplit("-", 1)[1])


class ChaosMix:
    def __init__(self, event_skus: int, id_prefix: str, seed: int = 17) -> None:
        self.mix = EventMix(event_skus, seed=seed, id_prefix=id_prefix)
        self.skus = [sku_name(n) for n in range(event_skus)]
        self.random = random.Random(seed + 1)
        self.sent: deque[dict[str, Any]] = deque(maxlen=5_000)  # to send again
        self.shipped: deque[dict[str, Any]] = deque(maxlen=5_000)  # transfers to receive

    @property
    def serials(self) -> int:
        """Serials handed out so far: every event id's serial is below it."""
        return self.mix.serial + 1

    def opening_stock(self, hold_skus: int, hold_stock: int) -> list[dict[str, Any]]:
        """A receipt for every event SKU at every location, and for every hold SKU at the
        location its holds take from."""
        stock = [
            self.mix.receipt(sku, loc, OPENING_STOCK) for sku in self.skus for loc in LOCATIONS
        ]
        holds = [self.mix.receipt(hold_sku(n), HOLD_LOCATION, hold_stock) for n in range(hold_skus)]
        return stock + holds

    def batch(self, size: int) -> list[dict[str, Any]]:
        return [self.next() for _ in range(size)]

    def next(self) -> dict[str, Any]:
        r = self.random
        roll = r.random()
        if roll < DUPLICATE_SHARE and self.sent:
            return r.choice(self.sent)  # the same event (and id) again
        roll -= DUPLICATE_SHARE
        if roll < TRANSFER_IN_SHARE and self.shipped:
            out = self.shipped.popleft()
            event = self.mix.receipt(out["sku"], out["to_location"], out["qty"])
            event.update(type="transfer_in", transfer_id=out["transfer_id"])
        elif roll < TRANSFER_IN_SHARE + ADJUST_SHARE:
            event = self.mix.receipt(r.choice(self.skus), r.choice(LOCATIONS), 0)
            del event["qty"]
            event.update(type="adjust", delta=r.choice([-3, -1, 2, 5]), reason="cycle")
        else:
            event = self.mix.next()
            if event["type"] == "count":  # an ERP count: near the opening stock
                event["counted"] += OPENING_STOCK
            elif event["type"] == "transfer_out":
                self.shipped.append(event)
        if r.random() < LATE_SHARE:
            event["occurred_at"] = self._earlier(event["occurred_at"])
        self.sent.append(event)
        return event

    def _earlier(self, occurred_at: str) -> str:
        """The same moment minutes earlier: a late arrival (for a count, often older than
        the position's last count, which makes it stale)."""
        moment = datetime.fromisoformat(occurred_at.replace("Z", "+00:00"))
        late = self.random.uniform(LATE_BY[0].total_seconds(), LATE_BY[1].total_seconds())
        return (moment - timedelta(seconds=late)).isoformat().replace("+00:00", "Z")
