"""Recovery figures (issue "A bestseller never breaks the stream": a worker's table of
1,000,000 positions and 5,000,000 remembered event ids restores from its changelog in at
most 60 s): one worker with an empty data directory, as after a lost disk or on a new pod.

The changelog of the table `sku-state` is filled directly with the records a worker writes
(`loadtests/recovery_records.py`): each SKU's head record, and chunk records when its items
overflow the head's open chunk, on the partition the worker would have written them to, so
no event goes through a worker first. A position is one SKU at one location (SPEC 3): by
default 8 locations per SKU, the catalogue of `loadtests/workload.py`, so 1,000,000
positions are 125,000 SKUs, and their 5,000,000 event ids 40 a SKU; with their documents
and effects most SKUs fit in their head alone.

    python -m loadtests.bench_recovery [--positions N] [--locations-per-sku L]
        [--dedup-ids-per-sku D]

Figures: the changelog's records, bytes and largest record; time from the worker's start to
faust's "Recovery complete" (and the changelog read alone, records/s), time until every
partition is republished to Redis and marked ready, the SKUs in Redis and the SKUs,
positions and dedup ids in the restored table; and two ceilings on the same topic: a bare
aiokafka consumer, and the same consumer writing RocksDB write batches.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
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
from availability import decode_rules
from availability.layout import CHUNK, decode_head, is_head
from availability.published import ready_key
from availability.state import Item, Seen
from availability.topics import STATE_TABLE, Names, state_changelog_topic
from streams.processor import RULES_KEY, PartitionRules

from .batches import Batches
from .bench_streaming import KAFKA, PARTITIONS, REDIS_URL, bare_read_rate, stack_env
from .recovery_records import SEEN_PER_SKU, changelog_records, sku_count
from .stack import cpu_seconds, free_port
from .workload import LOCATIONS, RULES

# The issue's: the table it takes (1,000,000 positions, 5,000,000 event ids) restores in
# at most 60 s, as issue 7 asked of the positions alone.
TARGET_S: Final = 60.0
DEFAULT_POSITIONS: Final = 1_000_000
DEFAULT_TIMEOUT_S: Final = 300.0  # the whole run, fill included: then it stops and says so
BATCH_BYTES: Final = 512 * 1024  # per produce batch: under the broker's 1 MB message limit
FAUST_FETCH_BYTES: Final = 1024**2  # faust's consumer_max_fetch_size default, per partition
CLEANUP_TIMEOUT_S: Final = 60.0
POLL_S: Final = 0.05  # how often the log and Redis are looked at: the figures' resolution
# Log lines of faust's recovery and of the worker, in the order they come.
MARKS: Final = {
    "start": "[^Worker]: Starting",
    "restoring": "Restoring state from changelog topics",
    "read": "Done reading from changelog topics",
    "recovered": "Recovery complete",
}


@dataclass
class Fill:
    """What the changelog was filled with: SKU and rules records, their bytes (keys and
    values), and the largest record, which must stay far under Kafka's 1 MB limit."""

    records: int = 0
    heads: int = 0  # one a SKU
    chunks: int = 0
    positions: int = 0
    dedup_ids: int = 0
    bytes: int = 0
    largest: int = 0
    seconds: float = 0.0

    def add(self, records: Sequence[tuple[bytes, bytes | None]]) -> None:
        for key, value in records:
            size = len(key) + len(value or b"")
            self.records += 1
            self.bytes += size
            self.largest = max(self.largest, size)


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


async def fill_changelog(
    names: Names, app_id: str, positions: int, per_sku: int, seen_per_sku: int
) -> Fill:
    """The rules document on the rules topic, and every SKU's records (plus each
    partition's rules record, as the worker keeps it) on the changelog, in batches of
    BATCH_BYTES, a SKU's records of one write always in one batch."""
    topic, fill = state_changelog_topic(app_id), Fill()
    producer = AIOKafkaProducer(
        bootstrap_servers=KAFKA, acks="all", linger_ms=20, max_batch_size=BATCH_BYTES
    )
    await producer.start()
    started = time.perf_counter()
    try:
        document = json.dumps(RULES).encode()
        sent = await producer.send_and_wait(names.rules_topic, document, key=b"rules")
        batches = Batches(producer, BATCH_BYTES)
        marker = [(RULES_KEY, rules_record(sent.offset, document))]
        for partition in range(PARTITIONS):
            await batches.add(topic, partition, marker)
            fill.add(marker)
        now_us = time.time_ns() // 1000
        records = changelog_records(positions, per_sku, PARTITIONS, now_us, seen_per_sku)
        for partition, group in records:
            await batches.add(topic, partition, group)
            fill.add(group)
            fill.heads += 1
            fill.chunks += len(group) - 1  # a new SKU's records: its sealed chunks, its head
        fill.positions = positions
        fill.dedup_ids = fill.heads * seen_per_sku
        await batches.flush()
        await asyncio.gather(*batches.delivered)
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


@dataclass
class Table:
    """What the worker's restored RocksDB holds, read once it has stopped."""

    skus: int = 0  # head records
    chunks: int = 0
    positions: int = 0
    dedup_ids: int = 0


_chunk_decoder: Final = msgspec.msgpack.Decoder(list[Item])


def table_contents(data_dir: Path) -> Table:
    table = Table()
    for path in sorted(data_dir.rglob(f"{STATE_TABLE}-*.db")):
        db = RocksDBOptions().open(path, read_only=True)
        try:
            for key, value in db.items():
                if is_head(key):
                    head = decode_head(value)
                    table.skus += 1
                    table.positions += len(head.positions)
                    items: list[Item] = head.items
                elif key.startswith(CHUNK):
                    table.chunks += 1
                    items = _chunk_decoder.decode(value)
                else:
                    continue  # the partition's rules record, faust's offsets
                table.dedup_ids += sum(isinstance(item, Seen) for item in items)
        finally:
            db.close()
    return table


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


@dataclass
class Options:
    positions: int = DEFAULT_POSITIONS
    per_sku: int = len(LOCATIONS)
    seen_per_sku: int = SEEN_PER_SKU
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
            fill = await fill_changelog(
                names, app_id, options.positions, options.per_sku, options.seen_per_sku
            )
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
    table: Table,
) -> list[tuple[str, str, str]]:
    """(figure, value, note) rows; `ceilings` are the bare aiokafka rates without and with
    RocksDB, `table` what the restored table holds."""
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
            f"{PARTITIONS} partitions) and {fill.dedup_ids:,} dedup ids "
            f"({options.seen_per_sku} per SKU): {fill.heads:,} heads, "
            f"{fill.chunks:,} chunk records and {PARTITIONS} rules "
            f"records, {fill.bytes / 1e6:,.0f} MB, the largest record {fill.largest:,} bytes; "
            f"produced in {fill.seconds:.1f} s",
        ),
        (
            "worker start -> 'Recovery complete' (empty data dir)",
            f"{recovered:.1f} s",
            f"target ≤ {TARGET_S:.0f} s; {read_note}worker CPU "
            f"{cpu.get('recovered', math.nan):.1f} s by then; 1-min load average {run.load:.1f} on "
            f"{os.cpu_count()} CPUs",
        ),
        rate_row,
        (
            "restored table",
            f"{table.skus:,} SKUs",
            f"{table.positions:,} positions, {table.dedup_ids:,} dedup ids, {table.chunks:,} "
            f"chunk records; expected {skus:,} SKUs, {fill.positions:,} positions, "
            f"{fill.dedup_ids:,} dedup ids",
        ),
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
        help="positions per SKU (default: the load tests' 8 locations)",
    )
    parser.add_argument(
        "--dedup-ids-per-sku",
        type=int,
        default=SEEN_PER_SKU,
        help=f"event ids each SKU remembers (default {SEEN_PER_SKU}: 5,000,000 over 125,000 SKUs)",
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
        seen_per_sku=args.dedup_ids_per_sku,
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
