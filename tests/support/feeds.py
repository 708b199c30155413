"""A marketplace publisher as the tests see one: it snapshots a channel's feed, follows its
cursor, and keeps per SKU the value with the highest version; and a burst of changes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.support.events import event


class Follower:
    """A marketplace publisher: snapshot, then follow the cursor, keeping per SKU the value
    with the highest version."""

    def __init__(
        self, http: httpx.Client, channel: str, resnapshot_when_expired: bool = False
    ) -> None:
        self.http, self.channel = http, channel
        self.resnapshot_when_expired = resnapshot_when_expired
        self.resnapshots = 0
        self.values: dict[str, tuple[int, int]] = {}  # sku -> (version, sellable)
        self.cursor: str | None = None

    def keep(self, sku: str, version: int, sellable: int) -> None:
        if version > self.values.get(sku, (-1, 0))[0]:
            self.values[sku] = (version, sellable)

    def snapshot(self) -> None:
        token: str | None = None
        while True:
            params = {"limit": 1000} | ({"page_token": token} if token else {})
            page = self.http.get(f"/v1/feeds/{self.channel}/snapshot", params=params)
            assert page.status_code == 200, page.text
            body = page.json()
            for item in body["items"]:
                self.keep(item["sku"], item["version"], item["sellable"])
            self.cursor = body["cursor"]
            token = body["next_page_token"]
            if token is None:
                return

    def poll(self, wait_ms: int = 0) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": 1000, "wait_ms": wait_ms}
        if self.cursor is not None:
            params["cursor"] = self.cursor
        page = self.http.get(f"/v1/feeds/{self.channel}", params=params)
        if page.status_code == 410 and self.resnapshot_when_expired:
            self.snapshot()  # what a real consumer does when it fell behind the retention
            self.resnapshots += 1
            return []
        assert page.status_code == 200, page.text
        body = page.json()
        for item in body["items"]:
            self.keep(item["sku"], item["version"], item["sellable"])
        self.cursor = body["cursor"]
        items: list[dict[str, Any]] = body["items"]
        return items

    def sellable(self) -> dict[str, int]:
        return {sku: sellable for sku, (_, sellable) in self.values.items()}


def current(http: httpx.Client, channel: str, skus: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for start in range(0, len(skus), 500):
        answer = http.post(
            "/v1/availability/batch", json={"channel": channel, "skus": skus[start : start + 500]}
        )
        assert answer.status_code == 200, answer.text
        found.update({item["sku"]: item["sellable"] for item in answer.json()["items"]})
    return found


def follow_until(
    follower: Follower, read_expected: Callable[[], dict[str, int]], within_s: float = 60.0
) -> dict[str, int]:
    """Follow the feed until the follower holds what the service answers, and the answers
    have stopped moving (in the streaming mode they catch up with the events posted);
    returns those answers."""
    deadline = time.monotonic() + within_s
    expected, steady_since = read_expected(), time.monotonic()
    while time.monotonic() < deadline:
        follower.poll(wait_ms=500)
        now_expected = read_expected()
        if now_expected != expected:
            expected, steady_since = now_expected, time.monotonic()
        held = follower.sellable()
        if time.monotonic() - steady_since >= 2.0 and all(
            held.get(s, 0) == q for s, q in expected.items()
        ):
            return expected
    held = follower.sellable()
    wrong = {s: (held.get(s), q) for s, q in expected.items() if held.get(s, 0) != q}
    pytest.fail(f"{len(wrong)} SKUs differ after {within_s} s, e.g. {list(wrong.items())[:3]}")


def burst(http: httpx.Client, skus: list[str], changes: int, seed: int) -> None:
    """`changes` receipts and sales spread over `skus`, 1,000 a batch."""
    batch: list[dict[str, Any]] = []
    for n in range(changes):
        sku = skus[(n * 7919 + seed) % len(skus)]
        location = ("DC1", "S001", "S002")[n % 3]
        kind = "sale" if n % 5 == 4 else "receipt"
        batch.append(event(kind, sku, location, minute=n / 1000, qty=1 + n % 3))
        if len(batch) == 1000:
            _post(http, batch)
            batch = []
    if batch:
        _post(http, batch)


def _post(http: httpx.Client, batch: list[dict[str, Any]]) -> None:
    answer = http.post("/v1/events", json=batch)
    assert answer.status_code == 202, answer.text
