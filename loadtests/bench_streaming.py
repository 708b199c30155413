"""Streaming-mode figures: one worker on the local Kafka and Redis (scripts/services.sh).

- raw aiokafka consume rate of the same events on the same topics: the ceiling;
- end-to-end events/s for one worker: produce -> table -> Redis, measured with the worker
  up and ready, from the first event produced to the last SKU reaching its final version,
  and the worker's CPU an event;
- the same for a bestseller stream on the same worker right after: one SKU takes 80% of
  the events (40 hours of a chain's trade at 20 stores, `workload.Bestseller`), the rest
  spread over the catalogue; its CPU an event against the uniform stream's;
- event-to-visible latency at a fixed rate: each event is the first of its own SKU, and a
  keyspace-notification subscriber timestamps the moment its hash appears in Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from api.streaming.topics_admin import ensure_topics
from availability import SkuState, apply_events, decode_event
from availability.published import ready_key, sku_key
from availability.topics import Names, partition_for

from .batches import Batches
from .stack import cpu_seconds, free_port
from .workload import BESTSELLER_SHARE, BESTSELLER_STORES, RULES, EventMix, bestseller_stream

KAFKA = "127.0.0.1:9092"
REDIS_URL = "redis://127.0.0.1:6379/0"
PARTITIONS = 8
PRODUCE_BATCH_BYTES: Final = 256 * 1024
# A stream not applied by then is a stuck or dead worker: the run says so and stops.
STREAM_TIMEOUT_S: Final = 600.0


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


ProducerRecord = tuple[str, int, bytes, bytes]  # topic, partition, key, value


def as_records(names: Names, events: Sequence[dict[str, Any]]) -> list[ProducerRecord]:
    """Events as the API would produce them: JSON, keyed by SKU, on the SKU's partition."""
    return [
        (
            names.event_topic(e["type"]),
            partition_for(e["sku"].encode(), PARTITIONS),
            e["sku"].encode(),
            json.dumps(e).encode(),
        )
        for e in events
    ]


async def produce_all(records: Sequence[ProducerRecord], slice_size: int = 2_000) -> float:
    """Produce pre-encoded records in their order, a slice at a time, each slice as one
    record batch per topic partition: the producer should cost the two cores as little as
    it can, since the worker it feeds runs beside it."""
    producer = AIOKafkaProducer(
        bootstrap_servers=KAFKA,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=PRODUCE_BATCH_BYTES,
    )
    await producer.start()
    started = time.perf_counter()
    try:
        batches = Batches(producer, PRODUCE_BATCH_BYTES)
        for start in range(0, len(records), slice_size):
            for topic, partition, key, value in records[start : start + slice_size]:
                await batches.add(topic, partition, [(key, value)])
            await batches.flush()
        await asyncio.gather(*batches.delivered)
    finally:
        await producer.stop()
    return len(records) / (time.perf_counter() - started)


async def raw_consume_rate(names: Names, total: int) -> float:
    """Read every event back with a plain aiokafka consumer: no decoding, no state."""
    partitions = [TopicPartition(t, p) for t in names.inventory_topics for p in range(PARTITIONS)]
    return await bare_read_rate(
        partitions,
        total,
        max_records=10_000,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=16 * 1024 * 1024,
    )


async def bare_read_rate(
    partitions: Sequence[TopicPartition],
    total: int,
    on_fetch: Callable[[TopicPartition, list[Any]], None] | None = None,
    max_records: int | None = None,
    **options: Any,
) -> float:
    """Records/s of a bare aiokafka consumer (with `options`) reading `partitions` from
    their start until it has `total` records; `on_fetch` sees each partition's share of a
    fetch, and its time counts."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=KAFKA, group_id=None, enable_auto_commit=False, **options
    )
    await consumer.start()
    try:
        consumer.assign(list(partitions))
        await consumer.seek_to_beginning(*partitions)
        seen, started = 0, time.perf_counter()
        while seen < total:
            fetched = await consumer.getmany(timeout_ms=1000, max_records=max_records)
            for tp, records in fetched.items():
                seen += len(records)
                if on_fetch is not None:
                    on_fetch(tp, records)
        return seen / (time.perf_counter() - started)
    finally:
        await consumer.stop()


def stack_env(tag: str) -> dict[str, str]:
    """The settings every process of one benchmark deployment shares."""
    return {
        "AVAIL_KAFKA_BOOTSTRAP": KAFKA,
        "AVAIL_REDIS_URL": REDIS_URL,
        "AVAIL_TOPIC_PREFIX": tag,
        "AVAIL_APP_ID": f"{tag}app",
        "AVAIL_PARTITIONS": str(PARTITIONS),
        "AVAIL_LOG_LEVEL": "warning",
    }


def start_worker(tag: str, data_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **stack_env(tag),
        "AVAIL_DATA_DIR": str(data_dir),
        "AVAIL_METRICS_PORT": str(free_port()),
        "AVAIL_STANDBY_REPLICAS": "0",
        "PATH": "/usr/bin:/bin",
    }
    out = log.open("wb")
    command = [sys.executable, "-m", "service.cli", "worker"]
    if profile := os.environ.get("BENCH_WORKER_PROFILE"):  # a cProfile dump, for the notes
        command[1:1] = ["-m", "cProfile", "-o", profile]
    return subprocess.Popen(command, env=env, stdout=out, stderr=out)


async def publish_rules(names: Names) -> None:
    from availability import decode_rules
    from availability.control import RulesChanged, control_encoder

    document = json.dumps(RULES).encode()
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, acks="all")
    await producer.start()
    try:
        sent = await producer.send_and_wait(names.rules_topic, document, key=b"rules")
        change = control_encoder.encode(RulesChanged(sent.offset, decode_rules(document)))
        for partition in range(PARTITIONS):
            await producer.send_and_wait(
                names.control_topic, change, key=b"rules", partition=partition
            )
    finally:
        await producer.stop()


async def wait_ready(client: aioredis.Redis, names: Names, within_s: float = 120.0) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if await client.hlen(ready_key(names.redis_namespace)) >= PARTITIONS:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError("the worker never marked every partition ready")


def final_versions(events: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Each SKU's version once every event is applied in order, by the core's own rules."""
    states: dict[str, SkuState] = {}
    apply_events(
        lambda s: states.setdefault(s, SkuState(sku=s)),
        [decode_event(json.dumps(e).encode()) for e in events],
        0,
    )
    return {sku: state.version for sku, state in states.items()}


async def until_versions(
    client: aioredis.Redis, names: Names, wanted: dict[str, int], poll_s: float
) -> None:
    """Wait until every SKU of `wanted` shows at least its version in Redis."""
    pending = dict(wanted)
    while pending:
        pipe = client.pipeline(transaction=False)
        skus = list(pending)
        for sku in skus:
            pipe.hget(sku_key(names.redis_namespace, sku), "v")
        for sku, version in zip(skus, await pipe.execute(), strict=True):
            if version is not None and int(version) >= pending[sku]:
                del pending[sku]
        if pending:
            await asyncio.sleep(poll_s)


async def end_to_end(
    names: Names,
    events: Sequence[dict[str, Any]],
    client: aioredis.Redis,
    applied_before: Sequence[dict[str, Any]] = (),
    label: str = "stream",
) -> tuple[float, float]:
    """(end-to-end events/s, producer events/s) through workers that are up and ready:
    from the first event produced to every SKU at its final version in Redis (the producer
    runs on the same two cores). `applied_before`: the events the workers were given
    earlier, which the SKUs' final versions count too.

    A partition is applied in order, so the SKU of each topic partition's last event
    reaches its final version only once the whole partition is applied: those few are
    polled closely, and every SKU is checked once they all show."""
    skus = {e["sku"] for e in events}
    final = {
        sku: version
        for sku, version in final_versions([*applied_before, *events]).items()
        if sku in skus
    }
    records = as_records(names, events)
    last_of_partition = {(topic, partition): key.decode() for topic, partition, key, _ in records}
    started = time.perf_counter()
    producing = asyncio.create_task(produce_all(records))
    try:
        async with asyncio.timeout(STREAM_TIMEOUT_S):
            last = {s: final[s] for s in last_of_partition.values()}
            await until_versions(client, names, last, 0.02)
            produced = await producing
            await until_versions(client, names, final, 0.02)
    except TimeoutError:
        producing.cancel()
        await asyncio.gather(producing, return_exceptions=True)
        raise RuntimeError(
            f"the {label}: the SKUs of its {len(events):,} events were not all at their final "
            f"version in Redis after {STREAM_TIMEOUT_S:.0f} s: a worker stuck or dead, or "
            "events dead-lettered (see its log)"
        ) from None
    return len(events) / (time.perf_counter() - started), produced


async def measured_stream(
    names: Names,
    events: Sequence[dict[str, Any]],
    client: aioredis.Redis,
    worker: subprocess.Popen[bytes],
    label: str,
    applied_before: Sequence[dict[str, Any]] = (),
) -> tuple[float, float, float]:
    """(end-to-end events/s, producer events/s, the worker's CPU µs an event)."""
    cpu_before = cpu_seconds(worker.pid)
    rate, produced = await end_to_end(names, events, client, applied_before, label)
    return rate, produced, (cpu_seconds(worker.pid) - cpu_before) / len(events) * 1e6


async def latency_at_rate(
    names: Names, client: aioredis.Redis, rate: int, seconds: int
) -> list[float]:
    """Send `rate` events/s, each to a SKU of its own; time each SKU's first hash write."""
    await client.config_set("notify-keyspace-events", "Kh")
    pubsub = client.pubsub()
    prefix = f"LAT{uuid.uuid4().hex[:6]}-"
    await pubsub.psubscribe(f"__keyspace@0__:{names.redis_namespace}:{{{prefix}*")
    sent_at: dict[str, float] = {}
    seen_at: dict[str, float] = {}
    all_seen = asyncio.Event()
    expected = rate * seconds // max(1, rate // 100) * max(1, rate // 100)

    async def listen() -> None:
        async for message in pubsub.listen():
            if message["type"] != "pmessage":
                continue
            channel = message["channel"].decode()
            sku = channel.split("{", 1)[1].rstrip("}")
            seen_at.setdefault(sku, time.perf_counter())
            if len(seen_at) >= expected:
                all_seen.set()

    listener = asyncio.create_task(listen())
    producer = AIOKafkaProducer(
        bootstrap_servers=KAFKA, acks="all", enable_idempotence=True, linger_ms=1
    )
    await producer.start()
    tick, per_tick = 0.01, max(1, rate // 100)
    try:
        started = time.perf_counter()
        for n in range(rate * seconds // per_tick):
            for i in range(per_tick):
                sku = f"{prefix}{n}-{i}"
                event = {
                    "event_id": sku,
                    "type": "receipt",
                    "sku": sku,
                    "location": "DC1",
                    "occurred_at": datetime.now(UTC).isoformat(),
                    "qty": 5,
                }
                sent_at[sku] = time.perf_counter()
                await producer.send(
                    names.event_topic("receipt"), json.dumps(event).encode(), key=sku.encode()
                )
            delay = started + (n + 1) * tick - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        await producer.flush()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_seen.wait(), 30)
    finally:
        await producer.stop()
        listener.cancel()
        await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
    return [(seen_at[s] - sent_at[s]) * 1000 for s in sent_at if s in seen_at]


async def bench_streaming_async(
    events_total: int, rate: int, seconds: int, hot_share: float
) -> list[tuple[str, str, str]]:
    tag = f"bench{uuid.uuid4().hex[:6]}-"
    names = Names(tag)
    await ensure_topics(KAFKA, names, PARTITIONS)
    await publish_rules(names)
    mix = EventMix(skus=20_000, seed=11, hot_share=hot_share)
    events = [e for batch in mix.batches(events_total // 1000, 1000) for e in batch]
    bestseller = bestseller_stream(events_total)
    client = aioredis.Redis.from_url(REDIS_URL)
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="avail-bench-worker-") as tmp:
        log = Path(tmp) / "worker.log"
        worker = start_worker(tag, Path(tmp) / "data", log)
        try:
            await wait_ready(client, names)
            rate_e2e, produce_rate, uniform_us = await measured_stream(
                names, events, client, worker, "uniform stream"
            )
            ceiling = await raw_consume_rate(names, len(events))
            rows.append(
                (
                    f"stream events/s, produce -> table -> Redis (1 worker, {hot_share:.0%} hot)",
                    f"{rate_e2e:,.0f}",
                    f"{rate_e2e / ceiling:.1%} of raw aiokafka consume ({ceiling:,.0f}/s); "
                    f"worker CPU {uniform_us:.0f} µs an event; target ≥ 10,000 (issue 3), "
                    "≥ 20,000 (issue 7), ≥ 17,500 (the bestseller issue)",
                )
            )
            # Right after, on the same worker: the catalogue's SKUs it already holds.
            best_rate, _, best_us = await measured_stream(
                names, bestseller, client, worker, "bestseller stream", applied_before=events
            )
            rows += [
                (
                    f"bestseller stream events/s (1 worker; one SKU takes {BESTSELLER_SHARE:.0%} "
                    f"of {len(bestseller):,} events, at {len(BESTSELLER_STORES)} stores)",
                    f"{best_rate:,.0f}",
                    f"{best_rate / rate_e2e:.0%} of the uniform stream's events/s; worker CPU "
                    f"{best_us:.0f} µs an event",
                ),
                (
                    "worker CPU an event, bestseller stream against uniform",
                    f"{best_us / uniform_us:.2f}x",
                    f"{best_us:.0f} µs against {uniform_us:.0f} µs; target ≤ 1.5x",
                ),
            ]
            for target in sorted({1_000, rate}):
                lags = await latency_at_rate(names, client, target, seconds)
                missing = target * seconds - len(lags)
                rows.append(
                    (
                        f"event-to-visible latency at {target:,} events/s",
                        f"p50 {percentile(lags, 0.5):.1f} ms",
                        f"p99 {percentile(lags, 0.99):.1f} ms over {len(lags):,} events"
                        f"{f', {missing} never seen' if missing else ''}; "
                        "target p99 ≤ 100 ms at 5,000/s",
                    )
                )
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\nthe worker's log ends:\n{log_tail(log)}") from None
        finally:
            worker.terminate()
            worker.wait(30)
            await client.aclose()
    bare = faust_ceiling(tag, len(events))
    rows.append(
        (
            "faust agent alone, same events (take_events, empty handler)",
            f"{bare:,.0f}",
            f"faust's per-event delivery, which the worker's batch delivery bypasses; "
            f"the worker reaches {rate_e2e / bare:.0%} of it",
        )
    )
    rows.append(
        (
            "producer rate (acks=all, idempotent, 1 client, beside the worker)",
            f"{produce_rate:,.0f}",
            "events/s into Kafka",
        )
    )
    return rows


def log_tail(log: Path, chars: int = 3000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.exists() else "(no log)"


async def _end_to_end_with(workers: int, events_total: int) -> tuple[float, float]:
    """(events/s end to end, raw aiokafka consume/s) for `workers` workers on one group."""
    tag = f"benchw{uuid.uuid4().hex[:6]}-"
    names = Names(tag)
    await ensure_topics(KAFKA, names, PARTITIONS)
    await publish_rules(names)
    mix = EventMix(skus=20_000, seed=11)
    events = [e for batch in mix.batches(events_total // 1000, 1000) for e in batch]
    client = aioredis.Redis.from_url(REDIS_URL)
    with tempfile.TemporaryDirectory(prefix="avail-bench-workers-") as tmp:
        folder = Path(tmp)
        started = [
            start_worker(tag, folder / f"data{n}", folder / f"w{n}.log") for n in range(workers)
        ]
        try:
            await wait_ready(client, names)
            rate, _ = await end_to_end(names, events, client)
            ceiling = await raw_consume_rate(names, len(events))
        finally:
            for worker in started:
                worker.terminate()
            for worker in started:
                worker.wait(30)
            await client.aclose()
    return rate, ceiling


def events_per_second_by_workers(
    counts: Sequence[int], events_total: int = 60_000
) -> list[tuple[int, float, float]]:
    """(workers, events/s end to end, raw consume/s) for each worker count, each run on a
    deployment of its own with the same events."""
    return [(n, *asyncio.run(_end_to_end_with(n, events_total))) for n in counts]


def faust_ceiling(tag: str, total: int) -> float:
    """Events/s of a faust agent that only counts them, on the same topics (own group)."""
    done = subprocess.run(
        [sys.executable, "-m", "loadtests.faust_ceiling", tag, str(total), str(PARTITIONS)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    figures = re.findall(r"^\d+(?:\.\d+)?$", done.stdout, re.MULTILINE)  # faust adds a spinner
    return float(figures[-1])


def bench_streaming(
    events_total: int = 200_000, rate: int = 5_000, seconds: int = 20, hot_share: float = 0.0
) -> list[tuple[str, str, str]]:
    return asyncio.run(bench_streaming_async(events_total, rate, seconds, hot_share))
