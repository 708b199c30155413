"""What readers see (SPEC section 3): sellable per position and the channel quantity."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from availability.rules import CompiledRules
from availability.state import Position, SkuState
from availability.timeutil import format_micros
from availability.views import (
    LocationsAsk,
    LocationSellable,
    availability,
    channel_quantities,
    channel_quantity,
    positions,
    sellable,
)

from .factories import (
    DC,
    DROPSHIP,
    NOW_US,
    SKU,
    STORE,
    STORE_2,
    apply_all,
    compiled,
    count,
    order,
    receipt,
    return_,
    sale,
    transfer_out,
)


@pytest.mark.parametrize(
    ("on_hand", "reserved", "safety_stock", "expected"),
    [
        pytest.param(10, 0, 0, 10, id="all-on-hand"),
        pytest.param(10, 3, 0, 7, id="minus-reserved"),
        pytest.param(10, 3, 2, 5, id="minus-safety-stock"),
        pytest.param(5, 3, 2, 0, id="exactly-used-up"),
        pytest.param(5, 3, 4, 0, id="safety-stock-beyond-stock-is-zero-not-negative"),
        pytest.param(-4, 0, 0, 0, id="negative-on_hand-is-zero"),
        pytest.param(2, 6, 0, 0, id="oversold-is-zero"),
    ],
)
def test_sellable_is_on_hand_minus_reserved_minus_safety_stock_never_negative(
    on_hand: int, reserved: int, safety_stock: int, expected: int
) -> None:
    assert sellable(Position(on_hand=on_hand, reserved=reserved), safety_stock) == expected


def _quantity(pool: int, **rule: Any) -> int:
    return channel_quantity(compiled(channels={"c": rule}).channels["c"], pool)


AMAZON = {"share": 0.5, "cap": 100, "buffer": 2, "zero_below": 3}


@pytest.mark.parametrize(
    ("rule", "pool", "expected"),
    [
        pytest.param({}, 10, 10, id="defaults-give-the-pool"),
        pytest.param({}, 0, 0, id="empty-pool"),
        pytest.param({"share": 0.57}, 100, 57, id="share-0.57-of-100-is-57"),
        pytest.param({"share": 0.29}, 100, 29, id="share-0.29-of-100-is-29-not-28"),
        pytest.param({"share": 0.1}, 30, 3, id="share-0.1-of-30-is-3-not-2"),
        pytest.param({"share": 0.5}, 7, 3, id="share-floors"),
        pytest.param({"share": 0.999}, 1, 0, id="share-of-one-unit-floors-to-zero"),
        pytest.param({"share": 0}, 1000, 0, id="share-0"),
        pytest.param({"share": 0.57}, 10**12 + 1, 570_000_000_000, id="share-exact-on-large-pools"),
        pytest.param({"cap": 100}, 500, 100, id="cap"),
        pytest.param({"cap": 100}, 40, 40, id="under-cap"),
        pytest.param({"cap": 0}, 40, 0, id="cap-0"),
        pytest.param({"share": 0.5, "cap": 100}, 150, 75, id="cap-after-share"),
        pytest.param({"buffer": 2}, 10, 8, id="buffer"),
        pytest.param({"buffer": 20}, 10, 0, id="buffer-beyond-pool-is-zero-not-negative"),
        pytest.param({"cap": 5, "buffer": 2}, 100, 3, id="buffer-after-cap"),
        pytest.param({"zero_below": 3}, 2, 0, id="zero_below-hides-a-small-quantity"),
        pytest.param({"zero_below": 3}, 3, 3, id="zero_below-keeps-its-own-figure"),
        pytest.param({"buffer": 2, "zero_below": 4}, 5, 0, id="zero_below-after-buffer"),
        pytest.param(AMAZON, 1000, 98, id="spec-amazon-capped"),
        pytest.param(AMAZON, 10, 3, id="spec-amazon-at-zero_below"),
        pytest.param(AMAZON, 9, 0, id="spec-amazon-below-zero_below"),
        pytest.param(AMAZON, 0, 0, id="spec-amazon-empty"),
    ],
)
def test_channel_quantity_applies_share_cap_buffer_and_zero_below_in_order(
    rule: dict[str, Any], pool: int, expected: int
) -> None:
    assert _quantity(pool, **rule) == expected


# A SKU with sellable stock everywhere: DC1 10, S001 6, S002 4, D001 3, UNLISTED 2.
RULES_DOC: dict[str, Any] = {
    "locations": {
        DC: {"type": "dc"},
        STORE: {"type": "store"},
        STORE_2: {"type": "store"},
        DROPSHIP: {"type": "dropship"},
    },
    "safety_stock": [{"location": STORE, "units": 1}],
}


def _stocked() -> SkuState:
    state, _ = apply_all(
        [
            receipt(10, location=DC),
            receipt(9, location=STORE),
            order(2, location=STORE),  # S001: 9 - 2 reserved - 1 safety = 6
            receipt(4, location=STORE_2),
            receipt(3, location=DROPSHIP),
            receipt(2, location="UNLISTED"),  # takes the default type, store
        ]
    )
    return state


def _rules(**channels: dict[str, Any]) -> CompiledRules:
    return compiled(**RULES_DOC, channels=channels)


@pytest.mark.parametrize(
    ("channel", "eligible"),
    [
        pytest.param({"location_types": ["store"]}, {STORE, STORE_2, "UNLISTED"}, id="by-type"),
        pytest.param({"location_types": ["dc", "dropship"]}, {DC, DROPSHIP}, id="by-types"),
        pytest.param({"locations": [DC, STORE_2]}, {DC, STORE_2}, id="by-list"),
        pytest.param(
            {"location_types": ["dc"], "locations": [STORE_2]},
            {DC, STORE_2},
            id="types-and-list-are-a-union",
        ),
        pytest.param(
            {"location_types": ["store"], "locations": [STORE]},
            {STORE, STORE_2, "UNLISTED"},
            id="union-counts-a-location-once",
        ),
        pytest.param({}, {DC, STORE, STORE_2, DROPSHIP, "UNLISTED"}, id="neither-means-everywhere"),
        pytest.param({"locations": ["ELSEWHERE"]}, set(), id="no-position-at-the-listed-location"),
    ],
)
def test_the_pool_is_the_sellable_of_the_eligible_locations(
    channel: dict[str, Any], eligible: set[str]
) -> None:
    state = _stocked()
    rules = _rules(c=channel)
    own = {DC: 10, STORE: 6, STORE_2: 4, DROPSHIP: 3, "UNLISTED": 2}

    answer = availability(state, rules, rules.channels["c"], ask=LocationsAsk())

    assert answer.locations == [LocationSellable(loc, own[loc]) for loc in sorted(eligible)]
    assert answer.sellable == sum(own[loc] for loc in eligible)
    assert channel_quantities(state, rules)["c"] == answer.sellable


def test_the_locations_list_holds_each_position_own_sellable_before_share_cap_and_buffer() -> None:
    rules = _rules(amazon={"location_types": ["dc", "store"], "share": 0.5, "cap": 5, "buffer": 1})

    answer = availability(_stocked(), rules, rules.channels["amazon"], ask=LocationsAsk())

    assert answer.sellable == 4  # pool 22, half is 11, capped at 5, minus 1
    assert answer.locations == [
        LocationSellable(DC, 10),
        LocationSellable(STORE, 6),
        LocationSellable(STORE_2, 4),
        LocationSellable("UNLISTED", 2),
    ]


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        pytest.param(STORE, 6, id="eligible-location-gives-its-own-sellable"),
        pytest.param(STORE_2, 4, id="another-eligible-location"),
        pytest.param(DC, 0, id="ineligible-location-gives-zero"),
        pytest.param("S999", 0, id="eligible-type-without-a-position-gives-zero"),
    ],
)
def test_asked_with_a_location_the_pool_is_that_location_alone(
    location: str, expected: int
) -> None:
    rules = _rules(pickup={"location_types": ["store"]})

    answer = availability(_stocked(), rules, rules.channels["pickup"], location=location)

    assert answer.sellable == expected
    assert answer.location == location
    assert [entry.location for entry in answer.locations] == ([location] if expected else [])


def test_a_channel_answer_has_no_breakdown_unless_asked() -> None:
    rules = _rules(web={})

    answer = availability(_stocked(), rules, rules.channels["web"])

    assert (answer.locations, answer.next_after) == (None, None)
    assert b"locations" not in msgspec.json.encode(answer)


@pytest.mark.parametrize(
    ("ask", "listed", "next_after"),
    [
        pytest.param(LocationsAsk(limit=2), [DROPSHIP, DC], DC, id="first-page"),
        pytest.param(LocationsAsk(DC, 2), [STORE, STORE_2], STORE_2, id="next-page"),
        pytest.param(LocationsAsk(STORE_2, 2), ["UNLISTED"], None, id="last-page"),
        pytest.param(LocationsAsk("S001-A", 1), [STORE_2], STORE_2, id="after-an-unlisted-id"),
        pytest.param(LocationsAsk("ZZZ", 5), [], None, id="after-the-last"),
        pytest.param(LocationsAsk(limit=5), [DROPSHIP, DC, STORE, STORE_2, "UNLISTED"], None,
                     id="exactly-all"),
    ],
)  # fmt: skip
def test_the_breakdown_pages_by_location_id(
    ask: LocationsAsk, listed: list[str], next_after: str | None
) -> None:
    rules = _rules(web={})
    state = _stocked()
    whole = availability(state, rules, rules.channels["web"])

    answer = availability(state, rules, rules.channels["web"], ask=ask)

    assert [entry.location for entry in answer.locations or []] == listed
    assert answer.next_after == next_after
    assert (answer.sellable, answer.version) == (whole.sellable, whole.version)


def test_asked_with_a_location_a_breakdown_ask_changes_nothing() -> None:
    rules = _rules(pickup={"location_types": ["store"]})

    asked = availability(_stocked(), rules, rules.channels["pickup"], STORE, LocationsAsk())

    assert asked == availability(_stocked(), rules, rules.channels["pickup"], STORE)


def test_asked_with_a_location_share_and_buffer_still_apply() -> None:
    rules = _rules(pickup={"location_types": ["dc"], "share": 0.5, "buffer": 1})

    answer = availability(_stocked(), rules, rules.channels["pickup"], location=DC)

    assert answer.sellable == 4  # DC1 alone: 10, half is 5, minus 1


@pytest.mark.parametrize(
    ("held", "expected"),
    [
        pytest.param(0, 25, id="nothing-held"),
        pytest.param(5, 20, id="held-units-leave-the-pool"),
        pytest.param(25, 0, id="all-held"),
        pytest.param(40, 0, id="more-held-than-sellable-is-zero-not-negative"),
    ],
)
def test_units_held_without_a_location_come_off_the_pool(held: int, expected: int) -> None:
    rules = _rules(web={})

    state = _stocked()
    if held:
        state.held_anywhere = held  # units of live holds that name no location

    answer = availability(state, rules, rules.channels["web"])

    assert answer.sellable == expected


def test_a_sku_never_seen_answers_zero_at_version_zero() -> None:
    rules = _rules(web={})
    never_seen = SkuState(sku="NEW-SKU")

    answer = availability(never_seen, rules, rules.channels["web"])

    assert (answer.sellable, answer.version, answer.locations) == (0, 0, None)
    assert answer.updated_at is None
    assert positions(never_seen, rules).positions == []
    assert positions(never_seen, rules).version == 0


def test_an_answer_carries_the_sku_version_and_when_it_changed() -> None:
    state = _stocked()
    rules = _rules(web={})

    answer = availability(state, rules, rules.channels["web"])

    assert answer.version == state.version == 6
    assert answer.updated_at == format_micros(NOW_US)
    assert answer.updated_at.endswith("Z")
    assert answer.location is None


def test_negative_stock_at_one_location_does_not_eat_another_location_sellable() -> None:
    state, _ = apply_all([receipt(5, location=DC), sale(8, location=STORE)])
    rules = _rules(web={})

    assert availability(state, rules, rules.channels["web"]).sellable == 5


def test_positions_show_every_figure_sorted_by_location() -> None:
    state, _ = apply_all(
        [
            receipt(10, location=STORE),
            order(4, location=STORE),
            return_(2, "damaged", location=STORE),
            count(8, location=STORE, minutes=1),
            transfer_out(3, location=DC, to=STORE),
        ]
    )
    rules = compiled(safety_stock=[{"location": STORE, "units": 1}])

    view = positions(state, rules)

    assert view.sku == SKU
    assert view.version == 5
    assert [
        (p.location, p.on_hand, p.reserved, p.inbound, p.unsellable) for p in view.positions
    ] == [
        (DC, -3, 0, 0, 0),
        (STORE, 8, 4, 3, 2),
    ]
    dc, store = view.positions
    assert (store.safety_stock, store.sellable, store.oversold, store.last_count_drift) == (
        1,
        3,
        False,
        2,
    )
    assert (dc.safety_stock, dc.sellable, dc.oversold, dc.last_count_drift) == (0, 0, True, None)


def test_channel_quantities_answer_every_channel() -> None:
    state = _stocked()
    rules = _rules(
        web={},
        pickup={"location_types": ["store"]},
        amazon={"location_types": ["dc"], **AMAZON},
    )

    assert channel_quantities(state, rules) == {"web": 25, "pickup": 12, "amazon": 3}
