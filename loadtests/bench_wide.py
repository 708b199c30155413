"""A SKU stocked at a chain's 5,000 stores beside a SKU at 8 locations, in one run (issue 20):
what an event and a read of the wide SKU cost against the narrow one's, and what each
takes in the streaming mode's Redis read model.

Embedded mode, a server for each SKU (both up at once), each measured the same way, the
two in turn in rounds:
- the per-event cost: the server's CPU an event (and events/s) over sales at random
  locations of the SKU, posted back to back on one connection, one sale a POST (a till's
  sale as it happens) and then batches of 100 (each event's apply, the feed's look at the
  SKU, the answers it invalidates, the checkpoints);
- read latency: open-loop GETs of the SKU's channel answer at READ_RATE a second while a
  writer posts a sale to the same SKU every WRITE_INTERVAL_S, so most reads follow a change
  (a hot SKU: its cached answer is computed again after each one);
- the bytes of the default answer and of a full page of its breakdown.

Redis: the SKU's hash as a stream worker writes it (`availability.published.render`, the
worker's own rendering of a SKU's state under the rules), written to the shared Redis under
a namespace of its own, `MEMORY USAGE`, then deleted; and that rendering's time, in-process.

    python -m loadtests.bench_wide [--stores N] [--events N] [--seconds S]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import json
import random
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import redis
import uvloop

from availability import SkuState, apply_events, decode_event, rules_from_object
from availability.published import render, sku_key
from availability.rules import CompiledRules

from .bench_streaming import percentile
from .paced import Request, fixed_rate
from .stack import HOST, cpu_seconds, embedded_server, free_port
from .workload import LOCATIONS, RULES

Rows = list[tuple[str, str, str]]

WIDE, NARROW = "WIDE-1", "NARROW-1"
STORES = 5_000
STOCK = 1_000_000  # units a location: no sale in the run ever oversells
BATCH_SIZES = (1, 100)  # sales a POST
EVENTS = 3_000  # sales per SKU one a POST, and ten times as many in batches
READ_RATE = 500
WRITE_INTERVAL_S = 0.01
SECONDS = 8
ROUNDS = 3
AT = "2026-01-01T00:00:00Z"
REDIS_URL = "redis://127.0.0.1:6379/0"


def wide_locations(stores: int) -> list[str]:
    return ["DC1", *(f"W{n:04d}" for n in range(stores))]


def receipts(sku: str, locations: Sequence[str]) -> list[dict[str, Any]]:
    return [
        {"event_id": f"stock-{sku}-{place}", "type": "receipt", "sku": sku, "location": place,
         "occurred_at": AT, "qty": STOCK}
        for place in locations
    ]  # fmt: skip


def sales(
    sku: str,
    locations: Sequence[str],
    count: int,
    rnd: random.Random,
    per_batch: int,
) -> list[bytes]:
    """`count` one-unit sales at random locations, as POST bodies of `per_batch`."""
    events = [
        {"event_id": f"sale-{uuid.uuid4().hex}", "type": "sale", "sku": sku,
         "location": rnd.choice(locations), "occurred_at": AT, "qty": 1}
        for _ in range(count)
    ]  # fmt: skip
    return [
        json.dumps(events[start : start + per_batch]).encode()
        for start in range(0, count, per_batch)
    ]


class Client:
    """One keep-alive connection to the server."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection(HOST, port, timeout=120)

    def call(self, method: str, path: str, body: bytes = b"") -> bytes:
        headers = {"content-type": "application/json"} if body else {}
        try:
            self.conn.request(method, path, body or None, headers)
            response = self.conn.getresponse()
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            # The server closes a connection idle past its keep-alive: open another. Sent
            # again, an event is a duplicate by its id at worst.
            self.conn.close()
            self.conn.request(method, path, body or None, headers)
            response = self.conn.getresponse()
        payload = response.read()
        if response.status >= 300:
            raise RuntimeError(f"{method} {path}: {response.status} {payload[:200]!r}")
        return payload

    def close(self) -> None:
        self.conn.close()

    def post_events(self, bodies: Sequence[bytes]) -> float:
        """Seconds to post every body, back to back."""
        started = time.perf_counter()
        for body in bodies:
            self.call("POST", "/v1/events", body)
        return time.perf_counter() - started


def stock(client: Client, sku: str, locations: Sequence[str]) -> None:
    events = receipts(sku, locations)
    for start in range(0, len(events), 1000):
        client.call("POST", "/v1/events", json.dumps(events[start : start + 1000]).encode())


def reads_under_writes(
    port: int, sku: str, locations: Sequence[str], seconds: float
) -> list[float]:
    """Latencies (ms) of paced reads of the SKU's web answer while a writer sells it."""
    stop = threading.Event()
    writes = sales(sku, locations, int(seconds / WRITE_INTERVAL_S) + 1, random.Random(9), 1)

    def writer() -> None:
        with contextlib.closing(Client(port)) as client:
            for body in writes:
                if stop.is_set():
                    return
                client.call("POST", "/v1/events", body)
                time.sleep(WRITE_INTERVAL_S)

    def next_read() -> Request:
        return ("GET", f"/v1/availability/{sku}?channel=web", b"")

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        return uvloop.run(fixed_rate(port, READ_RATE, seconds, next_read, 200))
    finally:
        stop.set()
        thread.join()


def read_model_cost(
    sku: str, locations: Sequence[str], rules: CompiledRules, url: str
) -> tuple[int, float]:
    """`MEMORY USAGE` of the SKU's read-model hash as a worker writes it (the key deleted
    afterwards), and the µs the worker's rendering of that hash takes, which it does for a
    SKU each time it publishes a change of it."""
    state = SkuState(sku=sku)
    events = [decode_event(json.dumps(item).encode()) for item in receipts(sku, locations)]
    apply_events(lambda _: state, events, time.time_ns() // 1000)
    renders = max(3, 20_000 // len(locations))
    started = time.perf_counter()
    for _ in range(renders):
        fields = render(state, rules).fields
    render_us = (time.perf_counter() - started) / renders * 1e6
    key = sku_key(f"benchwide{uuid.uuid4().hex[:6]}", sku)
    client = redis.Redis.from_url(url)
    try:
        client.hset(key, mapping=fields)  # type: ignore[arg-type]
        return int(client.memory_usage(key, samples=0) or 0), render_us
    finally:
        client.delete(key)
        client.close()


def ratio(wide: float, narrow: float) -> str:
    """`wide` against `narrow` as the targets read it; a run too short for the CPU clock's
    ticks (10 ms) has no ratio."""
    return f"{wide / narrow:.2f}x" if wide and narrow else "n/a (too short to measure)"


def bench_wide(
    stores: int = STORES, events: int = EVENTS, seconds: float = SECONDS, redis_url: str = REDIS_URL
) -> Rows:
    shapes = {NARROW: LOCATIONS, WIDE: wide_locations(stores)}
    rules = rules_from_object(RULES)
    rate: dict[tuple[str, int], float] = {}
    cpu: dict[tuple[str, int], float] = {}  # µs of the server's CPU an event
    p50: dict[str, float] = {}
    p99: dict[str, float] = {}
    size: dict[str, tuple[int, int]] = {}
    with tempfile.TemporaryDirectory(prefix="avail-bench-wide-") as tmp, ExitStack() as stack:
        folder = Path(tmp)
        rules_file = folder / "rules.json"
        rules_file.write_text(json.dumps(RULES))
        # A server for each SKU, both up at once: what one does in the background (a
        # checkpoint of the wide SKU's 5,000 positions, a collection) is not in the other's
        # figures, while the machine's own noise, in rounds that take the two in turn, is
        # in both alike.
        servers: dict[str, tuple[int, int, Client]] = {}
        for sku, locations in shapes.items():
            port = free_port()
            data, log = folder / f"data-{sku}", folder / f"server-{sku}.log"
            server = stack.enter_context(embedded_server(port, data, rules_file, log=log))
            client = stack.enter_context(contextlib.closing(Client(port)))
            stock(client, sku, locations)
            servers[sku] = (port, server.pid, client)
        seconds_taken: dict[tuple[str, int], float] = defaultdict(float)
        cpu_taken: dict[tuple[str, int], float] = defaultdict(float)
        counts: dict[tuple[str, int], int] = defaultdict(int)
        lags: dict[str, list[float]] = defaultdict(list)
        for round_ in range(ROUNDS):
            for (sku, locations), size_ in itertools.product(shapes.items(), BATCH_SIZES):
                port, pid, client = servers[sku]
                # Batched events cost far less each: ten times as many keep the CPU clock's
                # 10 ms ticks a small part of the figure.
                count = events * (10 if size_ > 1 else 1) // ROUNDS
                bodies = sales(sku, locations, count, random.Random(round_), size_)
                before = cpu_seconds(pid)
                seconds_taken[sku, size_] += client.post_events(bodies)
                cpu_taken[sku, size_] += cpu_seconds(pid) - before
                counts[sku, size_] += count
            for sku, locations in shapes.items():
                lags[sku] += reads_under_writes(servers[sku][0], sku, locations, seconds / ROUNDS)
        for key, count in counts.items():
            rate[key] = count / seconds_taken[key]
            cpu[key] = cpu_taken[key] / count * 1e6
        for sku, (_, _, client) in servers.items():
            p50[sku], p99[sku] = percentile(lags[sku], 0.5), percentile(lags[sku], 0.99)
            plain = client.call("GET", f"/v1/availability/{sku}?channel=web")
            page = client.call(
                "GET", f"/v1/availability/{sku}?channel=web&include=locations&limit=1000"
            )
            size[sku] = (len(plain), len(page))
    read_model = {sku: read_model_cost(sku, locations, CompiledRules(rules), redis_url)
                  for sku, locations in shapes.items()}  # fmt: skip
    memory = {sku: figures[0] for sku, figures in read_model.items()}
    render_us = {sku: figures[1] for sku, figures in read_model.items()}
    wide, narrow = f"1 SKU at {stores:,} stores", f"1 SKU at {len(LOCATIONS)} locations"
    costs = [
        (
            f"per-event cost, {size_} sale{'s' if size_ > 1 else ''} a POST: {wide} against"
            f" {narrow} (embedded)",
            ratio(cpu[WIDE, size_], cpu[NARROW, size_]),
            f"the server's CPU an event, {cpu[WIDE, size_]:,.0f} µs against"
            f" {cpu[NARROW, size_]:,.0f} µs; {rate[WIDE, size_]:,.0f} events/s against"
            f" {rate[NARROW, size_]:,.0f}; target ≤ 2x",
        )
        for size_ in BATCH_SIZES
    ]
    return [
        *costs,
        (
            f"read p99 under writes: {wide} against {narrow} (embedded, {READ_RATE} reads/s)",
            ratio(p99[WIDE], p99[NARROW]),
            f"p99 {p99[WIDE]:.2f} ms against {p99[NARROW]:.2f} ms; p50 {p50[WIDE]:.2f} ms"
            f" against {p50[NARROW]:.2f} ms ({p50[WIDE] / p50[NARROW]:.2f}x); target ≤ 1.5x",
        ),
        (
            f"answer bytes, {wide} against {narrow}",
            f"{size[WIDE][0]:,} B against {size[NARROW][0]:,} B",
            f"the channel answer; with include=locations (up to 1,000 a page)"
            f" {size[WIDE][1]:,} B against {size[NARROW][1]:,} B",
        ),
        (
            f"Redis memory per SKU, {wide} against {narrow}",
            f"{memory[WIDE]:,} B against {memory[NARROW]:,} B",
            f"{memory[WIDE] / memory[NARROW]:.0f}x: MEMORY USAGE of the SKU's read-model hash"
            " as a worker renders it (every channel's answer and breakdown, and an answer"
            " per eligible location and channel)",
        ),
        (
            f"a worker's rendering of the SKU's hash, {wide} against {narrow} (streaming)",
            f"{render_us[WIDE] / render_us[NARROW]:.0f}x",
            f"{render_us[WIDE]:,.0f} µs against {render_us[NARROW]:,.0f} µs, in-process; a"
            " worker renders a SKU's whole hash each time it publishes a change of it",
        ),
    ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stores", type=int, default=STORES)
    parser.add_argument("--events", type=int, default=EVENTS, help="sales per SKU")
    parser.add_argument("--seconds", type=float, default=SECONDS, help="of paced reads per SKU")
    args = parser.parse_args(argv)
    for row in bench_wide(args.stores, args.events, args.seconds):
        print(" | ".join(row), flush=True)


if __name__ == "__main__":
    main()
