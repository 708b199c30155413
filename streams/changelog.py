"""The state table's changelog, produced one record batch per partition at a time.

faust produces a changelog record per table write: a future, its producer buffer, one
aiokafka `send` and one RocksDB offset write per record. At a few thousand writes a second
that was a third of a worker's time. Here the writes of a round go to each partition's
changelog as aiokafka record batches, and the persisted offset (what faust's recovery
starts from) is written once per batch, when Kafka acknowledges it, as faust does per
record. The records and the topic are faust's own: its recovery and standbys read them.

A SKU's records of one write (its head and changed chunks) are a group, and a group never
spans two record batches: the broker appends a record batch whole or not at all, so the
changelog never holds a head without the chunks it was written with, whatever the moment
a worker dies.

A record batch Kafka does not take (a broker gone past the producer's retries, a record
refused) is a `ChangelogFailure`: every later wait for the changelog raises it, so no
offset is committed past it and nothing after it is published, and the worker stops
(`Worker.changelog_failed`): its local table is ahead of the changelog, and a restart
recovers from the changelog and reapplies what was not committed.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from typing import Any, Final

from aiokafka import AIOKafkaProducer
from faust.types import TP

from availability.layout import Record

# Records waiting to be produced beyond which the worker fetches no more: Kafka sets the pace.
MAX_WAITING: Final = 20_000
# Room for a record's length, offset and timestamp deltas and attributes in a record batch.
RECORD_OVERHEAD_BYTES: Final = 32


class ChangelogFailure(RuntimeError):
    """A changelog write failed: the worker must stop and recover from the changelog."""


def record_batches(
    producer: AIOKafkaProducer, groups: Iterable[Sequence[Record]], max_bytes: int
) -> Iterator[Any]:
    """Groups of (key, value) records in order, as aiokafka record batches for one
    partition, each as full as `max_bytes` lets it be, and each group in one batch."""
    batch = producer.create_batch()
    for group in groups:
        size = sum(len(key) + len(value or b"") + RECORD_OVERHEAD_BYTES for key, value in group)
        if size > max_bytes:
            raise ChangelogFailure(
                f"one write of {len(group)} records ({size} bytes) does not fit in a "
                f"record batch of {max_bytes} bytes"
            )
        if batch.record_count() and batch.size() + size > max_bytes:
            yield batch
            batch = producer.create_batch()
        for key, value in group:
            if batch.append(key=key, value=value, timestamp=None) is None:
                raise ChangelogFailure("a record batch refused a record its size allowed")
    if batch.record_count():
        yield batch


class ChangelogWriter:
    def __init__(
        self,
        topic: str,
        producer: Callable[[], AIOKafkaProducer],
        persisted: Callable[[TP, int], None],
        max_batch_bytes: int,
        on_failure: Callable[[ChangelogFailure], None] = lambda failure: None,
    ) -> None:
        self._topic = topic
        self._producer = producer  # faust's own aiokafka producer, once started
        self._persisted = persisted  # faust's store: the last offset a partition holds
        self._max_batch_bytes = max_batch_bytes
        self._on_failure = on_failure
        self._waiting: dict[int, list[Sequence[Record]]] = defaultdict(list)
        self._count = 0
        self._in_flight: deque[tuple[asyncio.Future[Any], TP, int]] = deque()
        self.failure: ChangelogFailure | None = None
        self._wake = asyncio.Event()
        self._sending = asyncio.Lock()  # one sender at a time keeps each partition in order

    def add(self, partition: int, groups: Sequence[Sequence[Record]]) -> None:
        """Groups of records of `partition`, in order."""
        self._waiting[partition] += groups
        self._count += sum(len(group) for group in groups)
        self._wake.set()

    async def run(self) -> None:
        """Produce what was added, as soon as it was: the worker goes on meanwhile."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._send_waiting()
            self._settle()

    async def ebb(self) -> None:
        """Wait while too many records wait to be produced."""
        while self._count > MAX_WAITING:
            await self._send_waiting()

    async def acknowledged(self) -> None:
        """Every record added so far is acknowledged by Kafka; raises ChangelogFailure if
        any record batch was not. Batches sent meanwhile are not waited for: under a
        steady stream there always are some, and the wait would never end."""
        await self._send_waiting()
        sent = [delivered for delivered, _, _ in self._in_flight]
        if sent:
            await asyncio.wait(sent)
        self._settle()

    async def _send_waiting(self) -> None:
        async with self._sending:
            self._raise_if_failed()
            waiting, self._waiting, self._count = self._waiting, defaultdict(list), 0
            if not waiting:
                return
            producer = self._producer()
            try:
                for partition, groups in waiting.items():
                    tp = TP(self._topic, partition)
                    for batch in record_batches(producer, groups, self._max_batch_bytes):
                        last = batch.record_count() - 1
                        delivered = await producer.send_batch(
                            batch, self._topic, partition=partition
                        )
                        # Booked the moment Kafka acknowledges it, as faust books its own
                        # writes: a recovery at the next rebalance starts right after it,
                        # and never replays older records over this worker's newer ones.
                        delivered.add_done_callback(partial(self._book, tp, last))
                        self._in_flight.append((delivered, tp, last))
            except ChangelogFailure as failure:
                self._fail(failure)
            except Exception as exc:
                self._fail(ChangelogFailure(f"could not hand a record batch to Kafka: {exc!r}"))
            self._raise_if_failed()

    def _book(self, tp: TP, last: int, delivered: asyncio.Future[Any]) -> None:
        if delivered.cancelled() or delivered.exception() is not None:
            reason = "cancelled" if delivered.cancelled() else repr(delivered.exception())
            self._fail(ChangelogFailure(f"Kafka did not take a record batch for {tp}: {reason}"))
        elif self.failure is None:
            self._persisted(tp, delivered.result().offset + last)

    def _settle(self) -> None:
        """Forget the batches at the front of those in flight that are acknowledged (each
        booked itself); raise once one failed."""
        while self._in_flight and self._in_flight[0][0].done():
            delivered, tp, last = self._in_flight.popleft()
            if delivered.cancelled() or delivered.exception() is not None:
                self._book(tp, last, delivered)  # its callback may not have run yet
                break
        self._raise_if_failed()

    def _fail(self, failure: ChangelogFailure) -> None:
        if self.failure is None:
            self.failure = failure
            self._on_failure(failure)

    def _raise_if_failed(self) -> None:
        if self.failure is not None:
            raise self.failure
