"""Holds in the embedded engine with a fake clock: expiry by the time passed in, durability
across a crash, and how long a hold id is remembered for a repeated request."""

from __future__ import annotations

import msgspec
import pytest

from availability import Availability, Event
from availability.errors import UnknownHold
from availability.holds import HoldLineRequest, HoldRequest, HoldStatus
from embedded import EmbeddedEngine
from tests.unit.factories import DC, receipt
from tests.unit.test_embedded_feeds import Engines, FakeClock, clock, engines, rules, submit

__all__ = ["clock", "engines"]  # fixtures, shared with the feed tests

SECOND = 1_000_000


async def web_sellable(engine: EmbeddedEngine, sku: str) -> int:
    answer = await engine.availability(sku, "web", None)  # the answer's JSON, as the API sends it
    return msgspec.json.decode(answer, type=Availability).sellable


def hold(sku: str, qty: int, ttl_s: int = 60, hold_id: str | None = None) -> HoldRequest:
    return HoldRequest("web", [HoldLineRequest(sku, qty)], ttl_s, hold_id)


async def stocked_engine(engines: Engines) -> EmbeddedEngine:
    engine = engines.open(rules())
    await submit(engine, [receipt(10, sku="H-1", location=DC)])
    return engine


async def test_a_hold_ends_at_its_time_as_the_clock_says(
    engines: Engines, clock: FakeClock
) -> None:
    engine = await stocked_engine(engines)
    record = await engine.place_hold(hold("H-1", 4, ttl_s=60))
    assert record.status is HoldStatus.HELD
    assert await web_sellable(engine, "H-1") == 6

    clock.now += 59 * SECOND
    assert (await engine.place_hold(hold("H-1", 6))).status is HoldStatus.HELD
    assert await web_sellable(engine, "H-1") == 0
    clock.now += 1 * SECOND  # the first hold's time is up; the next decision sees it
    assert (await engine.place_hold(hold("H-1", 4))).status is HoldStatus.HELD
    with pytest.raises(UnknownHold, match="expired"):
        await engine.commit_hold(record.hold_id, None)


async def test_a_crash_keeps_each_hold_whole(engines: Engines, clock: FakeClock) -> None:
    engine = await stocked_engine(engines)
    record = await engine.place_hold(hold("H-1", 3, ttl_s=600))
    engines.crash(engine)

    reopened = engines.open()
    assert await web_sellable(reopened, "H-1") == 7
    committed = await reopened.commit_hold(record.hold_id, "ORD-1")
    assert [(line.sku, line.qty, line.location) for line in committed.committed] == [("H-1", 3, DC)]


async def test_a_hold_id_is_remembered_for_a_day_after_the_hold_ends(
    engines: Engines, clock: FakeClock
) -> None:
    engine = await stocked_engine(engines)
    await engine.place_hold(hold("H-1", 2, hold_id="cart-9"))
    await engine.release_hold("cart-9")
    engine.close()
    engines.opened.remove(engine)

    clock.now += 23 * 3600 * SECOND
    reopened = engines.open()
    repeat = await reopened.place_hold(hold("H-1", 2, hold_id="cart-9"))
    assert repeat.status is HoldStatus.RELEASED  # the first answer's record, nothing held
    assert await web_sellable(reopened, "H-1") == 10
    reopened.close()
    engines.opened.remove(reopened)

    clock.now += 2 * 3600 * SECOND
    later = engines.open()
    fresh = await later.place_hold(hold("H-1", 2, hold_id="cart-9"))
    assert fresh.status is HoldStatus.HELD  # forgotten: a new hold under the old id
    assert await web_sellable(later, "H-1") == 8


async def test_writes_between_checkpoints_leave_no_event_to_count_twice(
    engines: Engines, clock: FakeClock
) -> None:
    """Holds and rules changes write their SKUs at once, between checkpoints, and a SKU's
    write stores only the chunks changed since the one before: each must start where the
    last one ended, or a restart forgets event ids and counts their events again."""
    engine = engines.open(rules())
    events: list[Event] = [receipt(1, sku="H-1", location=DC, minutes=i / 100) for i in range(500)]
    for start in range(0, len(events), 100):  # enough events to seal several chunks
        await submit(engine, events[start : start + 100])
        placed = await engine.place_hold(hold("H-1", 1, ttl_s=600))
        await engine.release_hold(placed.hold_id)
        if start == 200:
            await engine.replace_rules(rules(share=0.4))
    engines.crash(engine)  # the last batches are in the log only

    reopened = engines.open()
    raw = [msgspec.json.encode(event) for event in events]
    result = await reopened.submit(events, raw)
    assert result.outcomes == {("receipt", "duplicate"): len(events)}
    assert await web_sellable(reopened, "H-1") == len(events)
