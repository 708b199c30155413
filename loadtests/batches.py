"""Producing the benchmarks' records as aiokafka record batches, one open batch per topic
partition: a producer that costs the shared cores little, and a group of records (one
SKU's write: its head and chunks) always in one batch, as the worker's changelog writer
keeps them (`streams/changelog.py`): the broker appends a record batch whole or not at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer

from availability.layout import Record
from streams.changelog import RECORD_OVERHEAD_BYTES


def group_bytes(group: Sequence[Record]) -> int:
    """What a group takes in a record batch, at most."""
    return sum(len(key) + len(value or b"") + RECORD_OVERHEAD_BYTES for key, value in group)


class Batches:
    """Groups of records added in order, per topic partition, sent as record batches of at
    most `max_bytes` (the producer's `max_batch_size` must be at least that). A batch goes
    when the next group would not fit in it, or at `flush`."""

    def __init__(self, producer: AIOKafkaProducer, max_bytes: int) -> None:
        self._producer = producer
        self._max_bytes = max_bytes
        self._open: dict[tuple[str, int], Any] = {}  # aiokafka BatchBuilders
        self.delivered: list[asyncio.Future[Any]] = []  # one a batch sent

    async def add(self, topic: str, partition: int, group: Sequence[Record]) -> None:
        size = group_bytes(group)
        if size > self._max_bytes:
            raise ValueError(
                f"a write of {len(group)} records ({size} bytes) does not fit in a record "
                f"batch of {self._max_bytes} bytes"
            )
        batch = self._open.get((topic, partition))
        if batch is not None and batch.size() + size > self._max_bytes:
            await self._send(topic, partition)
            batch = None
        if batch is None:
            batch = self._open[(topic, partition)] = self._producer.create_batch()
        for key, value in group:
            if batch.append(key=key, value=value, timestamp=None) is None:
                raise ValueError(f"a record batch refused a record of {topic}[{partition}]")

    async def flush(self) -> None:
        """Send every open batch."""
        for topic, partition in list(self._open):
            await self._send(topic, partition)

    async def _send(self, topic: str, partition: int) -> None:
        batch = self._open.pop((topic, partition))
        self.delivered.append(await self._producer.send_batch(batch, topic, partition=partition))
