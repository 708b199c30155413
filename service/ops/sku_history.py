"""`availability sku-history SKU`: what support needs to explain one SKU's figures.

Its events, read from the beginning of every inventory topic (as far back as retention
keeps them), but only the SKU's partition. Each topic's records stay in offset order, and
the topics are merged by the time Kafka stamped the records (then by occurred_at). Each
event says whether the worker dead-lettered it (the dead letters of that partition,
matched by source topic and offset) or had seen its `event_id` already. Then the SKU as
the worker's table holds it: its head and chunk records (`availability/layout.py`), each
the last value of its key in the table's changelog topic, read back into its version,
positions, dedup ids and documents; and its positions and channel quantities as published
in Redis.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import redis
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from api.streaming.kafka_security import kafka_client_options
from availability import Settings
from availability.events import decode_message
from availability.layout import chunk_prefix, head_key, read_state
from availability.published import sku_key
from availability.topics import Names, partition_for, state_changelog_topic

from .history_view import Entry, History, Stored, render_json, render_text
from .kafka_reading import ReadStalled, existing_partitions, read_to_end
from .progress import Progress, described, fail, without_password

COMMAND: Final = "sku-history"


@dataclass(frozen=True)
class HistoryOptions:
    sku: str
    as_json: bool = False
    since: datetime | None = None


async def show_sku_history(settings: Settings, options: HistoryOptions) -> int:
    names = Names(settings.topic_prefix)
    history = History(
        options.sku, partition_for(options.sku.encode(), settings.partitions), settings.partitions
    )
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        **kafka_client_options(settings),
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",  # as the workers read: aborted events never count
    )
    try:
        await consumer.start()
        # Asked before any assignment, which narrows the consumer's metadata to its topics.
        events_from = present(consumer, [*names.inventory_topics, names.dlq_topic], history)
        state_from = present(consumer, [state_changelog_topic(settings.app_id)], history)
        await read_events(consumer, events_from, names.dlq_topic, history)
        if state_from:
            await read_table(consumer, state_from[0], history)
    except (KafkaError, ReadStalled, OSError) as exc:
        fail(COMMAND, f"Kafka at {settings.kafka_bootstrap}: {described(exc)}")
        return 1
    finally:
        await consumer.stop()
    try:
        history.published = read_published(settings, names, options.sku)
    except (redis.RedisError, OSError) as exc:
        fail(COMMAND, f"Redis at {without_password(settings.redis_url)}: {described(exc)}")
        return 1
    if options.since is not None:
        since = options.since
        history.entries = [e for e in history.entries if e.moment >= since]
    print(render_json(history) if options.as_json else render_text(history), flush=True)
    return 0


def present(
    consumer: AIOKafkaConsumer, topics: list[str], history: History
) -> list[TopicPartition]:
    """The SKU's partition of each topic that has it; a note for each that has not."""
    found = []
    for topic in topics:
        numbers = existing_partitions(consumer, topic)
        if history.partition in numbers:
            found.append(TopicPartition(topic, history.partition))
        elif not numbers:
            history.notes.append(f"topic {topic} does not exist")
        else:
            history.notes.append(f"topic {topic} has no partition {history.partition}")
    return found


async def read_events(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition], dlq: str, history: History
) -> None:
    """The SKU's records on its partition of every inventory topic, and its dead letters."""
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    sku = history.sku.encode()
    progress = Progress(COMMAND)
    read = 0
    by_topic: dict[str, list[Entry]] = {}
    letters: dict[tuple[str, int], str] = {}  # (source topic, source offset) -> reason
    async for records in read_to_end(consumer, partitions):
        read += len(records)
        for record in records:
            if record.key != sku:
                continue
            if record.topic == dlq:
                letters[source_of(record)] = header(record, "reason") or "(no reason)"
            else:
                by_topic.setdefault(record.topic, []).append(entry_of(record))
        progress.tick(f"{read} records read")
    history.entries = list(
        heapq.merge(*by_topic.values(), key=lambda e: (e.timestamp_ms, e.moment, e.topic))
    )
    mark_dead_letters_and_duplicates(history.entries, letters)


def mark_dead_letters_and_duplicates(
    entries: list[Entry], letters: dict[tuple[str, int], str]
) -> None:
    first_seen: dict[str, str] = {}
    for entry in entries:
        entry.dead_lettered = letters.get((entry.topic, entry.offset))
        if entry.event is None or entry.dead_lettered is not None:
            continue
        if entry.event.event_id in first_seen:
            entry.duplicate_of = first_seen[entry.event.event_id]
        else:
            first_seen[entry.event.event_id] = entry.where


async def read_table(consumer: AIOKafkaConsumer, tp: TopicPartition, history: History) -> None:
    """The SKU's records in the changelog of the worker's table, read from its start."""
    consumer.assign([tp])
    await consumer.seek_to_beginning(tp)
    table = TableRecords(history.sku)
    async for records in read_to_end(consumer, [tp]):
        for record in records:
            table.add(record.key, record.value)
    history.stored = table.stored()


class TableRecords:
    """One SKU's records as the worker's table holds them: the last value of each of its
    keys (its head and its chunks) in the changelog, where a record without a value (a
    tombstone) deleted its key. Read back as the worker reads its table (`RecordReader`)."""

    def __init__(self, sku: str) -> None:
        self.sku = sku
        self._head, self._chunks = head_key(sku), chunk_prefix(sku)
        self.last: dict[bytes, bytes] = {}

    def add(self, key: bytes | None, value: bytes | None) -> None:
        """A changelog record, of this SKU or not."""
        if key is None or not (key == self._head or key.startswith(self._chunks)):
            return
        if value is None:
            self.last.pop(key, None)
        else:
            self.last[key] = value

    def get(self, key: bytes) -> bytes | None:
        return self.last.get(key)

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        return iter(sorted(item for item in self.last.items() if item[0].startswith(prefix)))

    def stored(self) -> Stored | None:
        """The SKU's state read back by the core's own reader, or None when the table holds
        no head for it."""
        if self._head not in self.last:
            return None
        largest = max(len(key) + len(value) for key, value in self.last.items())
        return Stored(read_state(self, self.sku), len(self.last), largest)


def read_published(settings: Settings, names: Names, sku: str) -> dict[str, bytes]:
    client = redis.Redis.from_url(
        settings.redis_url, socket_timeout=10, **settings.redis_options(settings.redis_url)
    )
    try:
        raw = client.hgetall(sku_key(names.redis_namespace, sku))
    finally:
        client.close()
    return {_text(k): v if isinstance(v, bytes) else v.encode() for k, v in raw.items()}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def header(record: Any, name: str) -> str | None:
    for key, value in record.headers or ():
        if key == name:
            return bytes(value).decode(errors="replace")
    return None


def source_of(letter: Any) -> tuple[str, int]:
    """The topic and offset a dead letter came from."""
    try:
        offset = int(header(letter, "source_offset") or "-1")
    except ValueError:
        offset = -1
    return header(letter, "source_topic") or "", offset


def entry_of(record: Any) -> Entry:
    event, error = decode_message(record.value)
    return Entry(
        record.topic, record.partition, record.offset, record.timestamp, record.value, event, error
    )
