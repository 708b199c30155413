"""The streaming stack for tests: a namespace of topics and Redis keys of its own, worker
processes started as `availability worker`, and the reference model: the event log read
back from Kafka and folded by the core, to compare every published position with."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import msgspec
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from rocksdict import AccessType, Options, Rdict

from api.streaming.topics_admin import ensure_topics
from availability import Event, SkuState, apply_events, decode_event
from availability.events import clock_error
from availability.layout import CHUNK, HEAD
from availability.topics import Names

from .server import REPO_ROOT, child_env, cli_command, free_port, kill, terminate

KAFKA: Final = "127.0.0.1:9092"
REDIS_URL: Final = "redis://127.0.0.1:6379/0"
PARTITIONS: Final = 4
POSITION_FIELDS: Final = ("on_hand", "reserved", "inbound", "unsellable", "sellable", "oversold")
FAULTS_DIR: Final = Path(__file__).with_name("faults")


def with_faults(**faults: str) -> dict[str, str]:
    """The environment that makes a process started by the tests inject `faults`
    (FAULT_* variables, read by tests/support/faults/sitecustomize.py)."""
    path = [str(FAULTS_DIR), str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]
    return {"PYTHONPATH": os.pathsep.join(filter(None, path)), **faults}


@dataclass
class Stack:
    """One deployment's names: topics, consumer group and Redis keys no other test sees."""

    tag: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:10]}-")
    partitions: int = PARTITIONS
    # The shared test services by default; a harness with a cluster of its own names it.
    kafka: str = KAFKA
    redis_url: str = REDIS_URL

    @property
    def names(self) -> Names:
        return Names(self.tag)

    @property
    def env(self) -> dict[str, str]:
        return {
            "AVAIL_KAFKA_BOOTSTRAP": self.kafka,
            "AVAIL_REDIS_URL": self.redis_url,
            "AVAIL_TOPIC_PREFIX": self.tag,
            "AVAIL_APP_ID": f"{self.tag}app",
            "AVAIL_PARTITIONS": str(self.partitions),
            "AVAIL_LOG_LEVEL": "info",
        }


class WorkerProcess:
    """One `availability worker` on its own data directory."""

    def __init__(
        self,
        stack: Stack,
        data_dir: Path,
        standby_replicas: int = 1,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.stack = stack
        self.extra_env = dict(env or {})
        self.data_dir = data_dir
        self.standby_replicas = standby_replicas
        self.log_path = data_dir.with_name(f"{data_dir.name}.log")
        self.metrics_port = 0  # where its Prometheus metrics are served, once started
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        self.metrics_port = free_port()
        env = {
            **self.stack.env,
            "AVAIL_DATA_DIR": str(self.data_dir),
            "AVAIL_METRICS_PORT": str(self.metrics_port),
            "AVAIL_STANDBY_REPLICAS": str(self.standby_replicas),
            **self.extra_env,
        }
        with self.log_path.open("ab") as log:
            log.write(b"\n--- start\n")
            log.flush()
            self._process = subprocess.Popen(
                cli_command("worker"),
                env=child_env(env),
                cwd=REPO_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def kill(self) -> None:
        kill(self._process)
        self._process = None

    @property
    def pid(self) -> int:
        assert self._process is not None, "the worker is not running"
        return self._process.pid

    def resume(self) -> None:
        """SIGCONT: on with whatever it was doing when it was frozen."""
        assert self._process is not None, "the worker is not running"
        self._process.send_signal(signal.SIGCONT)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """The worker frozen (SIGSTOP) for a moment, as a stalled process would be: kept
        shorter than its 10 s session timeout, the group does not notice."""
        assert self._process is not None, "the worker is not running"
        self._process.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self._process.send_signal(signal.SIGCONT)

    def stop(self, timeout: float = 30.0) -> int | None:
        code, self._process = terminate(self._process, timeout), None
        return code

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def produce(stack: Stack, messages: Iterable[tuple[str, bytes | None, bytes | None]]) -> None:
    """Send (topic, key, value) triples with acks from every in-sync replica."""
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        sends = [await producer.send(topic, value, key=key) for topic, key, value in messages]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()


def event_messages(
    stack: Stack, events: Sequence[Mapping[str, Any]]
) -> list[tuple[str, bytes, bytes]]:
    return [
        (stack.names.event_topic(e["type"]), str(e["sku"]).encode(), json.dumps(e).encode())
        for e in events
    ]


async def read_topic(topic: str, timeout_s: float = 10.0, bootstrap: str = KAFKA) -> list[Any]:
    """Every message of `topic` from its start to its current end, as the workers read it:
    the records of aborted transactions left out."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        group_id=None,
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        partitions = [
            TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or [])
        ]
        if not partitions:
            await consumer.topics()  # fetches the metadata of every topic, this one too
            partitions = [
                TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or [])
            ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        found: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and await _behind(consumer, ends):
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                found.extend(records)
        return found
    finally:
        await consumer.stop()


async def _behind(consumer: AIOKafkaConsumer, ends: Mapping[TopicPartition, int]) -> bool:
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return True
    return False


async def create_topics(stack: Stack) -> None:
    await ensure_topics(stack.kafka, stack.names, stack.partitions)


async def reference_states(stack: Stack) -> dict[str, SkuState]:
    """The event log, read back from every inventory topic and folded by the core."""
    now = time.time_ns() // 1000
    events = []
    for topic in stack.names.inventory_topics:
        events += applicable(await read_topic(topic, bootstrap=stack.kafka), now)
    states: dict[str, SkuState] = {}
    apply_events(
        lambda sku: states.setdefault(sku, SkuState(sku=sku)), events, time.time_ns() // 1000
    )
    return states


def applicable(records: Iterable[Any], now_us: int) -> list[Event]:
    """The events of an inventory topic's `records` that a worker applies: the others it
    dead-letters (no value, not an event, a key that isn't its SKU, a clock it refuses)."""
    events = []
    for record in records:
        if record.value is None:
            continue
        try:
            event = decode_event(record.value)
        except msgspec.MsgspecError:
            continue
        if record.key == event.sku.encode() and clock_error(event, now_us) is None:
            events.append(event)
    return events


def published_positions(stack: Stack, skus: Iterable[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """SKU -> location -> the position figures the workers published to Redis."""
    client = redis.Redis.from_url(stack.redis_url)
    found: dict[str, dict[str, dict[str, Any]]] = {}
    try:
        for sku in skus:
            raw = client.hget(f"{stack.names.redis_namespace}:{{{sku}}}", "p")
            if raw is None:
                continue
            found[sku] = {
                p["location"]: {name: p[name] for name in POSITION_FIELDS}
                for p in json.loads(raw)["positions"]
            }
    finally:
        client.close()
    return found


def expected_positions(states: Mapping[str, SkuState]) -> dict[str, dict[str, dict[str, Any]]]:
    """The same figures from reference states, with no rules (safety stock 0)."""
    result: dict[str, dict[str, dict[str, Any]]] = {}
    for sku, state in states.items():
        result[sku] = {
            location: {
                "on_hand": p.on_hand,
                "reserved": p.reserved,
                "inbound": p.inbound,
                "unsellable": p.unsellable,
                "sellable": max(0, p.on_hand - p.reserved),
                "oversold": p.on_hand - p.reserved < 0,
            }
            for location, p in state.positions.items()
        }
    return result


def wait_until(check: Any, timeout_s: float, interval_s: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval_s)
    return bool(check())


def changelog_image(records: Iterable[Any]) -> dict[int, dict[bytes, bytes]]:
    """Partition -> key -> last value of a state changelog's SKU records (tombstones
    delete)."""
    image: dict[int, dict[bytes, bytes]] = {}
    for record in records:
        keys = image.setdefault(record.partition, {})
        if not is_sku_record(record.key):
            continue
        if record.value is None:
            keys.pop(record.key, None)
        else:
            keys[record.key] = record.value
    return image


def local_table_image(data_dir: Path, table: str) -> dict[int, dict[bytes, bytes]]:
    """Partition -> key -> value of a stopped worker's RocksDB table, SKU records only."""
    image: dict[int, dict[bytes, bytes]] = {}
    for path in sorted(data_dir.rglob(f"{table}-*.db")):
        partition = int(path.name.removesuffix(".db").rsplit("-", 1)[1])
        db = Rdict(str(path), Options(raw_mode=True), access_type=AccessType.read_only())
        try:
            image[partition] = {
                key: value
                for key, value in db.items()
                if isinstance(key, bytes) and isinstance(value, bytes) and is_sku_record(key)
            }
        finally:
            db.close()
    return image


def is_sku_record(key: bytes | None) -> bool:
    """A SKU's head or chunk, not faust's offsets or a partition's rules record."""
    return key is not None and key[:1] in (HEAD, CHUNK)
