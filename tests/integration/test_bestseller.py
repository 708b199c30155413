"""A bestseller on the real stack: one SKU with 200,000 events inside the dedup window, the
worker killed while it applies them and restarted on an empty data directory, as a
rescheduled pod would be; and a changelog write Kafka refuses. Positions are compared with
the event log folded by the core, and the changelog is read back record by record."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import pytest
import redis
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import MessageSizeTooLargeError

from availability.layout import chunk_items, chunk_prefix, decode_head, head_key
from availability.state import Seen
from availability.topics import state_changelog_topic
from tests.support.server import ApiServer
from tests.support.streaming import (
    KAFKA,
    REDIS_URL,
    Stack,
    WorkerProcess,
    create_topics,
    event_messages,
    expected_positions,
    produce,
    published_positions,
    read_topic,
    reference_states,
    run,
    wait_until,
)

from .conftest import StartApi
from .helpers import wait_readiness
from .test_worker import assert_converges, committed_offsets, event_mix

pytestmark = pytest.mark.integration

BESTSELLER: Final = "BEST-1"
EVENTS: Final = 200_000
STORES: Final = [f"S{n:03d}" for n in range(20)]
RECORD_LIMIT: Final = 64 * 1024
TRADING_DAYS: Final = 6  # the events' times span six days: all inside the 7-day dedup window


def bestseller_events(count: int, first: int = 0) -> list[dict[str, Any]]:
    """A week's trade of one SKU at 20 stores: sales mostly, receipts, orders picked or
    cancelled later, returns. Counts are left out: a count's rebase depends on its place
    among the other events, which the worker and the reference fold meet differently."""
    rnd = random.Random(first)
    start = datetime.now(UTC) - timedelta(days=TRADING_DAYS, minutes=5)
    span = timedelta(days=TRADING_DAYS) / EVENTS
    events = []
    for n in range(first, first + count):
        at = start + span * n
        base = {"event_id": f"b{n}", "sku": BESTSELLER, "location": rnd.choice(STORES)}
        base["occurred_at"] = at.isoformat()
        roll = rnd.random()
        if roll < 0.70:
            events.append(base | {"type": "sale", "qty": 1})
        elif roll < 0.82:
            events.append(base | {"type": "receipt", "qty": rnd.randint(5, 20)})
        elif roll < 0.90:
            events.append(base | {"type": "order", "qty": 1, "order_id": f"O{n}"})
        elif roll < 0.96 and n > 1000:
            order = f"O{n - rnd.randrange(1, 1000)}"  # an order of a while ago, maybe none
            kind = "pick" if roll < 0.94 else "cancel"
            events.append(base | {"type": kind, "qty": 1, "order_id": order})
        else:
            events.append(base | {"type": "return", "qty": 1, "disposition": "sellable"})
    return events


@pytest.fixture
def stack(fresh_stack: Stack) -> Stack:
    run(create_topics(fresh_stack))
    return fresh_stack


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.stop()


def published_version(sku: str, stack: Stack) -> int:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        raw = client.hget(f"{stack.names.redis_namespace}:{{{sku}}}", "v")
    finally:
        client.close()
    return int(raw) if raw is not None else 0


def test_a_bestseller_killed_mid_stream_recovers_whole_on_an_empty_disk(
    stack: Stack,
    workers: list[WorkerProcess],
    tmp_path: Path,
    start_api: StartApi,
    figures: dict[str, str],
) -> None:
    worker = WorkerProcess(stack, tmp_path / "w1", standby_replicas=0).start()
    workers.append(worker)
    assert wait_until(lambda: "republished to redis" in worker.log_tail(200_000), 60), (
        worker.log_tail()
    )
    events = bestseller_events(EVENTS)
    producing = threading.Thread(target=lambda: run(produce(stack, event_messages(stack, events))))
    producing.start()
    # Killed while it applies them: a third of the way in.
    assert wait_until(lambda: published_version(BESTSELLER, stack) >= EVENTS // 3, 240), (
        worker.log_tail()
    )
    worker.kill()
    producing.join(timeout=120)
    # A rescheduled pod: a new, empty data directory.
    rescheduled = WorkerProcess(stack, tmp_path / "w2", standby_replicas=0).start()
    workers.append(rescheduled)

    assert_converges(stack, {BESTSELLER}, workers)
    reference = run(reference_states(stack))[BESTSELLER]
    assert wait_until(lambda: published_version(BESTSELLER, stack) == reference.version, 60)

    # Later events of the SKU show up in the API.
    api: ApiServer = start_api()
    wait_readiness(api, 200, timeout_s=60)
    later = bestseller_events(200, first=EVENTS)
    run(produce(stack, event_messages(stack, later)))
    expected = expected_positions(run(reference_states(stack)))[BESTSELLER]

    def api_shows_them() -> bool:
        with api.client() as http:
            answer = http.get(f"/v1/positions/{BESTSELLER}").json()
        return {p["location"]: p["on_hand"] for p in answer["positions"]} == {
            location: figures_["on_hand"] for location, figures_ in expected.items()
        }

    assert wait_until(api_shows_them, 60), published_positions(stack, {BESTSELLER})

    records = run(read_topic(state_changelog_topic(stack.env["AVAIL_APP_ID"]), timeout_s=60))
    largest = max(len(r.key) + len(r.value or b"") for r in records)
    figures["largest changelog record, bestseller of 200,000 events"] = f"{largest:,} bytes"
    figures["changelog records, bestseller of 200,000 events"] = f"{len(records):,}"
    assert largest < RECORD_LIMIT
    assert_every_head_is_whole(records)


def assert_every_head_is_whole(records: list[Any]) -> None:
    """Read the changelog record by record, as a restore would: wherever the bestseller's
    head lands, the SKU's records read so far are one whole write, its dedup ids exactly its
    applied events (every event of this test is applied once, and none expires). A head
    stored without the chunks of its write, or after only part of them, breaks that."""
    ids_in_chunk: dict[bytes, int] = {}  # the bestseller's chunk key -> its dedup ids
    prefix = chunk_prefix(BESTSELLER)
    heads = 0
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        if record.key.startswith(prefix):
            if record.value is None:
                ids_in_chunk.pop(record.key, None)
            else:
                items = chunk_items(record.value)
                ids_in_chunk[record.key] = sum(isinstance(item, Seen) for item in items)
        elif record.key == head_key(BESTSELLER):
            head = decode_head(record.value)
            open_ids = sum(isinstance(item, Seen) for item in head.items)
            assert sum(ids_in_chunk.values()) + open_ids == head.version, record.offset
            heads += 1
    assert heads > 0


def test_a_changelog_write_kafka_refuses_stops_the_worker_and_loses_nothing(
    stack: Stack, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    worker = WorkerProcess(stack, tmp_path / "w1", standby_replicas=0).start()
    workers.append(worker)
    before = event_mix(300, skus=20, seed=11)
    run(produce(stack, event_messages(stack, before)))
    assert_converges(stack, {e["sku"] for e in before}, workers)
    published_before = published_positions(stack, {e["sku"] for e in before})
    ends_before = run(source_ends(stack))
    changelog = state_changelog_topic(stack.env["AVAIL_APP_ID"])
    kept_configs = run(topic_configs(changelog))

    # The broker now refuses every changelog record batch: too large for the topic. A
    # transaction's marker (about 80 bytes) still fits: without it, the refused write's
    # transaction could never be aborted, and the restarted worker would wait for it.
    run(alter_topic(changelog, kept_configs | {"max.message.bytes": "128"}))
    assert run(refused_by_broker(changelog)), "the broker never applied max.message.bytes"
    after = event_mix(300, skus=20, seed=12, start_serial=10_000)
    run(produce(stack, event_messages(stack, after)))

    assert wait_until(lambda: not worker.running, 90), worker.log_tail()
    assert worker.stop() != 0
    assert "changelog write failed, the worker stops" in worker.log_tail(200_000)
    # No offset committed past the refused write, nothing of it published, and readers
    # told that its partitions are not ready any more.
    committed = run(committed_offsets(stack.env["AVAIL_APP_ID"]))
    assert all(committed.get(tp, 0) <= end for tp, end in ends_before.items()), committed
    assert published_positions(stack, {e["sku"] for e in before}) == published_before
    client = redis.Redis.from_url(REDIS_URL)
    try:
        assert not client.hgetall(f"{stack.names.redis_namespace}:ready")
    finally:
        client.close()

    # The broker takes records again: a restart recovers and applies everything.
    run(alter_topic(changelog, kept_configs))
    workers.append(WorkerProcess(stack, tmp_path / "w1", standby_replicas=0).start())
    assert_converges(stack, {e["sku"] for e in before + after}, workers[1:])


async def source_ends(stack: Stack) -> dict[TopicPartition, int]:
    """The end offset of every inventory topic's partition."""
    ends: dict[TopicPartition, int] = {}
    for topic in stack.names.inventory_topics:
        for record in await read_topic(topic):
            tp = TopicPartition(topic, record.partition)
            ends[tp] = max(ends.get(tp, 0), record.offset + 1)
    return ends


async def refused_by_broker(topic: str, within_s: float = 30.0) -> bool:
    """Wait until the broker applies a topic's new size limit: a probe it refuses. (A probe
    taken before is stored under a key no SKU record has, which a restore passes over.)"""
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, acks="all")
    await producer.start()
    try:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            try:
                await producer.send_and_wait(topic, b"x" * 1024, key=b"\x00probe", partition=0)
            except MessageSizeTooLargeError:
                return True
            await asyncio.sleep(0.5)
        return False
    finally:
        await producer.stop()


async def topic_configs(topic: str) -> dict[str, str]:
    """The topic's own settings (not the broker's defaults)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:
        described = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        entries = described[0].resources[0][4]
        # (name, value, read_only, config_source, is_sensitive, synonyms); source 1 is
        # the topic's own (dynamic) setting
        return {entry[0]: entry[1] for entry in entries if entry[3] == 1}
    finally:
        await admin.close()


async def alter_topic(topic: str, configs: dict[str, str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs)])
    finally:
        await admin.close()
