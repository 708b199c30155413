"""Throttled fan-out to a channel's feed (SPEC section 7): both limits hold exactly, newer
values replace waiting ones, a hot SKU cannot starve the others, and the last word is never
lost. Time is a fake clock in integer microseconds."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from fractions import Fraction
from itertools import count
from typing import Final, NamedTuple

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from availability.fanout import ChannelThrottle, ThrottledItem, rate_budget

PROPERTY: Final = settings(max_examples=150, deadline=None)

MS: Final = 1000
SECOND: Final = 1_000_000
T0: Final = 1_700_000_000 * SECOND  # an epoch instant, so nothing leans on time starting at 0


def drain(throttle: ChannelThrottle, now: int, max_calls: int = 10_000) -> list[ThrottledItem]:
    """What a pump does once offers stop: take at every due time until nothing waits.

    On the way it checks that `next_due_at` is exact: nothing is due a µs earlier, and a
    take at the due time returns an item unless the values due were dropped as unchanged.
    """
    items: list[ThrottledItem] = []
    for _ in range(max_calls):
        due = throttle.next_due_at()
        if due is None:
            return items
        if due > now:
            assert throttle.take_due(due - 1) == []
            now = due
        unchanged = throttle.unchanged
        taken = throttle.take_due(now)
        assert taken or throttle.unchanged > unchanged, f"nothing was due at {now}"
        items += taken
    raise AssertionError(f"still {throttle.backlog} waiting after {max_calls} takes")


def assert_within_limits(
    items: Sequence[ThrottledItem], max_per_second: float, min_interval_ms: int, since: int = 0
) -> None:
    """The limits, checked from their definitions rather than from the throttle's scheme,
    for every item from position `since` on, counting the items before it too."""
    times = [item.at for item in items]
    assert times == sorted(times), "items leave in the order they were taken"
    rate = Fraction(max_per_second)
    for position in range(since, len(items)):
        end = times[position]
        if rate >= 1:  # the busiest window [t, t + 1 s) can be slid to end at an item
            in_window = bisect_right(times, end) - bisect_right(times, end - SECOND)
            assert in_window <= rate, f"{in_window} items in the second up to {end}"
        elif position > 0:
            assert (end - times[position - 1]) * rate >= SECOND, f"items up to {end}"
    last_of: dict[str, ThrottledItem] = {}
    for position, item in enumerate(items):
        earlier = last_of.get(item.sku)
        if earlier is not None:
            assert item.version > earlier.version
            if position >= since:
                assert item.at - earlier.at >= min_interval_ms * MS, (earlier, item)
        last_of[item.sku] = item


# --- properties over arbitrary offers and takes -------------------------------------------


class Offer(NamedTuple):
    advance: int
    sku: str
    sellable: int
    late_by: int  # 0: the newest version yet; more: an older version arriving late


class Take(NamedTuple):
    advance: int
    limit: int | None


SKUS: Final = ("A", "B", "C", "D")
RATES: Final = st.one_of(
    st.sampled_from([0.3, 0.5, 1.0, 1.5, 2.5, 3.0, 10.0]),
    st.floats(min_value=0.05, max_value=50),
)
INTERVALS_MS: Final = st.sampled_from([0, 1, 250, 1000, 2500])
# Edges of the limits are where an off-by-one hides.
# Mostly nothing or a step to just before an interval or a second ends; sometimes anything.
EDGES: Final = (1, MS - 1, 250 * MS - 1, SECOND - 1, SECOND, 2500 * MS - 1)
advances = st.one_of(st.just(0), st.sampled_from(EDGES), st.just(0), st.integers(0, 3 * SECOND))
late_by = st.one_of(st.just(0), st.integers(0, 5))
offers = st.builds(Offer, advances, st.sampled_from(SKUS), st.integers(0, 3), late_by)
takes = st.builds(Take, advances, st.none() | st.integers(0, 3))
operations = st.lists(st.one_of(offers, takes), min_size=10, max_size=80)


class Replay:
    """Plays offers and takes against a throttle on a fake clock, remembering what was
    offered and what came out."""

    def __init__(self, throttle: ChannelThrottle) -> None:
        self.throttle = throttle
        self.now = T0
        self.versions = count(10)
        self.offered: set[tuple[str, int, int, int]] = set()
        self.newest: dict[str, tuple[int, int]] = {}  # sku -> (version, sellable)
        self.published: list[ThrottledItem] = []

    def play(self, ops: Sequence[Offer | Take]) -> None:
        for op in ops:
            self.now += op.advance
            match op:
                case Offer(_, sku, sellable, late_by):
                    version = next(self.versions) - late_by
                    self.throttle.offer(sku, sellable, version, self.now)
                    self.offered.add((sku, sellable, version, self.now))
                    if sku not in self.newest or version > self.newest[sku][0]:
                        self.newest[sku] = (version, sellable)
                case Take(_, limit):
                    items = self.throttle.take_due(self.now, limit)
                    assert limit is None or len(items) <= limit
                    assert all(item.at == self.now for item in items)
                    self.published += items

    def drain(self) -> None:
        self.published += drain(self.throttle, self.now)

    def assert_the_newest_value_is_the_last_word(self) -> None:
        for item in self.published:
            assert (item.sku, item.sellable, item.version, item.changed_at) in self.offered
        last_word = {item.sku: item.sellable for item in self.published}
        assert last_word == {sku: sellable for sku, (_, sellable) in self.newest.items()}
        assert self.throttle.backlog == 0
        assert self.throttle.next_due_at() is None
        assert self.throttle.published == len(self.published)


@PROPERTY
@given(max_per_second=RATES, min_interval_ms=INTERVALS_MS, ops=operations)
@example(  # a SKU changes again a µs before its min interval ends
    max_per_second=10.0,
    min_interval_ms=1,
    ops=[Offer(0, "A", 1, 0), Take(0, None), Offer(MS - 1, "A", 2, 0), Take(0, None)],
)
@example(  # the budget is spent until a µs before the second ends
    max_per_second=2.5,
    min_interval_ms=0,
    ops=[Offer(0, sku, 1, 0) for sku in SKUS] + [Take(0, None), Take(SECOND - 1, None)],
)
def test_limits_hold_and_the_newest_value_is_the_last_word(
    max_per_second: float, min_interval_ms: int, ops: list[Offer | Take]
) -> None:
    replay = Replay(ChannelThrottle(max_per_second, min_interval_ms))
    replay.play(ops)
    replay.drain()

    assert_within_limits(replay.published, max_per_second, min_interval_ms)
    replay.assert_the_newest_value_is_the_last_word()


@PROPERTY
@given(
    limits=st.tuples(RATES, INTERVALS_MS),
    new_limits=st.tuples(RATES, INTERVALS_MS),
    before=operations,
    after=operations,
)
def test_new_limits_hold_from_a_reconfigure_on_and_nothing_waiting_is_lost(
    limits: tuple[float, int],
    new_limits: tuple[float, int],
    before: list[Offer | Take],
    after: list[Offer | Take],
) -> None:
    replay = Replay(ChannelThrottle(*limits))
    replay.play(before)
    since = len(replay.published)

    replay.throttle.reconfigure(*new_limits)
    replay.play(after)
    replay.drain()

    assert_within_limits(replay.published[:since], *limits)
    assert_within_limits(replay.published, *new_limits, since=since)
    replay.assert_the_newest_value_is_the_last_word()


@PROPERTY
@given(
    max_per_second=RATES,
    min_interval_ms=INTERVALS_MS,
    schedule=st.lists(
        st.tuples(advances, st.sampled_from(SKUS), st.booleans()), min_size=10, max_size=80
    ),
)
def test_skus_go_in_the_order_they_became_free_to_go(
    max_per_second: float, min_interval_ms: int, schedule: list[tuple[int, str, bool]]
) -> None:
    """First come, first served: SKUs are published in the order they became free to go
    (offered, and past their min interval). So a SKU that changes all the time rejoins at
    the back after each item, and never goes twice while another SKU is free to go."""
    throttle = ChannelThrottle(max_per_second, min_interval_ms)
    versions = count(1)
    waiting_since: dict[str, int] = {}  # sku -> when its pending value was first offered
    last_at: dict[str, int] = {}
    published: list[tuple[ThrottledItem, int]] = []  # with when the SKU was free to go

    def record(items: list[ThrottledItem]) -> None:
        for item in items:
            free_at = waiting_since.pop(item.sku)
            if item.sku in last_at:
                free_at = max(free_at, last_at[item.sku] + min_interval_ms * MS)
            last_at[item.sku] = item.at
            published.append((item, free_at))

    now = T0
    for advance, sku, take in schedule:
        now += advance
        version = next(versions)  # values always change: nothing stale, nothing unchanged
        throttle.offer(sku, version, version, now)
        waiting_since.setdefault(sku, now)
        if take:
            record(throttle.take_due(now))
    record(drain(throttle, now))

    assert not waiting_since
    free_ats = [free_at for _, free_at in published]
    assert free_ats == sorted(free_ats), published


# --- fairness: a hot SKU and 100 cold ones ---------------------------------------------------

HOT: Final = "HOT"
COLD: Final = tuple(f"COLD-{n:03}" for n in range(100))


def cold_published_at(max_per_second: float, min_interval_ms: int, every_tick: bool) -> int:
    """When the last cold SKU was published, with the hot SKU changing at every µs tick.

    With `every_tick` the clock really steps one µs at a time. Otherwise it jumps to the
    next due time, offering the hot SKU on the tick after each take and on the due tick:
    the changes in between would only replace each other, so the feed is the same.
    """
    throttle = ChannelThrottle(max_per_second, min_interval_ms)
    versions = count(1)
    now = T0
    throttle.offer(HOT, 0, next(versions), now)
    for sku in COLD:
        throttle.offer(sku, 1, 1, now)
    published_at: dict[str, int] = {}
    hot_items = 0
    while True:
        for item in throttle.take_due(now):
            if item.sku == HOT:
                hot_items += 1
            else:
                published_at.setdefault(item.sku, item.at)
        if len(published_at) == len(COLD):
            break
        due = throttle.next_due_at()
        assert due is not None
        next_now = now + 1 if every_tick else max(now + 1, due)
        version = next(versions)
        throttle.offer(HOT, version, version, now + 1)
        if next_now > now + 1:
            version = next(versions)
            throttle.offer(HOT, version, version, next_now)
        now = next_now
    assert hot_items >= 1, "the hot SKU gets its turns too"
    assert throttle.coalesced > 0
    return max(published_at.values())


@pytest.mark.parametrize(
    ("max_per_second", "min_interval_ms", "every_tick"),
    [
        pytest.param(100.0, 0, True, id="100/s-every-tick"),
        pytest.param(50.0, 20, False, id="50/s-20ms"),
        pytest.param(10.0, 0, False, id="10/s"),
        pytest.param(3.0, 1000, False, id="3/s-1s"),
        pytest.param(1.0, 250, False, id="1/s"),
        pytest.param(0.5, 0, False, id="0.5/s"),
    ],
)
def test_a_hot_sku_does_not_starve_the_cold_ones(
    max_per_second: float, min_interval_ms: int, every_tick: bool
) -> None:
    last = cold_published_at(max_per_second, min_interval_ms, every_tick)

    assert (last - T0) * Fraction(max_per_second) <= (len(COLD) + 1) * SECOND


def test_a_fractional_rate_publishes_its_whole_items_per_second() -> None:
    """2.5/s can only mean 2 per second: a third item in one second would break the limit."""
    last = cold_published_at(2.5, 0, every_tick=False)

    assert last - T0 <= (len(COLD) + 1) // 2 * SECOND


# --- examples ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offers", "published", "coalesced", "stale", "unchanged", "backlog"),
    [
        pytest.param([("A", 1, 1)], 0, 0, 0, 0, 1, id="one-waits"),
        pytest.param([("A", 1, 1), ("A", 2, 2), ("A", 3, 3)], 0, 2, 0, 0, 1, id="newer-replace"),
        pytest.param([("A", 1, 2), ("A", 5, 1), ("A", 5, 2)], 0, 0, 2, 0, 1, id="older-ignored"),
        pytest.param([("A", 1, 1), ("B", 1, 1), ("A", 2, 2)], 0, 1, 0, 0, 2, id="per-sku"),
    ],
)
def test_coalescing_while_waiting(
    offers: list[tuple[str, int, int]],
    published: int,
    coalesced: int,
    stale: int,
    unchanged: int,
    backlog: int,
) -> None:
    throttle = ChannelThrottle(1.0, 0)
    throttle.take_due(T0)  # nothing waits: nothing published, and the budget is untouched
    for sku, sellable, version in offers:
        throttle.offer(sku, sellable, version, T0)

    counts = (throttle.published, throttle.coalesced, throttle.stale, throttle.unchanged)
    assert counts == (published, coalesced, stale, unchanged)
    assert throttle.backlog == backlog


def test_the_waiting_value_is_the_newest_and_remembers_when_it_was_offered() -> None:
    throttle = ChannelThrottle(1.0, 0)
    throttle.offer("A", 10, 1, T0)
    throttle.take_due(T0)
    throttle.offer("A", 9, 2, T0 + 1)
    throttle.offer("A", 8, 4, T0 + 2)
    throttle.offer("A", 7, 3, T0 + 3)  # older than the waiting version: ignored

    assert throttle.take_due(T0 + SECOND - 1) == []
    assert throttle.take_due(T0 + SECOND) == [ThrottledItem("A", 8, 4, T0 + SECOND, T0 + 2)]
    assert (throttle.coalesced, throttle.stale) == (1, 1)


@pytest.mark.parametrize(
    ("later_offers", "expected"),
    [
        pytest.param([("A", 5, 2)], [], id="same-value-dropped"),
        pytest.param([("A", 5, 1)], [], id="same-version-replayed"),
        # A snapshot may have shown 6 meanwhile: only this item corrects it.
        pytest.param(
            [("A", 6, 2), ("A", 5, 3)], [("A", 5, 3)], id="changed-back-before-its-turn-is-sent"
        ),
        pytest.param([("A", 5, 2), ("A", 6, 3)], [("A", 6, 3)], id="then-a-change"),
        pytest.param([("A", 5, 3), ("A", 6, 2)], [], id="late-older-change-ignored"),
    ],
)
def test_a_value_the_channel_already_has_is_not_published_again_unless_it_was_pending(
    later_offers: list[tuple[str, int, int]], expected: list[tuple[str, int, int]]
) -> None:
    throttle = ChannelThrottle(10.0, 0)
    throttle.offer("A", 5, 1, T0)
    assert [(i.sku, i.sellable, i.version) for i in throttle.take_due(T0)] == [("A", 5, 1)]
    for sku, sellable, version in later_offers:
        throttle.offer(sku, sellable, version, T0 + 1)

    items = drain(throttle, T0 + 1)

    assert [(i.sku, i.sellable, i.version) for i in items] == expected


@pytest.mark.parametrize(
    ("max_per_second", "burst", "window"),
    [
        pytest.param(50.0, 50, SECOND, id="50/s"),
        pytest.param(2.5, 2, SECOND, id="2.5/s"),
        pytest.param(1.0, 1, SECOND, id="1/s"),
        pytest.param(0.5, 1, 2 * SECOND, id="0.5/s"),
        pytest.param(0.3, 1, 3_333_334, id="0.3/s-rounds-up"),
        pytest.param(0.1, 1, 10 * SECOND, id="0.1/s"),
    ],
)
def test_rate_budget(max_per_second: float, burst: int, window: int) -> None:
    assert rate_budget(max_per_second) == (burst, window)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("inf"), float("nan")])
def test_a_rate_must_be_positive_and_finite(bad: float) -> None:
    with pytest.raises(ValueError, match="max_per_second"):
        ChannelThrottle(bad, 0)


def test_a_min_interval_cannot_be_negative() -> None:
    with pytest.raises(ValueError, match="min_interval_ms"):
        ChannelThrottle(1.0, -1)


def fill(throttle: ChannelThrottle, skus: int, now: int) -> None:
    for n in range(skus):
        throttle.offer(f"S{n}", 1, 1, now)


@pytest.mark.parametrize(
    ("max_per_second", "takes", "due"),
    [
        pytest.param(2.0, [(T0, None)], T0 + SECOND, id="budget-spent-until-its-window-ends"),
        pytest.param(2.0, [(T0, 1)], T0, id="budget-left-due-now"),
        pytest.param(2.0, [(T0, 1), (T0 + 400 * MS, 1)], T0 + SECOND, id="window-slides"),
        pytest.param(2.0, [(T0, 2), (T0 + SECOND, 2)], T0 + 2 * SECOND, id="rolls-on"),
        pytest.param(0.5, [(T0, None), (T0 + 5, None)], T0 + 2 * SECOND, id="below-1/s"),
    ],
)
def test_next_due_at_follows_the_rate(
    max_per_second: float, takes: list[tuple[int, int | None]], due: int
) -> None:
    throttle = ChannelThrottle(max_per_second, 0)
    assert throttle.next_due_at() is None
    fill(throttle, 5, T0)
    for now, limit in takes:
        throttle.take_due(now, limit)

    assert throttle.next_due_at() == due
    if due > takes[-1][0]:
        assert throttle.take_due(due - 1) == []
    assert throttle.take_due(due) != []


def test_next_due_at_follows_the_min_interval() -> None:
    throttle = ChannelThrottle(100.0, 1000)
    throttle.offer("A", 1, 1, T0)
    throttle.take_due(T0)
    assert throttle.next_due_at() is None
    throttle.offer("A", 2, 2, T0 + 10)

    assert throttle.next_due_at() == T0 + SECOND
    assert throttle.take_due(T0 + SECOND - 1) == []
    assert [i.sellable for i in throttle.take_due(T0 + SECOND)] == [2]
    assert throttle.next_due_at() is None


def test_a_sku_waits_out_its_min_interval_to_the_microsecond() -> None:
    throttle = ChannelThrottle(100.0, 250)
    throttle.offer("A", 1, 1, T0)
    throttle.take_due(T0)
    throttle.offer("A", 2, 2, T0 + 250 * MS - 1)

    assert throttle.take_due(T0 + 250 * MS - 1) == []
    assert [i.sellable for i in throttle.take_due(T0 + 250 * MS)] == [2]


def test_a_batch_at_one_instant_stops_at_the_burst_and_the_limit() -> None:
    throttle = ChannelThrottle(3.0, 0)
    fill(throttle, 5, T0)

    assert [i.sku for i in throttle.take_due(T0, limit=1)] == ["S0"]
    assert [i.sku for i in throttle.take_due(T0 + 1)] == ["S1", "S2"]
    assert throttle.take_due(T0 + SECOND - 1) == []
    assert [i.sku for i in throttle.take_due(T0 + SECOND)] == ["S3"]
    assert [i.sku for i in throttle.take_due(T0 + SECOND + 1)] == ["S4"]


def test_time_never_runs_backwards() -> None:
    throttle = ChannelThrottle(1.0, 0)
    throttle.offer("A", 1, 1, T0 + SECOND)
    throttle.offer("B", 1, 1, T0)  # an earlier `now` counts as the latest seen

    assert [(i.sku, i.at) for i in throttle.take_due(T0)] == [("A", T0 + SECOND)]
    assert throttle.take_due(T0 + 2 * SECOND - 1) == []
    assert [(i.sku, i.changed_at) for i in throttle.take_due(T0 + 2 * SECOND)] == [
        ("B", T0 + SECOND)
    ]


@pytest.mark.parametrize(
    ("new_rate", "new_interval_ms", "expected"),
    [
        pytest.param(3.0, 0, [(T0 + SECOND, ["S0", "S1", "S2"])], id="same-limits"),
        pytest.param(1.0, 0, [(T0 + SECOND, ["S0"]), (T0 + 2 * SECOND, ["S1"])], id="slower"),
        pytest.param(
            0.25, 0, [(T0 + 4 * SECOND, ["S0"]), (T0 + 8 * SECOND, ["S1"])], id="below-1/s"
        ),
        pytest.param(
            5.0,
            0,
            [
                (T0 + 1, ["S0", "S1"]),
                (T0 + SECOND, ["S2", "S3", "S4"]),  # the two at T0 + 1 are still in the window
                (T0 + SECOND + 1, ["A", "B"]),
            ],
            id="faster-counts-what-was-published",
        ),
        pytest.param(
            5.0,
            3000,
            [
                (T0 + 1, ["S0", "S1"]),
                (T0 + SECOND, ["S2", "S3", "S4"]),
                (T0 + 3 * SECOND, ["A", "B", "C"]),
            ],
            id="longer-interval-holds-back",
        ),
    ],
)
def test_reconfigure_keeps_what_waits(
    new_rate: float, new_interval_ms: int, expected: list[tuple[int, list[str]]]
) -> None:
    throttle = ChannelThrottle(3.0, 0)
    for sku in ("A", "B", "C"):
        throttle.offer(sku, 1, 1, T0)
    fill(throttle, 5, T0)
    assert [i.sku for i in throttle.take_due(T0)] == ["A", "B", "C"]
    for sku in ("A", "B", "C"):
        throttle.offer(sku, 2, 2, T0 + 1)  # they rejoin the line at the back

    throttle.reconfigure(new_rate, new_interval_ms)

    assert (throttle.max_per_second, throttle.min_interval_ms) == (new_rate, new_interval_ms)
    assert throttle.backlog == 8
    for at, skus in expected:
        assert throttle.next_due_at() == at
        if at - 1 > T0 + 1:
            assert throttle.take_due(at - 1) == []
        assert [i.sku for i in throttle.take_due(at, limit=len(skus))] == skus


def test_a_shorter_interval_frees_a_sku_sooner() -> None:
    throttle = ChannelThrottle(100.0, 10_000)
    throttle.offer("A", 1, 1, T0)
    throttle.take_due(T0)
    throttle.offer("A", 2, 2, T0 + 1)
    assert throttle.next_due_at() == T0 + 10 * SECOND

    throttle.reconfigure(100.0, 1000)

    assert throttle.next_due_at() == T0 + SECOND
    assert [i.sellable for i in throttle.take_due(T0 + SECOND)] == [2]


def test_a_large_backlog_drains_in_order_at_the_rate() -> None:
    """100,000 waiting SKUs: each take is proportional to what it takes, not to the backlog
    (a full scan per take would make this test run for minutes)."""
    skus = 100_000
    throttle = ChannelThrottle(10_000.0, 1000)
    fill(throttle, skus, T0)
    assert throttle.backlog == skus

    first = throttle.take_due(T0, limit=1)
    rest = drain(throttle, T0)

    assert [i.sku for i in first + rest] == [f"S{n}" for n in range(skus)]
    assert rest[-1].at == T0 + 9 * SECOND
    assert throttle.backlog == 0


def test_remembered_values_are_what_later_offers_compare_with() -> None:
    throttle = ChannelThrottle(max_per_second=10)
    throttle.remember("A", 5, version=7)
    throttle.offer("A", 5, version=8, now=1)  # the feed already says 5
    throttle.offer("A", 4, version=6, now=1)  # older than what the feed carries
    assert throttle.take_due(now=2) == []
    assert (throttle.unchanged, throttle.stale) == (1, 1)
    throttle.offer("A", 6, version=9, now=3)
    assert [(i.sku, i.sellable, i.version) for i in throttle.take_due(now=3)] == [("A", 6, 9)]
    throttle.remember("A", 1, version=20)  # known already: left as it is
    throttle.offer("A", 6, version=21, now=4)
    assert throttle.take_due(now=4) == []
