"""The streaming benchmark's bestseller stream (`loadtests/workload.py`): one SKU takes its
share of the events, as a chain's stores would send them, and the core applies every one of
them, in any order of the topics, remembering every event id: none is old enough to be
forgotten or dead-lettered."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta

from availability import SkuState, apply_events, decode_event
from availability.batch import BatchResult
from availability.events import Event, clock_error
from availability.layout import sku_records
from availability.processing import DEFAULT_WINDOWS
from availability.timeutil import to_micros
from loadtests.workload import (
    BESTSELLER_SKU,
    BESTSELLER_STORES,
    Bestseller,
    bestseller_stream,
)

DEDUP_WINDOW = timedelta(microseconds=DEFAULT_WINDOWS.dedup_us)
RECONCILIATION_WINDOW = timedelta(microseconds=DEFAULT_WINDOWS.reconciliation_us)
KAFKA_LIMIT_BYTES = 1024**2


def applied(events: list[Event], now_us: int) -> tuple[dict[str, SkuState], BatchResult]:
    states: dict[str, SkuState] = {}
    result = apply_events(lambda sku: states.setdefault(sku, SkuState(sku=sku)), events, now_us)
    return states, result


def test_one_sku_takes_its_share_and_the_catalogue_the_rest() -> None:
    events = bestseller_stream(5_000)

    skus = Counter(e["sku"] for e in events)
    assert skus[BESTSELLER_SKU] == 4_000
    assert all(sku.startswith("SKU-") for sku in skus if sku != BESTSELLER_SKU)
    assert len({e["event_id"] for e in events}) == 5_000
    again = bestseller_stream(5_000)
    assert [(e["event_id"], e["sku"], e["type"]) for e in again] == [
        (e["event_id"], e["sku"], e["type"]) for e in events
    ]


def test_the_bestseller_sells_mostly_at_twenty_stores_with_some_of_every_other_kind() -> None:
    best = Bestseller(10_000)
    events = [best.next() for _ in range(10_000)]

    assert {e["location"] for e in events} == set(BESTSELLER_STORES)
    assert len(BESTSELLER_STORES) == 20
    kinds = Counter(e["type"] for e in events)
    assert kinds["sale"] > 0.75 * len(events)
    assert set(kinds) == {"sale", "order", "pick", "return", "receipt", "count"}
    assert all(kinds[kind] >= 0.005 * len(events) for kind in kinds)


def test_its_times_are_in_order_inside_both_windows_and_never_ahead() -> None:
    now = datetime.now(UTC)
    best = Bestseller(1_000, end=now)
    times = [datetime.fromisoformat(best.next()["occurred_at"]) for _ in range(1_000)]

    assert times == sorted(times)
    assert times[-1] == now
    assert times[-1] - times[0] < RECONCILIATION_WINDOW < DEDUP_WINDOW


def test_the_core_applies_every_event_and_remembers_every_bestseller_id() -> None:
    raw = bestseller_stream(20_000)
    events = [decode_event(json.dumps(e).encode()) for e in raw]
    now_us = to_micros(datetime.now(UTC))
    assert [e for e in events if clock_error(e, now_us)] == []

    states, result = applied(events, now_us)

    assert result.dead_letters == []
    assert {outcome for _, outcome in result.outcomes} == {"applied"}
    best = states[BESTSELLER_SKU]
    assert len(best.seen) == best.version == 16_000
    assert all(position.on_hand >= 0 for position in best.positions.values())
    records = sku_records(best)
    assert max(len(key) + len(value or b"") for key, value in records) < KAFKA_LIMIT_BYTES // 100


def test_applied_topic_by_topic_in_any_order_no_event_is_dead_lettered() -> None:
    """A worker reads each event type's topic at its own pace: at worst, every count of the
    bestseller comes after every sale, picks and receipts of the whole stream."""
    events = [decode_event(json.dumps(e).encode()) for e in bestseller_stream(5_000)]
    now_us = to_micros(datetime.now(UTC))
    in_order, _ = applied(events, now_us)

    counts_last = sorted(events, key=lambda event: event.__struct_config__.tag == "count")
    by_topic, result = applied(counts_last, now_us)

    assert result.dead_letters == []
    assert {sku: s.version for sku, s in by_topic.items()} == {
        sku: s.version for sku, s in in_order.items()
    }
