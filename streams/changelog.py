"""The state table's changelog, produced one record batch per partition at a time.

faust produces a changelog record per table write: a future, its producer buffer, one
aiokafka `send` and one RocksDB offset write per record. At a few thousand writes a second
that was a third of a worker's time. Here the writes of a round go to each partition's
changelog as aiokafka record batches, and the persisted offset (what faust's recovery
starts from) is written once per transaction, when Kafka commits it, as faust does per
record. The records and the topic are faust's own: its recovery and standbys read them.

A SKU's records of one write (its head and changed chunks) are a group, and a group never
spans two record batches: the broker appends a record batch whole or not at all, so the
changelog never holds a head without the chunks it was written with, whatever the moment
a worker dies.

Each partition's records of a round go out in one Kafka transaction of that partition's
own producer (streams/fencing.py): a worker that lost the partition meanwhile is fenced,
and readers of committed records never see its writes. A partition's next transaction
starts once its last one is committed; the records added meanwhile wait, and go together.

A transaction Kafka does not commit (a broker gone past the producer's retries, a record
refused, the producer fenced) is a `ChangelogFailure`: every later wait for the changelog
raises it, so no offset is committed past it and nothing after it is published, and the
worker stops (`Worker.changelog_failed`): its local table is ahead of the changelog, and a
restart recovers from the changelog and reapplies what was not committed.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Final

from aiokafka import AIOKafkaProducer
from aiokafka.errors import ProducerFenced
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
        producer: Callable[[int], AIOKafkaProducer],
        persisted: Callable[[TP, int], None],
        max_batch_bytes: int,
        on_failure: Callable[[ChangelogFailure], None] = lambda failure: None,
    ) -> None:
        self._topic = topic
        self._producer = producer  # a partition's transactional producer (streams/fencing.py)
        self._persisted = persisted  # faust's store: the last offset a partition holds
        self._max_batch_bytes = max_batch_bytes
        self._on_failure = on_failure
        self._waiting: dict[int, list[Sequence[Record]]] = defaultdict(list)
        self._count = 0  # records waiting
        # Per partition: how many `add` calls it had, and how many of those are committed.
        self._added: dict[int, int] = defaultdict(int)
        self._durable: dict[int, int] = defaultdict(int)
        self._committing: dict[int, asyncio.Task[None]] = {}  # a partition's open transaction
        self.failure: ChangelogFailure | None = None
        self._wake = asyncio.Event()
        self._sending = asyncio.Lock()  # one sender at a time keeps each partition in order

    def add(self, partition: int, groups: Sequence[Sequence[Record]]) -> None:
        """Groups of records of `partition`, in order."""
        self._waiting[partition] += groups
        self._count += sum(len(group) for group in groups)
        self._added[partition] += 1
        self._wake.set()

    async def run(self) -> None:
        """Produce what was added, as soon as it can be: the worker goes on meanwhile."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._send_waiting()

    async def ebb(self) -> None:
        """Wait while too many records wait to be produced."""
        while self._count > MAX_WAITING:
            await self._progress()

    async def acknowledged(self, partitions: Iterable[int] | None = None) -> None:
        """Every record added so far (of `partitions`, or of all) is committed to Kafka;
        raises ChangelogFailure if a transaction was not. Records added meanwhile are not
        waited for: under a steady stream there always are some, and the wait would never
        end."""
        chosen = list(self._added) if partitions is None else partitions
        target = {p: self._added[p] for p in chosen if self._added[p] > self._durable[p]}
        while any(self._durable[p] < added for p, added in target.items()):
            await self._progress()
        self._raise_if_failed()

    async def _progress(self) -> None:
        """Send what can be sent, then wait for a transaction to end if one is open."""
        await self._send_waiting()
        open_ones = [task for task in self._committing.values() if not task.done()]
        if open_ones:
            await asyncio.wait(open_ones, return_when=asyncio.FIRST_COMPLETED)
        self._raise_if_failed()

    async def _send_waiting(self) -> None:
        async with self._sending:
            self._raise_if_failed()
            for partition in [p for p in self._waiting if p not in self._committing]:
                groups = self._waiting.pop(partition)
                self._count -= sum(len(group) for group in groups)
                upto = self._added[partition]
                try:
                    producer = self._producer(partition)
                    batches = list(record_batches(producer, groups, self._max_batch_bytes))
                    await producer.begin_transaction()
                    for batch in batches:
                        last = await producer.send_batch(batch, self._topic, partition=partition)
                except Exception as exc:
                    self._fail(_failure(partition, "could not hand records to Kafka", exc))
                    break
                self._committing[partition] = asyncio.ensure_future(
                    self._commit(producer, partition, upto, last, batches[-1].record_count() - 1)
                )
            self._raise_if_failed()

    async def _commit(
        self,
        producer: AIOKafkaProducer,
        partition: int,
        upto: int,
        last: asyncio.Future[Any],
        index: int,
    ) -> None:
        """Commit the partition's open transaction, then book its last record's offset."""
        try:
            await producer.commit_transaction()
            offset = (await last).offset + index
        except Exception as exc:
            self._fail(_failure(partition, "Kafka did not commit a transaction", exc))
            return
        finally:
            del self._committing[partition]
            if self._waiting:
                self._wake.set()
        if self.failure is None:
            # Booked the moment Kafka commits it, as faust books its own writes: a
            # recovery at the next rebalance starts right after it, and never replays
            # older records over this worker's newer ones.
            self._persisted(TP(self._topic, partition), offset)
            self._durable[partition] = upto

    def _fail(self, failure: ChangelogFailure) -> None:
        if self.failure is None:
            self.failure = failure
            self._on_failure(failure)

    def _raise_if_failed(self) -> None:
        if self.failure is not None:
            raise self.failure


def _failure(partition: int, what: str, exc: BaseException) -> ChangelogFailure:
    if isinstance(exc, ProducerFenced):
        return ChangelogFailure(
            f"changelog partition {partition} is another worker's now: this one was out of "
            "the group (paused or cut off past its session timeout), and Kafka refuses its "
            "writes"
        )
    return ChangelogFailure(f"{what} for changelog partition {partition}: {exc!r}")
