"""Fan-out figures (embedded mode): a burst of changes into a channel whose feed takes
`rate` items/s, followed by a consumer that snapshotted before the burst.

- changes/s absorbed while the feed publishes at its limit, beside the same burst into a
  server whose rules have no feed (the ratio is what the fan-out costs ingest);
- the coalescing ratio: channel quantity changes offered per item published;
- the feed's own rate while it drains, beside its limit;
- time to converge: from the burst's last 202 until the consumer holds every SKU's
  current quantity.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec

from .bench import post_all
from .stack import HOST, embedded_server, free_port
from .workload import RULES, EventMix, sku_name

CHANNEL = "market"


def rules_with_feed(rate: float | None) -> dict[str, Any]:
    channel: dict[str, Any] = {"location_types": ["dc", "store"]}
    if rate is not None:
        channel["feed"] = {"max_per_second": rate, "min_interval_ms": 0}
    return {**RULES, "channels": {**RULES["channels"], CHANNEL: channel}}


def metric(text: str, name: str) -> float:
    found = re.search(rf'^{name}{{channel="{CHANNEL}"}} ([0-9.e+]+)$', text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


class Consumer:
    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        self.values: dict[str, tuple[int, int]] = {}
        self.cursor = ""
        self.items = 0
        self.ats: list[float] = []  # when each item it read entered the feed

    def keep(self, sku: str, version: int, sellable: int) -> None:
        if version > self.values.get(sku, (-1, 0))[0]:
            self.values[sku] = (version, sellable)

    def snapshot(self) -> None:
        token = None
        while True:
            params: dict[str, str | int] = {"limit": 1000}
            if token:
                params["page_token"] = token
            page = self.http.get(f"/v1/feeds/{CHANNEL}/snapshot", params=params).json()
            for item in page["items"]:
                self.keep(item["sku"], item["version"], item["sellable"])
            self.cursor, token = page["cursor"], page["next_page_token"]
            if token is None:
                return

    def poll(self) -> None:
        params: dict[str, str | int] = {"cursor": self.cursor, "limit": 1000, "wait_ms": 200}
        page = self.http.get(f"/v1/feeds/{CHANNEL}", params=params).json()
        for item in page["items"]:
            self.keep(item["sku"], item["version"], item["sellable"])
            self.ats.append(datetime.fromisoformat(item["at"]).timestamp())
        self.items += len(page["items"])
        self.cursor = page["cursor"]


def busiest_second(ats: list[float]) -> int:
    """The most items whose `at` falls in one window [t, t + 1 s)."""
    ordered, most, start = sorted(ats), 0, 0
    for end, at in enumerate(ordered):
        while ordered[start] <= at - 1.0:
            start += 1
        most = max(most, end - start + 1)
    return most


def current(http: httpx.Client, skus: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for start in range(0, len(skus), 500):
        body = {"channel": CHANNEL, "skus": skus[start : start + 500]}
        for item in http.post("/v1/availability/batch", json=body).json()["items"]:
            found[item["sku"]] = item["sellable"]
    return found


def burst_rate(folder: Path, name: str, rate: float | None, bodies: list[bytes]) -> float:
    rules = folder / f"{name}.json"
    rules.write_text(json.dumps(rules_with_feed(rate)))
    port = free_port()
    with embedded_server(port, folder / name, rules, log=folder / f"{name}.log"):
        return len(bodies) * 1000 / post_all(port, bodies)


def bench_fanout(
    skus: int, changes: int, rate: float, convergence: list[tuple[float, int]] | None = None
) -> list[tuple[str, str, str]]:
    """The fan-out figures; `convergence`, when given, receives (seconds after the burst,
    SKUs whose feed value still differs) at each of the consumer's polls."""
    mix = EventMix(skus, seed=5)
    stock = [event for index in range(skus) for event in mix.stock(index)]
    events = stock + [event for batch in mix.batches(changes // 1000, 1000) for event in batch]
    bodies = [msgspec.json.encode(events[i : i + 1000]) for i in range(0, len(events), 1000)]
    names = [sku_name(index) for index in range(skus)]
    with tempfile.TemporaryDirectory(prefix="avail-bench-fanout-") as tmp:
        folder = Path(tmp)
        baseline = burst_rate(folder, "nofeed", None, bodies)
        rules = folder / "feed.json"
        rules.write_text(json.dumps(rules_with_feed(rate)))
        port = free_port()
        with (
            embedded_server(port, folder / "feed", rules, log=folder / "feed.log"),
            httpx.Client(base_url=f"http://{HOST}:{port}", timeout=30) as http,
        ):
            consumer = Consumer(http)
            consumer.snapshot()
            absorbed = len(events) / post_all(port, bodies)
            burst_done = time.perf_counter()
            expected = current(http, names)
            while True:
                wrong = sum(consumer.values.get(s, (0, 0))[1] != q for s, q in expected.items())
                if convergence is not None:
                    convergence.append((time.perf_counter() - burst_done, wrong))
                if not wrong:
                    break
                consumer.poll()
            converged = time.perf_counter()
            text = http.get("/metrics").text
    published = metric(text, "availability_feed_published_total")
    coalesced = metric(text, "availability_feed_coalesced_total")
    busiest = busiest_second(consumer.ats)
    return [
        (
            f"changes/s absorbed, feed at {rate:,.0f} items/s",
            f"{absorbed:,.0f}",
            f"{absorbed / baseline:.0%} of the same burst with no feed ({baseline:,.0f}/s)",
        ),
        (
            "coalescing ratio (changes offered per item published)",
            f"{(published + coalesced) / max(published, 1):.1f}",
            f"{published:,.0f} items for {published + coalesced:,.0f} changes"
            f" of {len(events):,} events over {skus:,} SKUs",
        ),
        (
            "feed items in its busiest second",
            f"{busiest:,}",
            f"the channel's limit is {rate:,.0f} in any second (from the items' own `at`)",
        ),
        (
            "time to converge after the burst",
            f"{converged - burst_done:.1f} s",
            "last 202 -> the consumer holds every SKU's current quantity",
        ),
    ]
