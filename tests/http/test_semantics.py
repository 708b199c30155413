"""The processing rules of SPEC sections 2 to 4, seen through HTTP on the shared server."""

from __future__ import annotations

import httpx
import pytest

from tests.support.events import event, unique_sku

from .helpers import SAFETY_SKU, availability, position, positions, post_events


def test_the_same_event_twice_is_applied_once(client: httpx.Client, sku: str) -> None:
    receipt = event("receipt", sku, "DC1", qty=5)
    post_events(client, [receipt])

    post_events(client, [receipt])
    post_events(client, [receipt, receipt])

    assert position(client, sku, "DC1")["on_hand"] == 5
    assert positions(client, sku)["version"] == 1


def test_the_same_event_id_on_another_sku_is_another_event(client: httpx.Client) -> None:
    first, second = unique_sku(), unique_sku()
    post_events(
        client,
        [
            event("receipt", first, "DC1", qty=5, event_id="shared-id"),
            event("receipt", second, "DC1", qty=7, event_id="shared-id"),
        ],
    )

    assert position(client, first, "DC1")["on_hand"] == 5
    assert position(client, second, "DC1")["on_hand"] == 7


def test_a_count_rebases_on_hand_on_later_effects(client: httpx.Client, sku: str) -> None:
    post_events(
        client,
        [
            event("receipt", sku, "DC1", minute=0, qty=10),
            event("sale", sku, "DC1", minute=30, qty=2),
        ],
    )
    # Counted 5 at minute 15: the sale at 30 comes after it, so on_hand = 5 - 2.
    post_events(client, [event("count", sku, "DC1", minute=15, counted=5)])

    after_count = position(client, sku, "DC1")
    assert after_count["on_hand"] == 3
    assert after_count["last_count_drift"] == 5  # the book said 10 at minute 15

    # A sale at minute 10 is already in the count: on_hand stays. It was missing from the
    # books the count was compared with, though: they said 6, so the drift is 1.
    post_events(client, [event("sale", sku, "DC1", minute=10, qty=4)])
    late_sale = position(client, sku, "DC1")
    assert (late_sale["on_hand"], late_sale["last_count_drift"]) == (3, 1)

    # A count older than the last one is stale.
    post_events(client, [event("count", sku, "DC1", minute=12, counted=100)])
    assert position(client, sku, "DC1")["on_hand"] == 3
    assert position(client, sku, "DC1")["last_count_drift"] == 1


def test_a_count_older_than_the_reconciliation_window_is_not_applied(
    client: httpx.Client, sku: str
) -> None:
    post_events(client, [event("receipt", sku, "DC1", minute=0, qty=10)])

    post_events(client, [event("count", sku, "DC1", minute=-49 * 60, counted=1)])

    assert position(client, sku, "DC1")["on_hand"] == 10
    assert positions(client, sku)["version"] == 1


def test_an_order_reserves_and_its_pick_ships(client: httpx.Client, sku: str) -> None:
    post_events(client, [event("receipt", sku, "DC1", minute=0, qty=10)])

    post_events(client, [event("order", sku, "DC1", minute=1, qty=3, order_id="o-1")])
    ordered = position(client, sku, "DC1")
    assert (ordered["on_hand"], ordered["reserved"], ordered["sellable"]) == (10, 3, 7)
    assert availability(client, sku, "web")["sellable"] == 7

    post_events(client, [event("pick", sku, "DC1", minute=2, qty=3, order_id="o-1")])
    picked = position(client, sku, "DC1")
    assert (picked["on_hand"], picked["reserved"], picked["sellable"]) == (7, 0, 7)


def test_a_cancel_releases_what_an_order_reserved(client: httpx.Client, sku: str) -> None:
    post_events(
        client,
        [
            event("receipt", sku, "DC1", minute=0, qty=10),
            event("order", sku, "DC1", minute=1, qty=4, order_id="o-1"),
            event("cancel", sku, "DC1", minute=2, qty=3, order_id="o-1"),
        ],
    )

    assert position(client, sku, "DC1")["reserved"] == 1
    assert availability(client, sku, "web")["sellable"] == 9


def test_a_pick_before_its_order_ends_in_the_same_state(client: httpx.Client) -> None:
    in_order, reversed_ = unique_sku(), unique_sku()
    for sku in (in_order, reversed_):
        post_events(client, [event("receipt", sku, "DC1", minute=0, qty=10)])
    post_events(client, [event("order", in_order, "DC1", minute=1, qty=3, order_id="o-1")])
    post_events(client, [event("pick", in_order, "DC1", minute=2, qty=3, order_id="o-1")])
    post_events(client, [event("pick", reversed_, "DC1", minute=2, qty=3, order_id="o-1")])
    post_events(client, [event("order", reversed_, "DC1", minute=1, qty=3, order_id="o-1")])

    assert position(client, in_order, "DC1") == position(client, reversed_, "DC1")
    assert position(client, reversed_, "DC1")["reserved"] == 0


def test_a_transfer_moves_stock_through_inbound(client: httpx.Client, sku: str) -> None:
    post_events(client, [event("receipt", sku, "DC1", minute=0, qty=10)])

    post_events(
        client,
        [event("transfer_out", sku, "DC1", minute=1, qty=4, transfer_id="t-1", to_location="S001")],
    )
    assert position(client, sku, "DC1")["on_hand"] == 6
    shipped = position(client, sku, "S001")
    assert (shipped["on_hand"], shipped["inbound"]) == (0, 4)

    post_events(client, [event("transfer_in", sku, "S001", minute=2, qty=4, transfer_id="t-1")])
    received = position(client, sku, "S001")
    assert (received["on_hand"], received["inbound"], received["sellable"]) == (4, 0, 3)
    assert availability(client, sku, "web")["sellable"] == 6 + 3


def test_a_transfer_in_before_its_transfer_out_ends_in_the_same_state(
    client: httpx.Client, sku: str
) -> None:
    post_events(client, [event("transfer_in", sku, "S001", minute=2, qty=4, transfer_id="t-1")])
    post_events(
        client,
        [event("transfer_out", sku, "DC1", minute=1, qty=4, transfer_id="t-1", to_location="S001")],
    )

    store = position(client, sku, "S001")
    assert (store["on_hand"], store["inbound"]) == (4, 0)
    assert position(client, sku, "DC1")["on_hand"] == -4


def test_returns_add_sellable_or_unsellable_stock(client: httpx.Client, sku: str) -> None:
    post_events(
        client,
        [
            event("return", sku, "DC1", qty=2, disposition="sellable"),
            event("return", sku, "DC1", qty=3, disposition="damaged"),
            event("adjust", sku, "DC1", delta=-1, reason="found broken"),
        ],
    )

    dc = position(client, sku, "DC1")
    assert (dc["on_hand"], dc["unsellable"], dc["sellable"]) == (1, 3, 1)


def test_sales_beyond_stock_make_the_position_oversold(client: httpx.Client, sku: str) -> None:
    post_events(
        client,
        [event("receipt", sku, "S001", minute=0, qty=2), event("sale", sku, "S001", qty=3)],
    )

    store = position(client, sku, "S001")
    assert (store["on_hand"], store["sellable"], store["oversold"]) == (-1, 0, True)
    assert availability(client, sku, "web")["sellable"] == 0


@pytest.mark.parametrize(
    ("location", "safety_stock"),
    [("S001", 7), ("S003", 6), ("DC1", 5)],
    ids=["sku+location", "sku+location_type", "sku"],
)
def test_the_most_specific_sku_safety_stock_rule_wins(
    client: httpx.Client, location: str, safety_stock: int
) -> None:
    post_events(client, [event("receipt", SAFETY_SKU, location, qty=20)])

    answer = position(client, SAFETY_SKU, location)
    assert answer["safety_stock"] == safety_stock
    assert answer["sellable"] == answer["on_hand"] - safety_stock


@pytest.mark.parametrize(
    ("location", "safety_stock"),
    [("S002", 3), ("S001", 1), ("UNLISTED-9", 1), ("DC1", 0)],
    ids=["location", "location_type", "default_location_type", "default"],
)
def test_safety_stock_falls_back_by_location_then_type_then_default(
    client: httpx.Client, sku: str, location: str, safety_stock: int
) -> None:
    post_events(client, [event("receipt", sku, location, qty=20)])

    answer = position(client, sku, location)
    assert (answer["safety_stock"], answer["sellable"]) == (safety_stock, 20 - safety_stock)


@pytest.mark.parametrize(
    ("dc1", "dc2", "expected"),
    [
        (60, 40, 55),  # floor(100 * 0.57) = 57 exactly, minus buffer 2
        (200, 100, 98),  # 171 capped at 100, minus buffer 2
        (9, 0, 3),  # floor(5.13) = 5, minus 2 = 3: not below zero_below 3
        (8, 0, 0),  # floor(4.56) = 4, minus 2 = 2: below zero_below 3
        (3, 0, 0),  # floor(1.71) = 1, minus 2 is below 0
    ],
)
def test_channel_share_cap_buffer_and_zero_below(
    client: httpx.Client, sku: str, dc1: int, dc2: int, expected: int
) -> None:
    receipts = [event("receipt", sku, "DC1", qty=dc1), event("receipt", sku, "S001", qty=50)]
    if dc2:
        receipts.append(event("receipt", sku, "DC2", qty=dc2))
    post_events(client, receipts)

    answer = availability(client, sku, "amazon", include="locations")

    assert answer["sellable"] == expected
    # The locations list is before share, cap and buffer, and holds only eligible (dc) ones.
    listed = [{"location": "DC1", "sellable": dc1}]
    if dc2:
        listed.append({"location": "DC2", "sellable": dc2})
    assert answer["locations"] == listed
