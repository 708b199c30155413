"""What the recovery benchmark (`loadtests/bench_recovery.py`) fills the table's changelog
with: settled SKUs after a week of trade, as a worker writes them (`availability/layout.py`:
each SKU's head record, and the chunk records its items overflow into), each SKU's records
on the partition its events go to. Pure: no Kafka, no worker, deterministic by SKU index.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from typing import Final

from availability.layout import Record, sku_records
from availability.state import SkuState
from availability.topics import partition_for

from .workload import LOCATIONS, sku_name

HOUR_US: Final = 3_600 * 1_000_000
DAY_US: Final = 24 * HOUR_US
# The table: 5,000,000 remembered event ids over its 125,000 SKUs (a week of a
# mid-size chain's events for one worker's partitions), so 40 a SKU.
SEEN_PER_SKU: Final = 5_000_000 // 125_000
# The remembered ids' event times go back this far: inside the 7-day dedup window, so
# none is due to be forgotten when the worker takes the table over.
SEEN_SPREAD_US: Final = 6 * DAY_US


def sku_count(positions: int, per_sku: int) -> int:
    return math.ceil(positions / per_sku)


def location_names(count: int) -> list[str]:
    """The load tests' locations, and more made up after them when a SKU needs more."""
    return [LOCATIONS[n] if n < len(LOCATIONS) else f"S{n:03d}X" for n in range(count)]


def sku_state(
    index: int, locations: Sequence[str], now_us: int, seen: int = SEEN_PER_SKU
) -> SkuState:
    """A settled SKU as a worker's table holds it after a week of trade: per location an
    on-hand, an open order half the time, an open inbound transfer at some stores, the last
    count and the on-hand effects since; and the SKU's `seen` dedup ids. Built through the
    state's own methods, so its book knows every item. Deterministic by `index`."""
    rng = random.Random(index)
    state = SkuState(sku=sku_name(index))
    newest = now_us - rng.randrange(HOUR_US)
    for n, location in enumerate(locations):
        at = newest - rng.randrange(DAY_US)
        position = state.position(location)
        if rng.random() < 0.5:
            order = state.order(location, f"W-{index}-{n}")
            order.ordered, order.picked, order.last_at = 2, 1, at
            state.book.touch(order.chunk, at)
            position.reserved += order.open_qty
        if location.startswith("S") and rng.random() < 0.25:
            transfer = state.transfer(location, f"T-{index}-{n}")
            transfer.shipped, transfer.last_at = 5, at
            state.book.touch(transfer.chunk, at)
            position.inbound += transfer.open_qty
        counted = rng.randint(0, 200)
        sales = ((at - 1_000, -1), (at, -rng.randint(1, 3)))  # the effects since the count
        for effect_at, delta in sales:
            state.add_effect(location, effect_at, delta)
        position.on_hand = counted + sum(delta for _, delta in sales)
        position.newest_at = at
        position.last_count_at = at - HOUR_US
        position.last_count_id = f"count-{index}-{n}"
        position.last_count_drift = rng.randint(-3, 3)
    for k in range(seen):
        state.remember(f"ev-{index}-{k}", newest - rng.randrange(SEEN_SPREAD_US))
    state.version = seen  # one version an applied event
    state.updated_at = now_us
    state.newest_at = newest
    state.compacted_at = newest - HOUR_US
    return state


def changelog_records(
    positions: int, per_sku: int, partitions: int, now_us: int, seen: int = SEEN_PER_SKU
) -> Iterator[tuple[int, list[Record]]]:
    """(partition, records) of every SKU: `positions` positions in all (the last SKU may
    have fewer locations), each SKU's records of one write (its chunks, then its head) on
    the partition its SKU's events go to."""
    locations = location_names(per_sku)
    for index in range(sku_count(positions, per_sku)):
        held = locations[: min(per_sku, positions - index * per_sku)]
        state = sku_state(index, held, now_us, seen)
        yield partition_for(state.sku.encode(), partitions), sku_records(state)
