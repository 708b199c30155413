"""GET /v1/positions/{sku}: one entry per location, every field of SPEC section 3."""

from __future__ import annotations

import httpx
import pytest

from tests.support.events import event

from .helpers import error_of, position, positions, post_events

POSITION_FIELDS = {
    "location",
    "on_hand",
    "reserved",
    "inbound",
    "unsellable",
    "safety_stock",
    "sellable",
    "oversold",
    "last_count_drift",
}


def test_a_sku_never_seen_has_version_zero_and_no_positions(client: httpx.Client, sku: str) -> None:
    assert positions(client, sku) == {"sku": sku, "version": 0, "positions": []}


def test_positions_answer_every_field_per_location(client: httpx.Client, sku: str) -> None:
    post_events(
        client,
        [
            event("receipt", sku, "S001", minute=0, qty=10),
            event("order", sku, "S001", minute=1, qty=3, order_id="o-1", channel="web"),
            event("pick", sku, "S001", minute=2, qty=1, order_id="o-1"),
            event("return", sku, "S001", minute=3, qty=2, disposition="damaged"),
            event(
                "transfer_out", sku, "S001", minute=4, qty=4, transfer_id="t-1", to_location="S002"
            ),
            event("sale", sku, "DC1", minute=5, qty=5),
        ],
    )

    body = positions(client, sku)

    assert body["sku"] == sku
    assert body["version"] == 6
    assert [p["location"] for p in body["positions"]] == ["DC1", "S001", "S002"]
    assert all(set(p) == POSITION_FIELDS for p in body["positions"])
    dc, store, destination = body["positions"]
    assert dc == {
        "location": "DC1",
        "on_hand": -5,
        "reserved": 0,
        "inbound": 0,
        "unsellable": 0,
        "safety_stock": 0,
        "sellable": 0,
        "oversold": True,
        "last_count_drift": None,
    }
    assert store == {
        "location": "S001",
        "on_hand": 5,  # 10 - 1 picked - 4 shipped out
        "reserved": 2,  # ordered 3, picked 1
        "inbound": 0,
        "unsellable": 2,
        "safety_stock": 1,
        "sellable": 2,  # 5 - 2 - 1
        "oversold": False,
        "last_count_drift": None,
    }
    assert destination == {
        "location": "S002",
        "on_hand": 0,
        "reserved": 0,
        "inbound": 4,
        "unsellable": 0,
        "safety_stock": 3,
        "sellable": 0,
        "oversold": False,
        "last_count_drift": None,
    }


def test_a_count_records_its_drift_on_the_position(client: httpx.Client, sku: str) -> None:
    post_events(
        client,
        [
            event("receipt", sku, "DC1", minute=0, qty=10),
            event("count", sku, "DC1", minute=5, counted=7),
        ],
    )

    assert position(client, sku, "DC1")["last_count_drift"] == 3
    assert position(client, sku, "DC1")["on_hand"] == 7


@pytest.mark.parametrize("path", ["/v1/positions/A%20B", f"/v1/positions/{'A' * 65}"])
def test_a_bad_sku_is_422_invalid_request(client: httpx.Client, path: str) -> None:
    error = error_of(client.get(path), 422, "invalid_request")

    assert error["details"] == [{"field": "sku", "message": error["details"][0]["message"]}]
