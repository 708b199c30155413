"""A bestseller never breaks the store: a SKU with tens of thousands of events inside the
dedup window is checkpointed as a head and bounded chunks (availability/layout.py), and a
restart reads it back whole, positions and dedup memory alike."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
from rocksdict import AccessType, Options, Rdict

from embedded.store import SKU_RECORDS
from tests.support.events import event, unique_sku
from tests.support.server import Server

from .test_durability import PAST_A_CHECKPOINT_S, event_outcomes, post

pytestmark = pytest.mark.e2e

SALES: Final = 20_000
BATCH: Final = 1000  # the most POST /v1/events takes
STORES: Final = ("S001", "S002", "S003")
RECORD_LIMIT: Final = 64 * 1024
# Minutes of event time the sales are spread over: far inside the dedup window.
SPREAD_MINUTES: Final = 50


def sales(sku: str) -> list[list[dict[str, Any]]]:
    events = [
        event("sale", sku, STORES[i % len(STORES)], minute=i * SPREAD_MINUTES / SALES, qty=1)
        for i in range(SALES)
    ]
    return [events[i : i + BATCH] for i in range(0, SALES, BATCH)]


def sku_record_sizes(data_dir: Path) -> dict[bytes, int]:
    """The size of every record under the store's SKU namespace, by key; the server must be
    stopped (RocksDB admits one process)."""
    db = Rdict(str(data_dir), Options(raw_mode=True), access_type=AccessType.read_only())
    try:
        sizes: dict[bytes, int] = {}
        for key, value in db.items(from_key=SKU_RECORDS):
            assert isinstance(key, bytes)
            assert isinstance(value, bytes)
            if not key.startswith(SKU_RECORDS):
                break
            sizes[key] = len(value)
        return sizes
    finally:
        db.close()


def positions(client: httpx.Client, sku: str) -> dict[str, Any]:
    response = client.get(f"/v1/positions/{sku}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_a_bestseller_is_checkpointed_in_bounded_records_and_restarts_whole(
    server: Server,
) -> None:
    sku = unique_sku("BEST")
    batches = sales(sku)
    half = len(batches) // 2
    with server.client() as client:
        for batch in batches[:half]:
            post(client, batch)
        time.sleep(PAST_A_CHECKPOINT_S)  # so the next batch checkpoints the first half
        for batch in batches[half:]:
            post(client, batch)
        before = positions(client, sku)
    assert before["version"] == SALES
    sold = Counter(STORES[i % len(STORES)] for i in range(SALES))
    assert {p["location"]: p["on_hand"] for p in before["positions"]} == {
        store: -units for store, units in sold.items()
    }

    server.stop()  # a clean stop checkpoints the second half

    sizes = sku_record_sizes(server.data_dir)
    ours = {key: size for key, size in sizes.items() if sku.encode() in key}
    largest = max(sizes.values())
    assert largest < RECORD_LIMIT, f"the largest SKU record is {largest} bytes"
    # All of it would not fit in one: the bound comes from the layout, not from a small SKU.
    assert sum(ours.values()) > RECORD_LIMIT, f"{sum(ours.values())} bytes in all"
    assert len(ours) > 1

    server.start()
    with server.client() as client:
        assert positions(client, sku) == before
        for batch in batches:  # a producer sending every sale again
            post(client, batch)
        outcomes = event_outcomes(client)
        assert positions(client, sku) == before
    assert outcomes == {"duplicate": SALES}
