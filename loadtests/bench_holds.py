"""Checkout hold figures in the streaming mode: one worker, the API, Kafka and Redis on
127.0.0.1 (scripts/services.sh). Every hold goes API -> Kafka -> the partition's writer ->
its changelog -> a Redis reply -> the API, as in production.

- holds/s with CONCURRENCY storefronts (wrk connections), each placing one-line holds back
  to back;
- hold latency p50/p99 at a fixed rate well under that, each hold on its own connection
  slot, measured from send to answer;
- in the same run, a cached availability read through the same API and wrk, as the floor a
  hold's HTTP path costs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from api.streaming.topics_admin import ensure_topics
from availability.topics import Names

from .bench_streaming import (
    KAFKA,
    PARTITIONS,
    percentile,
    publish_rules,
    stack_env,
    start_worker,
)
from .paced import Request, fixed_rate
from .stack import HOST, free_port, process, run_wrk

SKUS = 2_000
STOCK = 100_000  # units per SKU: no hold is ever short, so every one is a full decision
CONCURRENCY = 64
SECONDS = 15


async def stock_everything(url: str) -> None:
    at = "2026-01-01T00:00:00Z"
    async with httpx.AsyncClient(base_url=url, timeout=30, trust_env=False) as http:
        for start in range(0, SKUS, 1000):
            batch = [
                {
                    "event_id": f"stock-{n}",
                    "type": "receipt",
                    "sku": f"HOLD-{n:05d}",
                    "location": "DC1",
                    "occurred_at": at,
                    "qty": STOCK,
                }
                for n in range(start, min(SKUS, start + 1000))
            ]
            (await http.post("/v1/events", json=batch)).raise_for_status()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            last = await http.get(
                f"/v1/availability/HOLD-{SKUS - 1:05d}", params={"channel": "web"}
            )
            if last.status_code == 200 and last.json()["sellable"] == STOCK:
                return
            await asyncio.sleep(0.2)
    raise RuntimeError("the stock never became visible")


def hold_body(rnd: random.Random) -> dict[str, Any]:
    sku = f"HOLD-{rnd.randrange(SKUS):05d}"
    return {"channel": "web", "ttl_s": 600, "lines": [{"sku": sku, "qty": 1}]}


def wrk_scripts(folder: Path) -> tuple[Path, Path]:
    sku = f'string.format("HOLD-%05d", math.random(0, {SKUS - 1}))'
    reads = folder / "reads.lua"
    reads.write_text(
        "math.randomseed(3)\n"
        "request = function()\n"
        f'  return wrk.format("GET", "/v1/availability/" .. {sku} .. "?channel=web")\n'
        "end\n"
    )
    holds = folder / "holds.lua"
    holds.write_text(
        "math.randomseed(7)\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        "request = function()\n"
        '  local body = \'{"channel":"web","ttl_s":600,"lines":[{"sku":"\' .. '
        f"{sku}"
        ' .. \'","qty":1}]}\'\n'
        '  return wrk.format("POST", "/v1/holds", nil, body)\n'
        "end\n"
    )
    return reads, holds


async def paced_holds(port: int, rate: int, seconds: float) -> list[float]:
    """Holds sent at `rate` per second whatever the answers do; each placed one's latency
    from its scheduled send to its answer."""
    rnd = random.Random(5)

    def next_hold() -> Request:
        return ("POST", "/v1/holds", json.dumps(hold_body(rnd)).encode())

    return await fixed_rate(port, rate, seconds, next_hold, 201)


@dataclass(frozen=True)
class HoldsStack:
    url: str
    port: int
    folder: Path


@contextlib.contextmanager
def holds_stack() -> Iterator[HoldsStack]:
    """One worker and the API on a deployment of their own, its catalogue stocked."""
    tag = f"benchh{uuid.uuid4().hex[:6]}-"
    names = Names(tag)
    asyncio.run(ensure_topics(KAFKA, names, PARTITIONS))
    asyncio.run(publish_rules(names))
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="avail-bench-holds-") as tmp:
        worker = start_worker(tag, Path(tmp) / "data", Path(tmp) / "worker.log")
        try:
            api = [sys.executable, "-m", "service.cli", "api", "--host", HOST, "--port", str(port)]
            with process(api, port, "/readyz", stack_env(tag), Path(tmp) / "api.log"):
                url = f"http://{HOST}:{port}"
                asyncio.run(stock_everything(url))
                yield HoldsStack(url, port, Path(tmp))
        finally:
            worker.terminate()
            worker.wait(30)


def hold_latency_by_rate(rates: Sequence[int], seconds: int) -> list[tuple[int, float, float]]:
    """(rate, p50 ms, p99 ms) of paced holds at each rate, lowest first, on one stack."""
    found = []
    with holds_stack() as stack:
        for rate in sorted(rates):
            lags = asyncio.run(paced_holds(stack.port, rate, seconds))
            found.append((rate, percentile(lags, 0.5), percentile(lags, 0.99)))
    return found


def bench_holds(seconds: int = SECONDS, rate: int = 200) -> list[tuple[str, str, str]]:
    with holds_stack() as stack:
        read_script, hold_script = wrk_scripts(stack.folder)
        reads = run_wrk(stack.url, seconds, CONCURRENCY, read_script)
        # Paced first: the backlog a saturating run leaves behind (changelog and read model
        # writes) would otherwise be in the paced latencies.
        paced = asyncio.run(paced_holds(stack.port, rate, seconds))
        holds = run_wrk(stack.url, seconds, CONCURRENCY, hold_script)
    return [
        (
            f"holds/s, {CONCURRENCY} storefronts back to back (streaming, 1 worker)",
            f"{holds.requests_per_second:,.0f}",
            f"p50 {holds.p50_ms:.1f} ms, p99 {holds.p99_ms:.1f} ms, {holds.errors} not 201;"
            f" {holds.requests_per_second / reads.requests_per_second:.0%} of a cached read"
            f" through the same API ({reads.requests_per_second:,.0f}/s, p99"
            f" {reads.p99_ms:.1f} ms); target ≥ 1,000/s",
        ),
        (
            f"hold latency at {rate:,} holds/s",
            f"p50 {percentile(paced, 0.5):.1f} ms",
            f"p99 {percentile(paced, 0.99):.1f} ms over {len(paced):,} holds; target p99 ≤ 50 ms",
        ),
    ]


if __name__ == "__main__":
    for row in bench_holds():
        print(json.dumps(row))
