"""The embedded mode's channel feeds (SPEC 5 and 7) through the engine, on a real RocksDB in a
temporary directory, with a fake clock: the pump is driven by hand (`publish_due`) except
where a test is about the pump itself."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from availability import Availability, Event, Rules, Settings, rules_from_object
from availability.errors import CursorExpired, InvalidCursor, NoFeed, UnknownChannel
from availability.feeds import FeedItem
from embedded import EmbeddedEngine
from tests.unit.factories import DC, STORE, T0_US, receipt, sale

START_US = T0_US + 10 * 60 * 1_000_000  # after every event the tests build, inside the skew


class FakeClock:
    def __init__(self, now: int = START_US) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: float) -> None:
        self.now += int(ms * 1000)


def rules(web_feed: dict[str, Any] | None = None, **amazon: Any) -> Rules:
    """web: every location; amazon: the DC only, half of it, less a buffer of 1."""
    web: dict[str, Any] = {"location_types": ["dc", "store"]}
    if web_feed is not None:
        web["feed"] = web_feed
    return rules_from_object(
        {
            "locations": {DC: {"type": "dc"}, STORE: {"type": "store"}},
            "channels": {
                "web": web,
                "amazon": {
                    "location_types": ["dc"],
                    "share": 0.5,
                    "buffer": 1,
                    "feed": {"max_per_second": 400, "min_interval_ms": 1000},
                    **amazon,
                },
                "pickup": {"location_types": ["store"]},
            },
        }
    )


FAST_FEED = {"max_per_second": 100_000, "min_interval_ms": 0}
SLOW_FEED = {"max_per_second": 300, "min_interval_ms": 500}


class Engines:
    """Opens engines on one data directory, as a process would at each start."""

    def __init__(self, data_dir: Path, clock: FakeClock) -> None:
        self.data_dir, self.clock = data_dir, clock
        self.opened: list[EmbeddedEngine] = []

    def open(self, rules_at_start: Rules | None = None, retention: int = 100_000) -> EmbeddedEngine:
        settings = Settings(data_dir=str(self.data_dir), feed_retention=retention)
        engine = EmbeddedEngine(settings, self.clock)
        engine.open(rules_at_start)
        self.opened.append(engine)
        return engine

    def crash(self, engine: EmbeddedEngine) -> None:
        """Stop with no checkpoint: the log is all that is left of the last batches."""
        engine.store.close()
        self.opened.remove(engine)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def engines(tmp_path: Path, clock: FakeClock) -> Iterator[Engines]:
    engines = Engines(tmp_path / "db", clock)
    yield engines
    for engine in engines.opened:
        engine.close()


async def submit(engine: EmbeddedEngine, events: list[Event]) -> None:
    await engine.submit(events, [msgspec.json.encode(event) for event in events])


def drain(engine: EmbeddedEngine, clock: FakeClock) -> None:
    """Run the pump by hand, moving the clock to each due time, until nothing is pending."""
    for _ in range(100_000):
        due = engine.feeds.next_due_at()
        if due is None:
            return
        clock.now = max(clock.now, due)
        engine.feeds.publish_due()
    raise AssertionError("the feeds never drained")


async def follow(engine: EmbeddedEngine, channel: str, cursor: str | None) -> list[FeedItem]:
    items: list[FeedItem] = []
    while True:
        page = await engine.feed(channel, cursor, 1000, 0)
        if not page.items:
            return items
        items.extend(page.items)
        cursor = page.cursor


async def current(engine: EmbeddedEngine, channel: str, skus: list[str]) -> dict[str, int]:
    answers = await engine.availability_batch(skus, channel, None)
    decoded = [msgspec.json.decode(answer, type=Availability) for answer in answers]
    return {answer.sku: answer.sellable for answer in decoded}


def last_word(items: list[FeedItem]) -> dict[str, int]:
    return {item.sku: item.sellable for item in items}


def random_events(rng: random.Random, skus: list[str], n: int) -> list[Event]:
    """Receipts and sales of a few units: values go up, down and often back again."""
    events: list[Event] = []
    for _ in range(n):
        sku, location = rng.choice(skus), rng.choice([DC, STORE])
        qty = rng.randint(1, 3)
        make = receipt if rng.random() < 0.55 else sale
        events.append(make(qty, sku=sku, location=location, minutes=rng.uniform(0, 5)))
    return events


# -- the last word ---------------------------------------------------------------------------


async def test_snapshot_taken_during_a_burst_then_the_feed_give_every_current_quantity(
    engines: Engines, clock: FakeClock
) -> None:
    engine = engines.open(rules(web_feed=SLOW_FEED))
    rng = random.Random(7)
    skus = [f"SKU-{i:04d}" for i in range(2000)]
    events = random_events(rng, skus, 10_000)
    batches = [events[i : i + 500] for i in range(0, len(events), 500)]
    snapshots: dict[str, dict[str, tuple[int, int]]] = {"web": {}, "amazon": {}}
    tokens: dict[str, str | None] = {}
    cursors: dict[str, str] = {}
    for index, batch in enumerate(batches):
        await submit(engine, batch)
        clock.advance(50)
        engine.feeds.publish_due()  # the pump keeps up only in part: much stays pending
        if index >= len(batches) // 2:  # a snapshot paged through while changes go on
            for channel, held in snapshots.items():
                if channel in tokens and tokens[channel] is None:
                    continue
                page = await engine.feed_snapshot(channel, tokens.get(channel), 300)
                cursors.setdefault(channel, page.cursor)
                assert page.cursor == cursors[channel]  # one snapshot, one cursor
                held.update((item.sku, (item.version, item.sellable)) for item in page.items)
                tokens[channel] = page.next_page_token
    for channel, held in snapshots.items():
        while tokens[channel] is not None:
            page = await engine.feed_snapshot(channel, tokens[channel], 300)
            assert page.cursor == cursors[channel]
            held.update((item.sku, (item.version, item.sellable)) for item in page.items)
            tokens[channel] = page.next_page_token
    drain(engine, clock)

    for channel, held in snapshots.items():
        assert any(sellable == 0 for _, sellable in held.values())  # zeros are in it too
        for item in await follow(engine, channel, cursors[channel]):
            # A consumer keeps the newest version; a SKU it has none of is at 0.
            if item.version > held.get(item.sku, (0, 0))[0]:
                held[item.sku] = (item.version, item.sellable)
        truth = await current(engine, channel, skus)
        assert {sku: held.get(sku, (0, 0))[1] for sku in skus} == truth
        # A consumer that followed from the first item, without a snapshot, agrees too.
        from_start = last_word(await follow(engine, channel, None))
        assert {sku: from_start.get(sku, 0) for sku in skus} == truth
    stats = engine.feeds.stats()
    assert stats["web"].backlog == stats["amazon"].backlog == 0
    assert stats["web"].coalesced > 0


async def test_versions_only_grow_per_sku_in_the_feed_across_a_crash(
    engines: Engines, clock: FakeClock
) -> None:
    engine = engines.open(rules(web_feed=SLOW_FEED))
    rng = random.Random(11)
    skus = [f"SKU-{i}" for i in range(30)]
    for round_ in range(12):
        await submit(engine, random_events(rng, skus, 40))
        clock.advance(200)
        engine.feeds.publish_due()
        if round_ == 6:
            engines.crash(engine)  # and the pending values are lost
            engine = engines.open()
    drain(engine, clock)

    for channel in ("web", "amazon"):
        items = await follow(engine, channel, None)
        newest: dict[str, int] = {}
        for item in items:
            assert item.version > newest.get(item.sku, 0), item
            newest[item.sku] = item.version
        truth = await current(engine, channel, skus)
        assert {sku: last_word(items).get(sku, 0) for sku in skus} == truth


async def test_reopening_re_offers_what_was_pending_and_only_that(
    engines: Engines, clock: FakeClock
) -> None:
    one_a_second = {"max_per_second": 1, "min_interval_ms": 0}
    engine = engines.open(rules(web_feed=one_a_second))
    skus = [f"SKU-{i}" for i in range(5)]
    await submit(engine, [receipt(3 + i, sku=sku) for i, sku in enumerate(skus)])
    engine.feeds.publish_due()  # one item: the rate lets no more through this second
    assert len(await follow(engine, "web", None)) == 1
    engine.close()  # a clean stop loses the throttle's pending values all the same

    engine = engines.open()
    assert engine.feeds.stats()["web"].backlog == 4  # the published one is not offered again
    drain(engine, clock)
    items = await follow(engine, "web", None)
    assert [item.sku for item in items].count("SKU-0") == 1
    assert last_word(items) == await current(engine, "web", skus)


# -- rules changes ---------------------------------------------------------------------------


async def test_a_rules_change_adding_a_feed_offers_every_sku_and_share_changes_follow(
    engines: Engines, clock: FakeClock
) -> None:
    engine = engines.open(rules())
    skus = [f"SKU-{i:03d}" for i in range(300)]
    await submit(engine, [receipt(1 + i % 7, sku=sku) for i, sku in enumerate(skus)])
    await submit(engine, [sale(1, sku=sku) for sku in skus[::7]])  # some at 0
    with pytest.raises(NoFeed):
        await engine.feed("web", None, 10, 0)
    with pytest.raises(UnknownChannel):
        await engine.feed("nope", None, 10, 0)

    await engine.replace_rules(rules(web_feed=FAST_FEED))
    drain(engine, clock)
    items = await follow(engine, "web", None)
    truth = await current(engine, "web", skus)
    # Every SKU the channel has something of, once; a SKU at 0 is what the feed never
    # having carried it already says.
    assert sorted(item.sku for item in items) == sorted(s for s in skus if truth[s])
    assert last_word(items) == {sku: q for sku, q in truth.items() if q}

    cursor = str(engine.feeds.stats()["web"].head)
    await engine.replace_rules(rules(web_feed={**FAST_FEED, "min_interval_ms": 100}, share=0.5))
    drain(engine, clock)
    assert await follow(engine, "web", cursor) == []  # amazon's share moves nothing of web's
    amazon = last_word(await follow(engine, "amazon", None))
    assert {sku: amazon.get(sku, 0) for sku in skus} == await current(engine, "amazon", skus)

    await engine.replace_rules(rules())  # the feed goes; its items stay for a comeback
    with pytest.raises(NoFeed):
        await engine.feed("web", cursor, 10, 0)
    await engine.replace_rules(rules(web_feed=FAST_FEED))
    drain(engine, clock)
    assert await follow(engine, "web", cursor) == []  # nothing changed meanwhile


# -- cursors, retention, long polls ----------------------------------------------------------


async def test_retention_keeps_the_newest_items_and_an_older_cursor_expires(
    engines: Engines, clock: FakeClock
) -> None:
    engine = engines.open(rules(web_feed=FAST_FEED), retention=50)
    await submit(engine, [receipt(1, sku=f"SKU-{i:03d}") for i in range(200)])
    drain(engine, clock)

    page = await engine.feed("web", None, 1000, 0)
    assert len(page.items) == 50
    assert page.cursor == "200"
    assert page.items[0].sku == "SKU-150"
    assert (await engine.feed("web", "150", 1, 0)).items == page.items[:1]
    with pytest.raises(CursorExpired):
        await engine.feed("web", "149", 10, 0)
    for bad in ("201", "abc", "-1", "1" * 40):
        with pytest.raises(InvalidCursor):
            await engine.feed("web", bad, 10, 0)
    assert (await engine.feed("web", "200", 10, 0)).items == []

    engine.close()
    engine = engines.open()
    assert (await engine.feed("web", None, 1000, 0)).items == page.items
    with pytest.raises(CursorExpired):
        await engine.feed("web", "0", 10, 0)


async def test_snapshot_pages_share_one_cursor_and_refuse_a_foreign_token(
    engines: Engines, clock: FakeClock
) -> None:
    engine = engines.open(rules(web_feed=FAST_FEED))
    await submit(engine, [receipt(2, sku=f"SKU-{i}") for i in range(7)])
    drain(engine, clock)
    first = await engine.feed_snapshot("web", None, 3)
    await submit(engine, [receipt(2, sku="SKU-9")])
    drain(engine, clock)
    second = await engine.feed_snapshot("web", first.next_page_token, 3)
    third = await engine.feed_snapshot("web", second.next_page_token, 3)
    assert first.cursor == second.cursor == third.cursor == "7"
    assert [i.sku for i in first.items + second.items + third.items] == [
        *(f"SKU-{i}" for i in range(7)),
        "SKU-9",
    ]
    assert third.next_page_token is None
    assert first.next_page_token is not None
    with pytest.raises(InvalidCursor):
        await engine.feed_snapshot("amazon", first.next_page_token, 3)
    with pytest.raises(InvalidCursor):
        await engine.feed_snapshot("web", "not-a-token", 3)
    with pytest.raises(NoFeed):
        await engine.feed_snapshot("pickup", None, 3)


async def test_a_long_poll_answers_with_what_the_pump_appends(
    engines: Engines, clock: FakeClock
) -> None:
    engine = engines.open(rules(web_feed=FAST_FEED))
    pump = asyncio.create_task(engine.feeds.run())
    try:
        empty = await engine.feed("web", None, 10, 20)  # nothing comes: the same cursor
        assert (empty.items, empty.cursor) == ([], "0")

        waiting = asyncio.create_task(engine.feed("web", "0", 10, 10_000))
        await asyncio.sleep(0.01)
        assert not waiting.done()
        await submit(engine, [receipt(4, sku="SKU-1")])
        page = await asyncio.wait_for(waiting, 5)
        assert [(item.sku, item.sellable) for item in page.items] == [("SKU-1", 4)]
        assert page.cursor == "1"
        assert engine.feeds.stats()["web"].published == 1
    finally:
        pump.cancel()
        await asyncio.wait([pump])
