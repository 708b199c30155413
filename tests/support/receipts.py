"""Stock put in through the API before a test reads it back: receipts posted, then a wait
until the answers show them (in the streaming mode a worker applies events after the API
took them, so an answer read at once may not show them yet)."""

from __future__ import annotations

from collections.abc import Sequence

import httpx

from .events import event
from .streaming import wait_until


def receive_and_wait(
    http: httpx.Client, skus: Sequence[str], qty: int, within_s: float = 60.0
) -> bool:
    """POST a receipt of `qty` at DC1 for each of `skus`, then wait until every web answer
    is `qty` sellable; False if they are not within `within_s` (the caller says why, e.g.
    with the worker's log)."""
    posted = http.post("/v1/events", json=[event("receipt", sku, "DC1", qty=qty) for sku in skus])
    assert posted.status_code == 202, posted.text

    def answered() -> bool:
        got = [http.get(f"/v1/availability/{sku}", params={"channel": "web"}) for sku in skus]
        return all(a.status_code == 200 and a.json()["sellable"] == qty for a in got)

    return wait_until(answered, within_s)
