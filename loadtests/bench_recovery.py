"""Recovery figures (issue 7: a worker with 1,000,000 positions restores from its changelog in
at most 60 s): one worker with an empty data directory, as after a lost disk or on a new pod.

The changelog of the table `sku-state` is filled directly, one record per SKU on the
partition the worker would have written it to, so no event goes through a worker first.
A position is one SKU at one location (SPEC 3): by default 8 locations per SKU, the
catalogue of `loadtests/workload.py`, so 1,000,000 positions are 125,000 SKU records.

    python -m loadtests.bench_recovery [--positions N] [--locations-per-sku L]

Figures: time from the worker's start to faust's "Recovery complete" (and the changelog
read alone, records/s), time until every partition is republished to Redis and marked
ready, the SKUs in Redis and in the restored table; and two ceilings on the same topic: a
bare aiokafka consumer, and the same consumer writing RocksDB write batches.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import msgspec
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faust.stores.rocksdb import RocksDBOptions
from rocksdict import WriteBatch

from api.streaming.topics_admin import ensure_topics
from availability import SkuState, decode_rules, decode_state, encode_state
from availability.published import ready_key
from availability.state import OrderDoc, Position, TransferDoc
from availability.topics import STATE_TABLE, Names, partition_for, state_changelog_topic
from streams.processor import RULES_KEY, PartitionRules

from .bench_streaming import KAFKA, PARTITIONS, REDIS_URL, bare_read_rate, stack_env
from .stack import free_port
from .workload import LOCATIONS, RULES, sku_name

TARGET_S: Final = 60.0  # issue 7
DEFAULT_POSITIONS: Final = 1_000_000
DEFAULT_TIMEOUT_S: Final = 300.0  # the whole run, fill included: then it stops and says so
SEEN_PER_POSITION: Final = 2  # dedup ids a SKU keeps per location: a quiet week's events
HOUR_US: Final = 3_600 * 1_000_000
BATCH_BYTES: Final = 512 * 1024  # per produce batch: under the broker's 1 MB message limit
FAUST_FETCH_BYTES: Final = 1024**2  # faust's consumer_max_fetch_size default, per partition
CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")
CLEANUP_TIMEOUT_S: Final = 60.0
POLL_S: Final = 0.05  # how often the log and Redis are looked at: the figures' resolution
# Log lines of faust's recovery and of the worker, in the order they come.
MARKS: Final = {
    "start": "[^Worker]: Starting",
    "restoring": "Restoring state from changelog topics",
    "read": "Done reading from changelog topics",
    "recovered": "Recovery complete",
}


def sku_count(positions: int, per_sku: int) -> int:
    return math.ceil(positions / per_sku)


def sku_state(index: int, locations: Sequence[str], now_us: int) -> SkuState:
    """A settled SKU as a worker's table holds it after a week of trade: per location an
    on-hand, an open order half the time, an open inbound transfer at some stores, the last
    count and the on-hand effects since, and the dedup ids of its recent events.
    Deterministic by `index`."""
    rng = random.Random(index)
    sku = sku_name(index)
    newest = now_us - rng.randrange(HOUR_US)
    positions: dict[str, Position] = {}
    seen: dict[str, int] = {}
    for n, location in enumerate(locations):
        at = newest - rng.randrange(24 * HOUR_US)
        orders = (
            {f"W-{index}-{n}": OrderDoc(ordered=2, picked=1, last_at=at)}
            if rng.random() < 0.5
            else {}
        )
        transfers = (
            {f"T-{index}-{n}": TransferDoc(shipped=5, last_at=at)}
            if location.startswith("S") and rng.random() < 0.25
            else {}
        )
        positions[location] = Position(
            on_hand=rng.randint(0, 200),
            reserved=sum(order.open_qty for order in orders.values()),
            inbound=sum(transfer.open_qty for transfer in transfers.values()),
            orders=orders,
            transfers=transfers,
            newest_at=at,
            last_count_at=at - HOUR_US,
            last_count_id=f"count-{index}-{n}",
            last_count_drift=rng.randint(-3, 3),
            effects=[(at - 1_000, -1), (at, -rng.randint(1, 3))],
        )
        for k in range(SEEN_PER_POSITION):
            seen[f"ev-{index}-{n}-{k}"] = at - k * 1_000
    return SkuState(
        sku=sku,
        version=len(seen),
        updated_at=now_us,
        newest_at=newest,
        compacted_at=newest - HOUR_US,
        seen=seen,
        positions=positions,
    )


def location_names(count: int) -> list[str]:
    """The load tests' locations, and more made up after them when a SKU needs more."""
    return [LOCATIONS[n] if n < len(LOCATIONS) else f"S{n:03d}X" for n in range(count)]


def changelog_records(
    positions: int, per_sku: int, partitions: int, now_us: int
) -> Iterator[tuple[int, bytes, bytes]]:
    """(partition, key, value) of every SKU record, `positions` positions in all (the last
    SKU may have fewer locations), each on the partition its SKU's events go to."""
    locations = location_names(per_sku)
    for index in range(sku_count(positions, per_sku)):
        held = locations[: min(per_sku, positions - index * per_sku)]
        state = sku_state(index, held, now_us)
        key = state.sku.encode()
        yield partition_for(key, partitions), key, encode_state(state)


@dataclass
class Fill:
    records: int = 0
    positions: int = 0
    bytes: int = 0
    seconds: float = 0.0


@dataclass
class Timeline:
    """Seconds from the worker's start to each mark, and per-partition ready times."""

    marks: dict[str, float] = field(default_factory=dict)
    partitions_ready: list[float] = field(default_factory=list)


async def create_topics(names: Names, app_id: str) -> None:
    """The deployment's topics as the worker and API make them, and the table's changelog as
    faust declares it (compacted, one partition per source partition)."""
    await ensure_topics(KAFKA, names, PARTITIONS)
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:
        topic = NewTopic(
            state_changelog_topic(app_id),
            PARTITIONS,
            1,
            topic_configs={"cleanup.policy": "compact"},
        )
        await admin.create_topics([topic])
    finally:
        await admin.close()
    # A new partition's leader is named a moment before it serves: asking for the end
    # offsets retries quietly until it does, where a producer would log every retry.
    consumer = AIOKafkaConsumer(bootstrap_servers=KAFKA, group_id=None)
    await consumer.start()
    try:
        await consumer.end_offsets(
            [TopicPartition(state_changelog_topic(app_id), p) for p in range(PARTITIONS)]
        )
    finally:
        await consumer.stop()


async def fill_changelog(names: Names, app_id: str, positions: int, per_sku: int) -> Fill:
    """The rules document on the rules topic, and every SKU record (plus each partition's
    rules record, as the worker keeps it) on the changelog, in batches of BATCH_BYTES."""
    topic, fill = state_changelog_topic(app_id), Fill(positions=positions)
    producer = AIOKafkaProducer(
        bootstrap_servers=KAFKA, acks="all", linger_ms=20, max_batch_size=BATCH_BYTES
    )
    await producer.start()
    started = time.perf_counter()
    try:
        document = json.dumps(RULES).encode()
        sent = await producer.send_and_wait(names.rules_topic, document, key=b"rules")
        marker = rules_record(sent.offset, document)
        records = changelog_records(positions, per_sku, PARTITIONS, time.time_ns() // 1000)
        rules = ((p, RULES_KEY, marker) for p in range(PARTITIONS))
        batches = {p: producer.create_batch() for p in range(PARTITIONS)}
        pending: list[asyncio.Future[object]] = []
        for partition, key, value in (*rules, *records):
            if batches[partition].append(key=key, value=value, timestamp=None) is None:
                pending.append(
                    await producer.send_batch(batches[partition], topic, partition=partition)
                )
                batches[partition] = producer.create_batch()
                batches[partition].append(key=key, value=value, timestamp=None)
            fill.records += 1
            fill.bytes += len(key) + len(value)
        for partition, batch in batches.items():
            if batch.record_count():
                pending.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    fill.seconds = time.perf_counter() - started
    return fill


def rules_record(revision: int, document: bytes) -> bytes:
    """A partition's record of the rules its SKUs were last brought in line with
    (`streams/processor.py`): the ones in force, so the worker has no version to bump."""
    return msgspec.msgpack.encode(PartitionRules(revision, decode_rules(document)))


async def read_rate(topic: str, total: int, store: Path | None = None) -> float:
    """Records/s of a bare aiokafka consumer reading the changelog from its start, with the
    fetch size faust uses; with `store`, also writing each fetch to RocksDB in one write
    batch per partition, with faust's options: what a restore costs without faust."""
    dbs = {p: RocksDBOptions().open(store / f"p{p}") for p in range(PARTITIONS)} if store else {}

    def write(tp: TopicPartition, records: list[Any]) -> None:
        batch = WriteBatch(raw_mode=True)
        for record in records:
            batch.put(record.key, record.value)
        dbs[tp.partition].write(batch)

    partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    try:
        return await bare_read_rate(
            partitions, total, write if dbs else None, max_partition_fetch_bytes=FAUST_FETCH_BYTES
        )
    finally:
        for db in dbs.values():
            db.close()


def start_worker(
    tag: str, data_dir: Path, log: Path, script: Path | None, faust_env: dict[str, str]
) -> subprocess.Popen[bytes]:
    """`availability worker` of the deployment (or `script worker`, a wrapper that tunes it),
    at info level: the recovery marks are info lines."""
    env = {
        **stack_env(tag),
        "AVAIL_LOG_LEVEL": "info",
        "AVAIL_DATA_DIR": str(data_dir),
        "AVAIL_METRICS_PORT": str(free_port()),
        "AVAIL_STANDBY_REPLICAS": "0",
        "PATH": "/usr/bin:/bin",
        "PYTHONUNBUFFERED": "1",
        **faust_env,  # faust reads its settings' env names (e.g. STREAM_BUFFER_MAXSIZE)
    }
    command = [sys.executable, str(script)] if script else [sys.executable, "-m", "service.cli"]
    with log.open("wb") as out:
        return subprocess.Popen([*command, "worker"], env=env, stdout=out, stderr=out)


async def watch(
    worker: subprocess.Popen[bytes],
    log: Path,
    client: aioredis.Redis,
    names: Names,
    cpu: dict[str, float],
    on_mark: Callable[[str], None],
    until_recovered: bool = False,
) -> Timeline:
    """Follow the worker's log and the ready marks until every partition is marked; `cpu`
    gets the worker's CPU seconds at each mark, `on_mark` each mark as it comes ("start"
    first, once the worker has written its first line: its interpreter is up)."""
    timeline, started, offset = Timeline(), time.monotonic(), 0
    while len(timeline.partitions_ready) < PARTITIONS and not (
        until_recovered and "recovered" in timeline.marks
    ):
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited ({worker.returncode}):\n{tail(log)}")
        now = time.monotonic() - started
        with log.open("rb") as source:
            source.seek(offset)
            text = source.read()
        offset += len(text)
        for mark, line in MARKS.items():
            if mark not in timeline.marks and line.encode() in text:
                timeline.marks[mark] = now
                cpu[mark] = cpu_seconds(worker.pid)
                on_mark(mark)
        marked = await client.hlen(ready_key(names.redis_namespace))
        timeline.partitions_ready += [now] * (marked - len(timeline.partitions_ready))
        await asyncio.sleep(POLL_S)
    return timeline


def tail(log: Path, chars: int = 3000) -> str:
    return log.read_text(errors="replace")[-chars:]


async def count_skus(client: aioredis.Redis, names: Names) -> int:
    pattern = f"{names.redis_namespace}:{{SKU-*"
    return sum([1 async for _ in client.scan_iter(match=pattern, count=10_000)])


def table_contents(data_dir: Path) -> tuple[int, int]:
    """(SKU records, positions) in the worker's restored RocksDB, read once it has stopped."""
    records = positions = 0
    for path in sorted(data_dir.rglob(f"{STATE_TABLE}-*.db")):
        db = RocksDBOptions().open(path, read_only=True)
        try:
            for key, value in db.items():
                if not key.startswith(b"\x00") and not key.startswith(b"__faust"):
                    records += 1
                    positions += len(decode_state(value).positions)
        finally:
            db.close()
    return records, positions


def start_profiler(pid: int, output: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling the worker's Python stacks (collapsed, one line per stack)."""
    py_spy = Path(sys.executable).with_name("py-spy")
    command = [str(py_spy), "record", "--pid", str(pid), "--threads", "--format", "raw"]
    command += ["-o", str(output)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


async def cleanup(tag: str, names: Names) -> None:
    """Delete the deployment's topics (the app's own included: its id starts with the tag)
    and its Redis keys. Its consumer group, with no offsets, expires by itself."""
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:
        ours = [topic for topic in await admin.list_topics() if topic.startswith(tag)]
        if ours:
            await admin.delete_topics(ours)
    finally:
        await admin.close()
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in client.scan_iter(match=f"{names.redis_namespace}:*", count=10_000)]
        for start in range(0, len(keys), 10_000):
            await client.unlink(*keys[start : start + 10_000])
    finally:
        await client.aclose()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@dataclass
class Options:
    positions: int = DEFAULT_POSITIONS
    per_sku: int = len(LOCATIONS)
    timeout_s: float = DEFAULT_TIMEOUT_S
    worker_script: Path | None = None
    faust_env: dict[str, str] = field(default_factory=dict)
    profile: Path | None = None  # a py-spy raw profile of the worker until it is ready
    keep_log: Path | None = None
    until: str = "ready"  # or "recovered": stop there, without the Redis figures


async def bench_recovery_async(options: Options) -> list[tuple[str, str, str]]:
    tag = f"rcv{uuid.uuid4().hex[:6]}-"
    names, app_id = Names(tag), f"{tag}app"
    phase = "creating the topics"
    try:
        async with asyncio.timeout(options.timeout_s):
            await create_topics(names, app_id)
            phase = "filling the changelog"
            fill = await fill_changelog(names, app_id, options.positions, options.per_sku)
            phase = "reading the changelog with bare aiokafka (the ceilings)"
            topic = state_changelog_topic(app_id)
            bare = await read_rate(topic, fill.records)
            with tempfile.TemporaryDirectory(prefix="avail-bench-recovery-store-") as tmp:
                ceilings = bare, await read_rate(topic, fill.records, Path(tmp))
            phase = "waiting for the worker to recover and republish"
            with tempfile.TemporaryDirectory(prefix="avail-bench-recovery-") as tmp:
                data_dir, log = Path(tmp) / "data", options.keep_log or Path(tmp) / "worker.log"
                run = await recover(options, tag, names, data_dir, log)
                phase = "reading the restored table"
                table = table_contents(data_dir)
    except TimeoutError:
        raise SystemExit(
            f"aborted after {options.timeout_s:.0f} s while {phase}: "
            "the run is bounded by --timeout"
        ) from None
    finally:
        async with asyncio.timeout(CLEANUP_TIMEOUT_S):
            await cleanup(tag, names)
    return report(options, fill, run, ceilings, table)


@dataclass
class Recovery:
    timeline: Timeline
    cpu: dict[str, float]  # the worker's CPU seconds at each mark
    skus_in_redis: int
    load: float  # the machine's 1-minute load average once recovered: others' work skews


async def recover(options: Options, tag: str, names: Names, data_dir: Path, log: Path) -> Recovery:
    """Start the worker on an empty data directory; follow it until every partition is ready.
    With a profile, py-spy samples the restore into `<profile>` and what follows, until
    every partition is ready, into `<profile>.republish`."""
    client = aioredis.Redis.from_url(REDIS_URL)
    worker = start_worker(tag, data_dir, log, options.worker_script, options.faust_env)
    spies: list[subprocess.Popen[bytes]] = []

    def on_mark(mark: str) -> None:
        if options.profile is None:
            return
        if mark == "start":
            spies.append(start_profiler(worker.pid, options.profile))
        elif mark == "recovered" and spies:
            spies[-1].send_signal(signal.SIGINT)  # py-spy writes its profile on SIGINT
            spies.append(start_profiler(worker.pid, Path(f"{options.profile}.republish")))

    try:
        cpu: dict[str, float] = {}
        until_recovered = options.until == "recovered"
        timeline = await watch(worker, log, client, names, cpu, on_mark, until_recovered)
        load = os.getloadavg()[0]
        if spies:
            spies[-1].send_signal(signal.SIGINT)
        skus = 0 if until_recovered else await count_skus(client, names)
    finally:
        stop(worker)
        for spy in spies:
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait()
        await client.aclose()
    return Recovery(timeline, cpu, skus, load)


def report(
    options: Options,
    fill: Fill,
    run: Recovery,
    ceilings: tuple[float, float],
    table: tuple[int, int],
) -> list[tuple[str, str, str]]:
    """(figure, value, note) rows; `ceilings` are the bare aiokafka rates without and with
    RocksDB, `table` the SKU records and positions the restored table holds."""
    marks, cpu, skus = run.timeline.marks, run.cpu, sku_count(options.positions, options.per_sku)
    recovered = marks.get("recovered", math.nan)
    bare, with_store = ceilings
    ceiling_note = (
        f"bare aiokafka {bare:,.0f}/s, aiokafka + RocksDB write batches {with_store:,.0f}/s"
    )
    if "read" in marks:
        reading, reading_cpu = marks["read"] - marks["restoring"], cpu["read"] - cpu["restoring"]
        rate = fill.records / reading
        read_note = f"changelog read from {marks['restoring']:.1f} s to {marks['read']:.1f} s; "
        rate_row = (
            "changelog restore rate (faust)",
            f"{rate:,.0f} records/s",
            f"{rate / bare:.1%} of bare aiokafka, {rate / with_store:.1%} of aiokafka + "
            f"RocksDB ({ceiling_note}); {reading_cpu:.1f} s of worker CPU, "
            f"{reading_cpu / fill.records * 1e6:.0f} µs per record",
        )
    else:
        read_note = ""
        rate_row = (
            "changelog restore rate (faust)",
            "-",
            f"faust found nothing to read (restored before it started); {ceiling_note}",
        )
    rows = [
        (
            "changelog filled",
            f"{fill.records:,} records",
            f"{fill.positions:,} positions ({options.per_sku} per SKU, {skus:,} SKUs, "
            f"{PARTITIONS} partitions), {fill.bytes / 1e6:,.0f} MB, "
            f"produced in {fill.seconds:.1f} s",
        ),
        (
            "worker start -> 'Recovery complete' (empty data dir)",
            f"{recovered:.1f} s",
            f"target ≤ {TARGET_S:.0f} s (issue 7); {read_note}worker CPU "
            f"{cpu.get('recovered', math.nan):.1f} s by then; 1-min load average {run.load:.1f} on "
            f"{os.cpu_count()} CPUs",
        ),
        rate_row,
        ("restored table", f"{table[0]:,} SKUs", f"{table[1]:,} positions; expected {skus:,} SKUs"),
    ]
    if ready := run.timeline.partitions_ready:
        rows += [
            (
                "worker start -> every partition ready in Redis",
                f"{ready[-1]:.1f} s",
                f"first partition at {ready[0]:.1f} s; {ready[-1] - recovered:.1f} s after "
                "recovery",
            ),
            ("SKUs in Redis", f"{run.skus_in_redis:,}", f"expected {skus:,}"),
        ]
    return rows


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--positions", type=int, default=DEFAULT_POSITIONS)
    parser.add_argument(
        "--locations-per-sku",
        type=int,
        default=len(LOCATIONS),
        help="positions per SKU record (default: the load tests' 8 locations)",
    )
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds")
    parser.add_argument(
        "--worker-script",
        type=Path,
        help="run `python SCRIPT worker` instead of `availability worker` (a tuning wrapper)",
    )
    parser.add_argument(
        "--faust-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a faust setting by its environment name, e.g. STREAM_BUFFER_MAXSIZE=16384",
    )
    parser.add_argument("--profile", type=Path, help="write a py-spy raw profile here")
    parser.add_argument("--keep-log", type=Path, help="write the worker's log here")
    parser.add_argument(
        "--until",
        choices=["ready", "recovered"],
        default="ready",
        help="stop at every partition ready in Redis (default), or at the end of the restore",
    )
    args = parser.parse_args(argv)
    return Options(
        positions=args.positions,
        per_sku=args.locations_per_sku,
        timeout_s=args.timeout,
        worker_script=args.worker_script,
        faust_env=dict(item.split("=", 1) for item in args.faust_env),
        profile=args.profile,
        keep_log=args.keep_log,
        until=args.until,
    )


def bench_recovery(options: Options) -> list[tuple[str, str, str]]:
    return asyncio.run(bench_recovery_async(options))


def main(argv: Sequence[str] | None = None) -> None:
    rows = bench_recovery(parse_args(argv))
    width = max(len(label) for label, _, _ in rows)
    figure = max(len(value) for _, value, _ in rows)
    for label, value, note in rows:
        print(f"{label:<{width}}  {value:>{figure}}  {note}")


if __name__ == "__main__":
    main()
