"""The state table's changelog, produced one record batch per partition at a time.

faust produces a changelog record per table write: a future, its producer buffer, one
aiokafka `send` and one RocksDB offset write per record. At a few thousand writes a second
that was a third of a worker's time. Here the writes of a round go to each partition's
changelog as aiokafka record batches, and the persisted offset (what faust's recovery
starts from) is written once per batch, when Kafka acknowledges it, as faust does per
record. The records and the topic are faust's own: its recovery and standbys read them.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator
from typing import Any, Final

from aiokafka import AIOKafkaProducer
from faust.types import TP

# Records waiting to be produced beyond which the worker fetches no more: Kafka sets the pace.
MAX_WAITING: Final = 20_000


def record_batches(
    producer: AIOKafkaProducer, records: Iterable[tuple[bytes, bytes]]
) -> Iterator[Any]:
    """(key, value) records in order, as aiokafka record batches for one partition, each
    as full as the producer's max_batch_size lets it be."""
    batch = producer.create_batch()
    for key, value in records:
        if batch.append(key=key, value=value, timestamp=None) is None:
            yield batch
            batch = producer.create_batch()
            batch.append(key=key, value=value, timestamp=None)
    if batch.record_count():
        yield batch


class ChangelogWriter:
    def __init__(
        self,
        topic: str,
        producer: Callable[[], AIOKafkaProducer],
        persisted: Callable[[TP, int], None],
    ) -> None:
        self._topic = topic
        self._producer = producer  # faust's own aiokafka producer, once started
        self._persisted = persisted  # faust's store: the last offset a partition holds
        self._waiting: dict[int, list[tuple[bytes, bytes]]] = defaultdict(list)
        self._count = 0
        self._wake = asyncio.Event()
        self._sending = asyncio.Lock()  # one sender at a time keeps each partition in order

    def add(self, partition: int, records: Collection[tuple[bytes, bytes]]) -> None:
        """(key, value) records of `partition`, in order."""
        self._waiting[partition] += records
        self._count += len(records)
        self._wake.set()

    async def run(self) -> None:
        """Produce what was added, as soon as it was: the worker goes on meanwhile."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._send_waiting()

    async def ebb(self) -> None:
        """Wait while too many records wait to be produced."""
        while self._count > MAX_WAITING:
            await self._send_waiting()

    async def sent(self) -> None:
        """Every record added so far is in the producer: its flush covers them."""
        await self._send_waiting()

    async def _send_waiting(self) -> None:
        async with self._sending:
            waiting, self._waiting, self._count = self._waiting, defaultdict(list), 0
            if not waiting:
                return
            producer = self._producer()
            for partition, records in waiting.items():
                for batch in record_batches(producer, records):
                    await self._send(producer, batch, partition)

    async def _send(self, producer: AIOKafkaProducer, batch: Any, partition: int) -> None:
        last = batch.record_count() - 1
        tp = TP(self._topic, partition)
        delivered = await producer.send_batch(batch, self._topic, partition=partition)

        def persisted(done: asyncio.Future[Any]) -> None:
            if not done.cancelled() and done.exception() is None:
                self._persisted(tp, done.result().offset + last)

        delivered.add_done_callback(persisted)
