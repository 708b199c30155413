"""ERP snapshot imports in both modes, beside the event ingest rate of the same run.

    python -m loadtests.bench_snapshots [--rows 1000000]

Each mode takes the standard event mix through POST /v1/events first (the baseline), then
a snapshot of `rows` rows (50,000 SKUs at 20 locations for a million) through
`availability import-snapshot`, as an operator runs it: the file checked and hashed, then
sent in parts of 20,000 rows. The import's rate is rows taken a second, from the command's
start to its end; the target is at least the mode's event ingest rate. In the streaming
mode both figures are what the API made durable on Kafka; the workers apply after.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import msgspec

from api.streaming.topics_admin import ensure_topics
from availability.topics import Names

from .bench import BATCH_SIZE, post_all
from .bench_streaming import KAFKA, PARTITIONS, publish_rules, stack_env, start_worker
from .stack import HOST, embedded_server, free_port, process
from .workload import RULES, EventMix

LOCATIONS = 20
EVENT_BATCHES = 100  # 100,000 events of the mix: the baseline

Rows = list[tuple[str, str, str]]


def write_snapshot(path: Path, rows: int) -> None:
    """`rows` rows: every SKU of the catalogue at LOCATIONS stores."""
    with path.open("w") as out:
        out.write("sku,location,counted,counted_at\n")
        for n in range(rows):
            sku, location = divmod(n, LOCATIONS)
            out.write(f"BENCH-SNAP-{sku},S{location:03d},{n % 97},2026-12-01T06:00:00Z\n")


def event_bodies() -> list[bytes]:
    mix = EventMix(skus=20_000, seed=17)
    return [msgspec.json.encode(batch) for batch in mix.batches(EVENT_BATCHES, BATCH_SIZE)]


def import_seconds(port: int, path: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "service.cli", "import-snapshot", str(path)],
        env={"PATH": "/usr/bin:/bin", "AVAIL_PORT": str(port), "AVAIL_LOG_LEVEL": "warning"},
        capture_output=True,
        text=True,
        timeout=1800,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"import-snapshot failed ({done.returncode}): {done.stderr[-2000:]}")
    report = json.loads(done.stdout)
    if report["refused"]:
        raise RuntimeError(f"the benchmark's snapshot had {report['refused']} refused rows")
    return elapsed


def measured(mode: str, port: int, snapshot: Path, rows: int) -> Rows:
    bodies = event_bodies()
    events_rate = len(bodies) * BATCH_SIZE / post_all(port, bodies)
    rows_rate = rows / import_seconds(port, snapshot)
    return [
        (f"events/s via POST /v1/events ({mode})", f"{events_rate:,.0f}", "the baseline"),
        (
            f"snapshot rows/s via import-snapshot ({mode}, {rows:,} rows)",
            f"{rows_rate:,.0f}",
            f"{rows_rate / events_rate:.2f}x the event ingest rate; target ≥ 1x",
        ),
    ]


@contextlib.contextmanager
def streaming_api(folder: Path) -> Iterator[int]:
    tag = f"benchs{uuid.uuid4().hex[:6]}-"
    names = Names(tag)
    asyncio.run(ensure_topics(KAFKA, names, PARTITIONS))
    asyncio.run(publish_rules(names))
    port = free_port()
    worker = start_worker(tag, folder / "data", folder / "worker.log")
    try:
        api = [sys.executable, "-m", "service.cli", "api", "--host", HOST, "--port", str(port)]
        with process(api, port, "/readyz", stack_env(tag), folder / "api.log"):
            yield port
    finally:
        worker.terminate()
        worker.wait(30)


def bench_snapshots(rows: int = 1_000_000) -> Rows:
    found: Rows = []
    with tempfile.TemporaryDirectory(prefix="avail-bench-snapshots-") as tmp:
        folder = Path(tmp)
        snapshot = folder / "snapshot.csv"
        write_snapshot(snapshot, rows)
        rules = folder / "rules.json"
        rules.write_text(json.dumps(RULES))
        port = free_port()
        with embedded_server(port, folder / "embedded", rules, log=folder / "server.log"):
            found += measured("embedded", port, snapshot, rows)
        with streaming_api(folder) as port:
            found += measured("streaming", port, snapshot, rows)
    return found


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    for name, value, note in bench_snapshots(args.rows):
        print(f"{name}: {value}  ({note})")


if __name__ == "__main__":
    main()
