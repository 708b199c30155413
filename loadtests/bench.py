"""The benchmark: prints the service's figures on this machine, each beside a ceiling
measured in the same run. It is a script, not a test: figures vary with the machine.

    python -m loadtests.bench [--skus N] [--batches N] [--seconds S]

Embedded mode figures:
- events/s applied through batched POST /v1/events (1,000 events a batch, 2 connections),
  beside the core alone (decode + validate + apply, in-process, no HTTP, no RocksDB);
- single-SKU GET requests/s with p50/p99 (wrk, 1 thread, 32 connections), beside a bare
  uvicorn ASGI endpoint under the same settings;
- single-SKU GET latency at a fixed rate, half the target share of the bare endpoint's
  requests/s (an open-loop client, loadtests/paced.py), beside the bare endpoint at the
  same rate;
- 100-SKU batch POST requests/s with p50/p99.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import msgspec
import uvloop

from availability import SkuState, apply_events, decode_batch_items, decode_raw_list

from .bench_streaming import percentile
from .paced import Request, fixed_rate
from .stack import HOST, bare_asgi_server, embedded_server, free_port, run_wrk
from .workload import RULES, EventMix, sku_name

BATCH_SIZE = 1000
CLIENT_CONNECTIONS = 2
# Issue 7: single-SKU reads at 40% or more of the bare endpoint's requests/s, and p99 under
# 5 ms at half that load; 100-SKU batches at 3,000/s or more per API process.
SINGLE_SHARE_OF_BARE = 0.40
PACED_SHARE_OF_BARE = SINGLE_SHARE_OF_BARE / 2


def post_all(port: int, bodies: Sequence[bytes], connections: int = CLIENT_CONNECTIONS) -> float:
    """POST every body over `connections` keep-alive connections; return the seconds taken."""
    lock = threading.Lock()
    queue = list(reversed(bodies))
    failures: list[str] = []

    def worker() -> None:
        conn = http.client.HTTPConnection(HOST, port, timeout=60)
        while True:
            with lock:
                if not queue:
                    return
                body = queue.pop()
            conn.request("POST", "/v1/events", body, {"content-type": "application/json"})
            response = conn.getresponse()
            payload = response.read()
            if response.status != 202:
                failures.append(f"{response.status} {payload[:200]!r}")
                return

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"POST /v1/events failed: {failures[0]}")
    return elapsed


def core_ceiling(bodies: Sequence[bytes]) -> float:
    """Events/s of the core alone on the same batches: decode, validate and apply in memory."""
    states: dict[str, SkuState] = {}

    def load(sku: str) -> SkuState:
        return states.get(sku) or states.setdefault(sku, SkuState(sku=sku))

    started = time.perf_counter()
    events_total = 0
    for body in bodies:
        events, _ = decode_batch_items(decode_raw_list(body), 2**62)
        apply_events(load, events, 0)
        events_total += len(events)
    return events_total / (time.perf_counter() - started)


def paced_reads(port: int, skus: int, rate: int, seconds: int) -> list[float]:
    """Latencies (ms) of single-SKU reads sent at `rate` per second, open loop. The client
    runs on uvloop: its own event loop's cost would otherwise be in what it measures."""
    rnd = random.Random(42)

    def next_read() -> Request:
        return ("GET", f"/v1/availability/{sku_name(rnd.randrange(skus))}?channel=web", b"")

    return uvloop.run(fixed_rate(port, rate, seconds, next_read, 200))


def wrk_scripts(folder: Path, skus: int) -> tuple[Path, Path]:
    single = folder / "single.lua"
    single.write_text(
        f"math.randomseed(42)\n"
        f"request = function()\n"
        f'  return wrk.format("GET", string.format("/v1/availability/SKU-%06d?channel=web",'
        f" math.random(0, {skus - 1})))\n"
        f"end\n"
    )
    bodies = []
    mix = EventMix(skus, seed=3)
    for _ in range(50):
        names = [sku_name(mix.random.randrange(skus)) for _ in range(100)]
        bodies.append(json.dumps({"channel": "web", "skus": names}))
    batch = folder / "batch.lua"
    lua_bodies = ",\n".join(f"  [[{body}]]" for body in bodies)
    batch.write_text(
        "math.randomseed(42)\n"
        f"local bodies = {{\n{lua_bodies}\n}}\n"
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        "request = function()\n"
        '  return wrk.format("POST", "/v1/availability/batch", nil,'
        " bodies[math.random(1, #bodies)])\n"
        "end\n"
    )
    return single, batch


def bench_embedded(skus: int, batches: int, seconds: int) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    mix = EventMix(skus)
    stock_events = [event for index in range(skus) for event in mix.stock(index)]
    stock = [
        msgspec.json.encode(stock_events[i : i + BATCH_SIZE])
        for i in range(0, len(stock_events), BATCH_SIZE)
    ]
    mixed = [msgspec.json.encode(batch) for batch in mix.batches(batches, BATCH_SIZE)]
    ceiling = core_ceiling(stock + mixed)

    # The bare endpoint first: the paced reads' rate is a share of its requests/s.
    bare_port = free_port()
    with bare_asgi_server(bare_port):
        bare = run_wrk(f"http://{HOST}:{bare_port}/", seconds, 32)
        rate = int(bare.requests_per_second * PACED_SHARE_OF_BARE)
        bare_paced = paced_reads(bare_port, skus, rate, seconds)
    with tempfile.TemporaryDirectory(prefix="avail-bench-") as tmp:
        folder = Path(tmp)
        rules = folder / "rules.json"
        rules.write_text(json.dumps(RULES))
        port = free_port()
        with embedded_server(port, folder / "data", rules, log=folder / "server.log"):
            post_all(port, stock)
            elapsed = post_all(port, mixed)
            events_rate = batches * BATCH_SIZE / elapsed
            rows.append(
                (
                    "events/s via POST /v1/events (embedded)",
                    f"{events_rate:,.0f}",
                    f"{events_rate / ceiling:.0%} of the core alone ({ceiling:,.0f}/s);"
                    " target ≥ 50,000",
                )
            )
            single, batch = wrk_scripts(folder, skus)
            url = f"http://{HOST}:{port}"
            one = run_wrk(url, seconds, 32, single)
            paced = paced_reads(port, skus, rate, seconds)
            many = run_wrk(url, seconds, 16, batch)
    rows.append(
        (
            "single-SKU GET req/s (embedded)",
            f"{one.requests_per_second:,.0f}",
            f"p50 {one.p50_ms:.2f} ms, p99 {one.p99_ms:.2f} ms; "
            f"{one.requests_per_second / bare.requests_per_second:.0%} of bare ASGI;"
            f" target ≥ {SINGLE_SHARE_OF_BARE:.0%}",
        )
    )
    rows.append(
        (
            f"single-SKU GET latency at {rate:,}/s ({PACED_SHARE_OF_BARE:.0%} of bare ASGI)",
            f"p99 {percentile(paced, 0.99):.2f} ms",
            f"p50 {percentile(paced, 0.5):.2f} ms over {len(paced):,} reads, open loop; the"
            f" bare endpoint at the same rate p99 {percentile(bare_paced, 0.99):.2f} ms;"
            " target p99 < 5 ms",
        )
    )
    rows.append(
        (
            "100-SKU batch req/s (embedded)",
            f"{many.requests_per_second:,.0f}",
            f"p50 {many.p50_ms:.2f} ms, p99 {many.p99_ms:.2f} ms; target ≥ 3,000",
        )
    )
    rows.append(
        (
            "bare uvicorn ASGI req/s (ceiling)",
            f"{bare.requests_per_second:,.0f}",
            f"p50 {bare.p50_ms:.2f} ms, p99 {bare.p99_ms:.2f} ms",
        )
    )
    for name, result in (("single", one), ("batch", many), ("bare", bare)):
        if result.errors:
            rows.append((f"errors in the {name} run", str(result.errors), "should be 0"))
    return rows


def print_table(rows: Sequence[tuple[str, str, str]]) -> None:
    width = max(len(name) for name, _, _ in rows)
    value_width = max(len(value) for _, value, _ in rows)
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>{value_width}}  {note}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--skus", type=int, default=20_000, help="catalogue size")
    parser.add_argument("--batches", type=int, default=200, help="batches of 1,000 mixed events")
    parser.add_argument("--seconds", type=int, default=10, help="duration of each wrk run")
    parser.add_argument(
        "--only",
        choices=["embedded", "streaming", "fanout", "holds"],
        help="one part's figures (default: all)",
    )
    parser.add_argument(
        "--stream-events",
        type=int,
        default=200_000,
        help="events for the stream run, and as many for the bestseller stream after it",
    )
    parser.add_argument(
        "--hot-share",
        type=float,
        default=0.0,
        help="share of the first stream's events on the hottest 1%% of SKUs (a peak sale's "
        "skew); the bestseller stream is compared with that stream",
    )
    args = parser.parse_args(argv)
    if args.only in (None, "streaming"):
        from .bench_streaming import bench_streaming

        print("# streaming mode: 1 worker, 8 partitions, Kafka and Redis on 127.0.0.1")
        print_table(bench_streaming(args.stream_events, hot_share=args.hot_share))
    if args.only in (None, "fanout"):
        from .bench_fanout import bench_fanout

        print("# fan-out (embedded mode): a burst into a channel feed at 500 items/s")
        print_table(bench_fanout(skus=5_000, changes=100_000, rate=500))
    if args.only in (None, "holds"):
        from .bench_holds import bench_holds

        print("# checkout holds (streaming mode): 1 worker, 8 partitions, the API")
        print_table(bench_holds())
    if args.only in ("streaming", "fanout", "holds"):
        return
    print(
        f"# embedded mode: {args.skus:,} SKUs x 8 locations,"
        f" {args.batches:,} batches of {BATCH_SIZE:,}"
    )
    print_table(bench_embedded(args.skus, args.batches, args.seconds))


if __name__ == "__main__":
    main()
