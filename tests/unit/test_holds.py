"""Checkout holds in the core (SPEC 6): all or nothing, never more than the channel
quantity, located lines count as reserved, unlocated lines come off every pool, expiry by
the time passed in, commit into order documents, and every step idempotent per SKU."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from availability.holds import (
    HoldLineRequest,
    Shortfall,
    commit_hold,
    expire_holds,
    line_quantity,
    next_expiry,
    place_hold,
    release_hold,
)
from availability.processing import apply_event
from availability.rules import CompiledRules
from availability.state import SkuState
from availability.timeutil import MICROS_PER_SECOND
from availability.views import positions

from .factories import (
    DC,
    NOW_US,
    OTHER_SKU,
    SKU,
    STORE,
    STORE_2,
    apply_all,
    compiled,
    pick,
    receipt,
)

RULES = compiled(
    locations={DC: {"type": "dc"}},
    channels={"web": {}, "pickup": {"location_types": ["store"]}, "half": {"share": 0.5}},
)
EXPIRES = NOW_US + 600 * MICROS_PER_SECOND


def stocked(sku: str = SKU, **at: int) -> SkuState:
    state, _ = apply_all([receipt(qty, sku=sku, location=where) for where, qty in at.items()])
    return state


def place(
    states: dict[str, SkuState],
    hold_id: str,
    lines: Sequence[HoldLineRequest],
    channel: str = "web",
    rules: CompiledRules = RULES,
) -> list[Shortfall]:
    return place_hold(
        states.__getitem__, hold_id, rules.channels[channel], rules, lines, EXPIRES, NOW_US
    )


def quantity(state: SkuState, channel: str = "web", location: str | None = None) -> int:
    return line_quantity(state, RULES, RULES.channels[channel], location)


def test_a_located_line_counts_as_reserved_at_its_location() -> None:
    states = {SKU: stocked(**{STORE: 10, DC: 5})}

    assert place(states, "H1", [HoldLineRequest(SKU, 3, STORE)]) == []

    view = {p.location: p for p in positions(states[SKU], RULES).positions}
    assert (view[STORE].reserved, view[STORE].sellable) == (3, 7)
    assert (view[DC].reserved, view[DC].sellable) == (0, 5)
    assert quantity(states[SKU]) == 12
    assert quantity(states[SKU], "pickup", STORE) == 7


def test_a_line_without_a_location_comes_off_every_channels_pool() -> None:
    states = {SKU: stocked(**{STORE: 10, DC: 10})}

    assert place(states, "H1", [HoldLineRequest(SKU, 4)]) == []

    assert quantity(states[SKU]) == 16
    assert quantity(states[SKU], "pickup") == 6  # the store's 10, minus the 4 held
    assert quantity(states[SKU], "half") == 8  # floor((20 - 4) * 0.5)
    assert all(p.reserved == 0 for p in positions(states[SKU], RULES).positions)


def test_a_hold_grows_the_version_of_each_of_its_skus_once() -> None:
    states = {SKU: stocked(**{STORE: 10}), OTHER_SKU: stocked(OTHER_SKU, **{STORE: 10})}
    before = {sku: state.version for sku, state in states.items()}

    place(states, "H1", [HoldLineRequest(SKU, 1), HoldLineRequest(SKU, 1, STORE)])

    assert states[SKU].version == before[SKU] + 1
    assert states[OTHER_SKU].version == before[OTHER_SKU]


def test_one_short_line_refuses_the_whole_hold_and_holds_nothing() -> None:
    states = {SKU: stocked(**{STORE: 10}), OTHER_SKU: stocked(OTHER_SKU, **{STORE: 2})}
    versions = {sku: state.version for sku, state in states.items()}

    short = place(states, "H1", [HoldLineRequest(SKU, 5), HoldLineRequest(OTHER_SKU, 3)])

    assert short == [Shortfall(OTHER_SKU, requested=3, sellable=2)]
    assert quantity(states[SKU]) == 10
    assert quantity(states[OTHER_SKU]) == 2
    assert all(not state.holds for state in states.values())
    assert {sku: state.version for sku, state in states.items()} == versions


def test_lines_of_one_sku_are_decided_one_after_the_other() -> None:
    states = {SKU: stocked(**{STORE: 5})}

    short = place(states, "H1", [HoldLineRequest(SKU, 3), HoldLineRequest(SKU, 3, STORE)])

    assert short == [Shortfall(SKU, requested=3, sellable=2)]
    assert quantity(states[SKU]) == 5


def test_a_line_is_granted_up_to_the_channel_quantity_not_the_raw_stock() -> None:
    states = {SKU: stocked(**{STORE: 9})}

    assert place(states, "H1", [HoldLineRequest(SKU, 5)], channel="half") == [
        Shortfall(SKU, requested=5, sellable=4)
    ]
    assert place(states, "H2", [HoldLineRequest(SKU, 4)], channel="half") == []


def test_placing_the_same_hold_again_holds_nothing_more() -> None:
    states = {SKU: stocked(**{STORE: 10})}
    place(states, "H1", [HoldLineRequest(SKU, 4)])
    version = states[SKU].version

    assert place(states, "H1", [HoldLineRequest(SKU, 4)]) == []

    assert quantity(states[SKU]) == 6
    assert states[SKU].version == version


def test_release_gives_the_units_back_once() -> None:
    states = {SKU: stocked(**{STORE: 10})}
    place(states, "H1", [HoldLineRequest(SKU, 4), HoldLineRequest(SKU, 2, STORE)])

    assert release_hold(states[SKU], "H1", NOW_US)
    assert not release_hold(states[SKU], "H1", NOW_US)

    assert quantity(states[SKU]) == 10
    assert states[SKU].positions[STORE].held == 0
    assert not states[SKU].holds


def test_holds_expire_at_their_time_as_passed_in_not_before() -> None:
    states = {SKU: stocked(**{STORE: 10})}
    place(states, "H1", [HoldLineRequest(SKU, 4)])
    assert next_expiry(states[SKU]) == EXPIRES

    assert expire_holds(states[SKU], EXPIRES - 1) == []
    assert quantity(states[SKU]) == 6
    assert expire_holds(states[SKU], EXPIRES) == ["H1"]
    assert quantity(states[SKU]) == 10
    assert next_expiry(states[SKU]) is None


def test_commit_turns_a_located_line_into_an_order_that_picks_then_apply_to() -> None:
    state = stocked(**{STORE: 10})
    place({SKU: state}, "H1", [HoldLineRequest(SKU, 3, STORE)])

    committed = commit_hold(state, "H1", "ORD-9", RULES, RULES.channels["web"], NOW_US)

    assert [(c.sku, c.qty, c.location) for c in committed or []] == [(SKU, 3, STORE)]
    assert state.orders[STORE]["ORD-9"].open_qty == 3
    assert (state.positions[STORE].reserved, state.positions[STORE].held) == (3, 0)
    assert quantity(state) == 7  # the same units, now reserved by the order
    apply_event(state, pick(2, order_id="ORD-9", location=STORE, minutes=1), NOW_US)
    assert state.positions[STORE].reserved == 1
    assert commit_hold(state, "H1", "ORD-9", RULES, RULES.channels["web"], NOW_US) is None


@pytest.mark.parametrize(
    ("stock", "expected"),
    [
        pytest.param({STORE: 4, STORE_2: 9, DC: 6}, STORE_2, id="the-most-sellable"),
        pytest.param({STORE: 5, STORE_2: 5, DC: 5}, DC, id="ties-the-smallest-location-id"),
    ],
)
def test_commit_puts_a_line_without_a_location_where_the_channel_sells_most(
    stock: dict[str, int], expected: str
) -> None:
    state = stocked(**stock)
    place({SKU: state}, "H1", [HoldLineRequest(SKU, 2)])

    committed = commit_hold(state, "H1", "H1", RULES, RULES.channels["web"], NOW_US)

    assert [c.location for c in committed or []] == [expected]
    assert state.orders[expected]["H1"].open_qty == 2


def test_racing_holds_never_take_more_than_was_sellable() -> None:
    rnd = random.Random(7)
    for _ in range(50):
        state = stocked(**{STORE: rnd.randint(0, 30), DC: rnd.randint(0, 30)})
        sellable = quantity(state)
        granted = 0
        for n in range(40):
            qty = rnd.randint(1, 4)
            location = rnd.choice([None, STORE, DC])
            if place({SKU: state}, f"H{n}", [HoldLineRequest(SKU, qty, location)]) == []:
                granted += qty
            if rnd.random() < 0.1 and state.holds:
                hold_id = rnd.choice(sorted(state.holds))
                granted -= sum(line.qty for line in state.holds[hold_id].lines)
                release_hold(state, hold_id, NOW_US)
            assert granted <= sellable
            assert quantity(state) == sellable - granted


def test_located_and_unlocated_holds_together_never_promise_a_unit_twice() -> None:
    state = stocked(**{STORE: 5, DC: 10})
    assert place({SKU: state}, "H1", [HoldLineRequest(SKU, 12)]) == []

    assert quantity(state, "web", STORE) == 3  # its 5, but only 3 are not owed to H1
    assert quantity(state, "pickup", STORE) == 0  # the store alone cannot cover H1
    assert place({SKU: state}, "H2", [HoldLineRequest(SKU, 4, STORE)]) == [
        Shortfall(SKU, requested=4, sellable=3)
    ]
    assert place({SKU: state}, "H3", [HoldLineRequest(SKU, 3, STORE)]) == []
    assert quantity(state) == 0
